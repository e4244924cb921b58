"""The verify engine on a real local results store: manifests read strictly, folders compared.

What the command prints and its exit codes are tested end to end in
``tests/integration/test_results_verify.py``; the requests it costs on S3 in
``tests/contract/test_s3_store.py``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from analysis_wrapper.stores.local import LocalResultStore
from analysis_wrapper.stores.manifest import MANIFEST_NAME, build_manifest
from analysis_wrapper.stores.verify import (
    ListedFile,
    ManifestError,
    Target,
    Verdict,
    compare,
    manifest_files,
    verify_folders,
)
from contract.result_store_contract import ATTEMPT, key_of, put_old_layout, write_tree

FILES = {"a.txt": b"alpha", "sub/b.csv": b"x,y\n1,2\n", "empty": b""}
DIGEST = hashlib.sha256(b"a").hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LocalResultStore:
    return LocalResultStore(tmp_path / "results")


def publish(store: LocalResultStore, tmp_path: Path, name: str, attempt: str = ATTEMPT) -> Target:
    """Publish FILES as ``attempt`` of the key named ``name``; its target."""
    key = key_of(name)
    folder = write_tree(tmp_path / f"out-{name}-{attempt}", FILES)
    return Target(key, store.publish(key, attempt, folder, build_manifest(key, folder)))


def stored(store: LocalResultStore, target: Target) -> Path:
    """The local folder of a target (its attempt's folder)."""
    return store.root / target.location.removeprefix(store.url + "/")


def entry(path: Any = "a.txt", size: Any = 1, sha256: Any = DIGEST) -> dict[str, Any]:
    return {"path": path, "size": size, "sha256": sha256}


@pytest.mark.parametrize(
    ("manifest", "named"),
    [
        ({}, 'no "files" list'),
        ({"files": {"a.txt": 1}}, 'no "files" list'),
        ({"files": ["a.txt"]}, "files[0] has no relative path"),
        ({"files": [entry(path="")]}, "files[0] has no relative path"),
        ({"files": [entry(path="/etc/passwd")]}, "files[0] has no relative path"),
        ({"files": [entry(), entry(path="b", size=True)]}, "files[1] (b) has no size"),
        ({"files": [entry(size=-1)]}, "files[0] (a.txt) has no size"),
        ({"files": [entry(size=1.0)]}, "files[0] (a.txt) has no size"),
        ({"files": [entry(sha256="ABC")]}, "files[0] (a.txt) has no sha256"),
        ({"files": [entry(sha256=DIGEST.upper())]}, "files[0] (a.txt) has no sha256"),
        ({"files": [entry(), entry()]}, "files[1] lists a.txt a second time"),
    ],
)
def test_a_manifest_that_is_no_list_of_files_is_refused_naming_the_entry(
    manifest: dict[str, Any], named: str
) -> None:
    """Each way a manifest can be JSON yet no list of files is named, with its entry."""
    with pytest.raises(ManifestError) as refused:
        manifest_files(manifest)
    assert str(refused.value).startswith(named)


def test_a_well_formed_manifest_lists_its_files() -> None:
    """Paths, sizes and digests come back in the manifest's order."""
    listed = manifest_files({"files": [entry("z", 0), entry("a/b", 3)], "key": "k"})
    assert listed == [ListedFile("z", 0, DIGEST), ListedFile("a/b", 3, DIGEST)]


def test_compare_sorts_missing_changed_extra_and_same_size() -> None:
    """The manifest itself is no extra file; sizes decide without digests."""
    expected = [ListedFile("a", 1, DIGEST), ListedFile("b", 2, DIGEST), ListedFile("c", 3, DIGEST)]
    found = compare(expected, {"a": 1, "b": 5, "d": 4, MANIFEST_NAME: 99}, "file:///r/k/1")
    assert [file.path for file in found.same_size] == ["a"]
    assert [(c.path, c.expected.size, c.found.size) for c in found.changed] == [("b", 2, 5)]
    assert [file.path for file in found.missing] == ["c"]
    assert found.extra == [ListedFile("d", 4)]


def test_compare_in_an_old_layout_folder_leaves_its_attempts_out() -> None:
    """In ``<url>/<key>``: another attempt and a staging folder are not extra; a stray folder is."""
    key = key_of("old")
    expected = [ListedFile("a", 1, DIGEST), ListedFile("nested/x", 1, DIGEST)]
    listing = {
        "a": 1,
        MANIFEST_NAME: 10,
        "nested/x": 1,
        f"nested/{MANIFEST_NAME}": 2,  # the result's own folder: its manifest is a file of it
        f"{ATTEMPT}/a": 1,
        f"{ATTEMPT}/{MANIFEST_NAME}": 10,
        f".staging-{ATTEMPT}-0f0f/a": 1,
        "stray/y": 1,
    }
    found = compare(expected, listing, f"file:///r/{key}")
    assert [file.path for file in found.extra] == [f"nested/{MANIFEST_NAME}", "stray/y"]
    # In an attempt's folder every unlisted file is extra, one with a manifest beside it too.
    inside = compare(expected, listing, f"file:///r/{key}/{ATTEMPT}")
    assert len(inside.extra) == 5


def test_fresh_folders_are_ok_in_order_and_each_reported_once(
    store: LocalResultStore, tmp_path: Path
) -> None:
    """Verdicts come in the targets' order; on_verdict hears each one once."""
    targets = [publish(store, tmp_path, f"fresh {n}") for n in range(7)]
    heard: list[Verdict] = []
    for deep in (False, True):
        heard.clear()
        verdicts = verify_folders(store, targets, deep=deep, on_verdict=heard.append)
        assert [verdict.target for verdict in verdicts] == targets
        assert all(verdict.ok and verdict.files == len(FILES) for verdict in verdicts)
        assert [v.hashed for v in verdicts] == [len(FILES) if deep else 0] * len(targets)
        assert sorted(heard, key=lambda v: targets.index(v.target)) == verdicts


def test_each_kind_of_damage_is_told_apart(store: LocalResultStore, tmp_path: Path) -> None:
    """Missing, resized, same-size-changed and extra files; deep reads both sizes' digests."""
    target = publish(store, tmp_path, "damaged")
    folder = stored(store, target)
    (folder / "a.txt").write_bytes(b"alphA")  # same size
    (folder / "sub" / "b.csv").write_bytes(b"x,y\n1,2\n3,4\n")  # another size
    (folder / "empty").unlink()
    (folder / "sub" / "new.txt").write_bytes(b"new")
    sizes = verify_folders(store, [target])[0]
    assert [file.path for file in sizes.missing] == ["empty"]
    assert [(c.path, c.found.sha256) for c in sizes.changed] == [("sub/b.csv", None)]
    assert sizes.extra == (ListedFile("sub/new.txt", 3),)
    deep = verify_folders(store, [target], deep=True)[0]
    assert [(c.path, c.expected.size, c.found.size) for c in deep.changed] == [
        ("a.txt", 5, 5),
        ("sub/b.csv", 8, 12),
    ]
    assert deep.changed[0].found.sha256 == hashlib.sha256(b"alphA").hexdigest()
    assert deep.changed[0].expected.sha256 == hashlib.sha256(b"alpha").hexdigest()
    assert deep.changed[1].found.sha256 == hashlib.sha256(b"x,y\n1,2\n3,4\n").hexdigest()
    assert deep.hashed == 2


def test_folders_that_cannot_be_compared_are_named(store: LocalResultStore, tmp_path: Path) -> None:
    """No location, another kind of store, no manifest, an unreadable or malformed one."""
    no_manifest, not_json, no_files = (publish(store, tmp_path, n) for n in ("a", "b", "c"))
    (stored(store, no_manifest) / MANIFEST_NAME).unlink()
    (stored(store, not_json) / MANIFEST_NAME).write_text("{not json")
    (stored(store, no_files) / MANIFEST_NAME).write_text(json.dumps({"files": [{"path": "a"}]}))
    nothing = Target(key_of("nothing"), store.location(key_of("nothing"), ATTEMPT))
    targets = [
        Target(key_of("no location"), ""),
        Target(key_of("elsewhere"), "s3://bucket/results/x"),
        no_manifest,
        nothing,
        not_json,
        no_files,
    ]
    problems = [verdict.problem or "" for verdict in verify_folders(store, targets)]
    assert problems[0] == "the record names no location"
    assert problems[1] == f"s3://bucket/results/x is not in a store like {store.url}"
    assert problems[2].startswith(f"{MANIFEST_NAME} missing at {no_manifest.location}")
    assert problems[2].endswith(f"(it holds {len(FILES)} other file(s))")
    assert problems[3].endswith("(nothing is there)")
    assert problems[4].startswith(f"{MANIFEST_NAME} unreadable: cannot read")
    assert problems[5] == f"{MANIFEST_NAME} unreadable: files[0] (a) has no size in bytes"


def test_an_old_layout_result_with_a_later_attempt_inside_is_ok(
    store: LocalResultStore, tmp_path: Path
) -> None:
    """A record naming ``<url>/<key>`` (before attempt folders) checks its own files only."""
    key = key_of("old layout")

    def put_raw(relative: str, data: bytes) -> None:
        path = store.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    put_old_layout(put_raw, key, {"a.txt": b"old", "nested/x.txt": b"x"})
    folder = write_tree(tmp_path / "new", {"a.txt": b"new"})
    attempt = Target(key, store.publish(key, ATTEMPT, folder, build_manifest(key, folder)))
    old = Target(key, f"{store.url}/{key}")
    verdicts = verify_folders(store, [old, attempt], deep=True)
    assert [(verdict.ok, verdict.files) for verdict in verdicts] == [(True, 2), (True, 1)]
