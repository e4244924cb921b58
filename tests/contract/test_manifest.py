"""build_manifest: every file of a result with its size and sha256, the manifest aside."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from analysis_wrapper.stores.manifest import MANIFEST_NAME, build_manifest, file_sha256
from contract.result_store_contract import SAMPLE_FILES, key_of, write_tree


def test_build_manifest_lists_every_file_with_size_and_sha256(tmp_path: Path) -> None:
    """Each file appears once with its byte size and the sha256 hashlib gives."""
    folder = write_tree(tmp_path / "out", SAMPLE_FILES)
    manifest = build_manifest(key_of("a"), folder)
    assert [entry["path"] for entry in manifest["files"]] == sorted(SAMPLE_FILES)
    for entry in manifest["files"]:
        data = SAMPLE_FILES[entry["path"]]
        assert entry == {
            "path": entry["path"],
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }


def test_build_manifest_paths_are_relative_posix_and_sorted(tmp_path: Path) -> None:
    """Paths are relative, use '/', and are sorted as strings (so 'a.csv' before 'a/')."""
    files = {
        "figures/unit 2.png": b"2",
        "figures.png": b"f",
        "figures-extra/x.txt": b"x",
        "b/c/d/e.txt": b"e",
        "A.txt": b"A",
        "a.txt": b"a",
    }
    folder = write_tree(tmp_path / "out", files)
    paths = [entry["path"] for entry in build_manifest(key_of("a"), folder)["files"]]
    assert sorted(paths) == sorted(files)
    assert all(not path.startswith(("/", "./")) and "\\" not in path for path in paths)
    assert all(str(tmp_path) not in path for path in paths)
    assert paths == sorted(files)


def test_build_manifest_excludes_top_level_manifest_only(tmp_path: Path) -> None:
    """A top-level manifest.json is left out; a nested one is an ordinary file."""
    folder = write_tree(
        tmp_path / "out",
        {"a.txt": b"a", MANIFEST_NAME: b"{}", f"sub/{MANIFEST_NAME}": b'{"mine": 1}'},
    )
    paths = [entry["path"] for entry in build_manifest(key_of("a"), folder)["files"]]
    assert paths == ["a.txt", f"sub/{MANIFEST_NAME}"]


def test_build_manifest_has_key_and_iso_created(tmp_path: Path) -> None:
    """The manifest names its key and an ISO 8601 UTC creation time from now."""
    folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
    before = datetime.now(timezone.utc)
    manifest = build_manifest(key_of("k"), folder)
    after = datetime.now(timezone.utc)
    assert sorted(manifest) == ["created", "files", "key"]
    assert manifest["key"] == key_of("k")
    created = datetime.fromisoformat(manifest["created"])
    assert created.utcoffset() == timedelta(0)
    assert before <= created <= after


def test_build_manifest_of_empty_folder_lists_no_files(tmp_path: Path) -> None:
    """An empty folder (or one with only empty sub-folders) gives an empty file list."""
    folder = tmp_path / "out"
    (folder / "empty" / "sub").mkdir(parents=True)
    assert build_manifest(key_of("a"), folder)["files"] == []


def test_build_manifest_is_json_serialisable(tmp_path: Path) -> None:
    """The manifest survives a JSON round trip unchanged."""
    folder = write_tree(tmp_path / "out", SAMPLE_FILES)
    manifest = build_manifest(key_of("a"), folder)
    assert json.loads(json.dumps(manifest)) == manifest


def test_file_sha256_of_a_file_larger_than_a_chunk(tmp_path: Path) -> None:
    """file_sha256 of a 2.5 MiB file (several read chunks) equals hashlib's digest."""
    data = bytes(range(251)) * 10_443
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert len(data) > 2 * (1 << 20)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
