"""The contract every result store meets, run unchanged against each backend.

A backend binds it by subclassing :class:`ResultStoreContract` in a ``test_*.py``
module and providing two fixtures:

- ``store``: a fresh, empty result store;
- ``read_tree``: a function that takes a URL (the store's ``url`` or a ``location``)
  and returns every file (object) under it, as ``{relative POSIX path: bytes}``, or
  ``{}`` when there is nothing there. It reads the backend directly, not through the
  store, so the tests see what a reader of the store would see.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from analysis_wrapper.manifest import MANIFEST_NAME, build_manifest
from analysis_wrapper.stores import ResultStore

ReadTree = Callable[[str], dict[str, bytes]]

SAMPLE_FILES: Mapping[str, bytes] = {
    "units.csv": b"unit_id,isi_violations,passes\n1,0.01,true\n2,0.8,false\n",
    "figure.png": random.Random(7).randbytes(300_000),
    "metadata.nd.json": json.dumps({"name": "séance µ"}, ensure_ascii=False).encode(),
    "empty.txt": b"",
    "nested/values.txt": b"1\n2\n3\n",
    "nested/deeper/deepest/data.bin": bytes(range(256)) * 4,
    "nested/.hidden_settings": b"kept too",
    "données/naïve file.txt": "accents é and spaces".encode(),
}


def key_of(name: object) -> str:
    """Return a realistic key (64 hex digits) derived from ``name``."""
    return hashlib.sha256(str(name).encode()).hexdigest()


def write_tree(folder: Path, files: Mapping[str, bytes]) -> Path:
    """Create ``folder`` holding ``files`` (relative POSIX path to bytes); return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for relative, data in files.items():
        path = folder.joinpath(*relative.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


class ResultStoreContract:
    """Behaviour every :class:`ResultStore` backend must show."""

    @pytest.fixture
    def store(self) -> ResultStore:
        """A fresh, empty result store; each backend overrides this."""
        raise NotImplementedError("bind the contract: override the `store` fixture")

    @pytest.fixture
    def read_tree(self) -> ReadTree:
        """Read every file under a URL of the store; each backend overrides this."""
        raise NotImplementedError("bind the contract: override the `read_tree` fixture")

    def publish(self, store: ResultStore, key: str, folder: Path) -> tuple[str, dict[str, Any]]:
        """Publish ``folder`` under ``key`` with its built manifest; return both."""
        manifest = build_manifest(key, folder)
        return store.publish(key, folder, manifest), manifest

    # --- publish -------------------------------------------------------------------

    def test_publish_copies_every_file(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """Every file, nested, hidden and unicode-named ones too, arrives byte for byte."""
        key = key_of("every file")
        folder = write_tree(tmp_path / "out", SAMPLE_FILES)
        location, _ = self.publish(store, key, folder)
        published = read_tree(location)
        assert sorted(published) == sorted([*SAMPLE_FILES, MANIFEST_NAME])
        for relative, data in SAMPLE_FILES.items():
            assert published[relative] == data, relative

    def test_publish_returns_location(self, store: ResultStore, tmp_path: Path) -> None:
        """The URL publish returns is location(key)."""
        key = key_of("returned")
        location, _ = self.publish(store, key, write_tree(tmp_path / "out", {"a.txt": b"a"}))
        assert location == store.location(key)

    def test_published_manifest_is_the_given_one(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """manifest.json holds the manifest given, and its digests match the published files."""
        key = key_of("manifest")
        folder = write_tree(tmp_path / "out", SAMPLE_FILES)
        location, manifest = self.publish(store, key, folder)
        published = read_tree(location)
        assert json.loads(published[MANIFEST_NAME]) == manifest
        listed = {entry["path"]: entry for entry in manifest["files"]}
        assert sorted(listed) == sorted(SAMPLE_FILES)
        for relative, entry in listed.items():
            assert entry["size"] == len(published[relative])
            assert entry["sha256"] == hashlib.sha256(published[relative]).hexdigest()

    def test_failed_publish_leaves_no_manifest(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """A publish that fails part-way (an unreadable file) raises and leaves no manifest."""
        key = key_of("fails")
        folder = write_tree(tmp_path / "out", {"a.txt": b"a", "z/z.txt": b"z"})
        manifest = build_manifest(key, folder)
        os.symlink(tmp_path / "does-not-exist", folder / "m_broken_link")
        with pytest.raises(OSError):
            store.publish(key, folder, manifest)
        assert store.read_manifest(key) is None
        assert MANIFEST_NAME not in read_tree(store.location(key))
        # What a failed attempt left never blocks the next one.
        (folder / "m_broken_link").unlink()
        location, manifest = self.publish(store, key, folder)
        assert store.read_manifest(key) == manifest
        assert read_tree(location)["z/z.txt"] == b"z"

    def test_publish_again_replaces_old_files(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """A second publish of a key replaces the first: its files only, its manifest."""
        key = key_of("again")
        first = {"a.txt": b"first", "only_first.txt": b"x", "old/deep.txt": b"old"}
        second = {"a.txt": b"second", "only_second.txt": b"y"}
        self.publish(store, key, write_tree(tmp_path / "first", first))
        location, manifest = self.publish(store, key, write_tree(tmp_path / "second", second))
        published = read_tree(location)
        assert sorted(published) == sorted([*second, MANIFEST_NAME])
        assert published["a.txt"] == b"second"
        assert store.read_manifest(key) == manifest

    def test_publish_leaves_no_staging_or_hidden_entries(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """After publishes and a re-publish, the store holds exactly the keys' files."""
        one, two = key_of("one"), key_of("two")
        files = {"a.txt": b"a", "sub/b.txt": b"b"}
        self.publish(store, one, write_tree(tmp_path / "one", files))
        self.publish(store, two, write_tree(tmp_path / "two", files))
        self.publish(store, one, write_tree(tmp_path / "one-again", {"c.txt": b"c"}))
        everything = read_tree(store.url)
        assert sorted(everything) == sorted(
            [f"{one}/c.txt", f"{one}/{MANIFEST_NAME}"]
            + [f"{two}/{path}" for path in [*files, MANIFEST_NAME]]
        )

    def test_publish_ignores_stale_manifest_in_folder(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """A manifest.json already in the folder is not published; the given one is."""
        key = key_of("stale")
        folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
        manifest = build_manifest(key, folder)
        (folder / MANIFEST_NAME).write_text(json.dumps({"key": "stale", "files": []}))
        location = store.publish(key, folder, manifest)
        assert json.loads(read_tree(location)[MANIFEST_NAME]) == manifest
        assert store.read_manifest(key) == manifest

    def test_publish_keeps_nested_file_named_manifest(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """Only the top-level manifest.json is the manifest; sub/manifest.json is a result file."""
        key = key_of("nested manifest")
        files = {"a.txt": b"a", f"sub/{MANIFEST_NAME}": b'{"mine": true}'}
        location, manifest = self.publish(store, key, write_tree(tmp_path / "out", files))
        published = read_tree(location)
        assert published.get(f"sub/{MANIFEST_NAME}") == files[f"sub/{MANIFEST_NAME}"]
        listed = [entry["path"] for entry in manifest["files"]]
        assert all(path in published for path in listed)

    def test_publishing_one_key_leaves_others_alone(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """Publishing a key does not touch another key's files or manifest."""
        one, two = key_of("one"), key_of("two")
        location, manifest = self.publish(store, one, write_tree(tmp_path / "one", {"a": b"1"}))
        self.publish(store, two, write_tree(tmp_path / "two", {"a": b"2", "b": b"3"}))
        self.publish(store, two, write_tree(tmp_path / "two-again", {"c": b"4"}))
        published = read_tree(location)
        assert sorted(published) == ["a", MANIFEST_NAME]
        assert published["a"] == b"1"
        assert store.read_manifest(one) == manifest

    # --- read_manifest, location -----------------------------------------------------

    def test_read_manifest_returns_published_manifest(
        self, store: ResultStore, tmp_path: Path
    ) -> None:
        """read_manifest returns the manifest published for the key."""
        key = key_of("read")
        _, manifest = self.publish(store, key, write_tree(tmp_path / "out", SAMPLE_FILES))
        assert store.read_manifest(key) == manifest

    def test_read_manifest_unknown_key_is_none(self, store: ResultStore, tmp_path: Path) -> None:
        """read_manifest of a key never published is None, in an empty store and a used one."""
        assert store.read_manifest(key_of("unknown")) is None
        self.publish(store, key_of("known"), write_tree(tmp_path / "out", {"a.txt": b"a"}))
        assert store.read_manifest(key_of("unknown")) is None

    def test_location_is_store_url_then_key(self, store: ResultStore, read_tree: ReadTree) -> None:
        """location(key) starts with the store's url, ends with /<key>, and creates nothing."""
        for key in (key_of("a"), key_of("b")):
            location = store.location(key)
            assert location.startswith(store.url)
            assert location.endswith(f"/{key}")
            assert location.count(key) == 1
        assert store.location(key_of("a")) != store.location(key_of("b"))
        assert read_tree(store.url) == {}

    def test_has_manifest_after_publish_only(self, store: ResultStore, tmp_path: Path) -> None:
        """has_manifest is true for a published location and false for an unpublished one."""
        location, _ = self.publish(store, key_of("hm"), write_tree(tmp_path / "o", {"a": b"a"}))
        assert store.has_manifest(location) is True
        assert store.has_manifest(store.location(key_of("never"))) is False

    def test_has_manifest_of_another_kind_of_store_is_unknown(self, store: ResultStore) -> None:
        """A location of another kind of store cannot be checked: None, not False."""
        other = "gs://elsewhere/x" if not store.url.startswith("gs://") else "file:///x"
        assert store.has_manifest(other) is None
