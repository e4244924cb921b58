"""The contract every result store meets, run unchanged against each backend.

A backend binds it by subclassing :class:`ResultStoreContract` in a ``test_*.py``
module and providing three fixtures:

- ``store``: a fresh, empty result store;
- ``read_tree``: a function that takes a URL (the store's ``url`` or a ``location``)
  and returns every file (object) under it, as ``{relative POSIX path: bytes}``, or
  ``{}`` when there is nothing there. It reads the backend directly, not through the
  store, so the tests see what a reader of the store would see;
- ``put_raw``: a function that writes one file at a POSIX path relative to the store's
  ``url``, directly in the backend, as an older version of the wrapper, a crash or
  someone else would have left it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import time
import tracemalloc
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from analysis_wrapper.errors import StoreError
from analysis_wrapper.stores.base import Published, ResultStore
from analysis_wrapper.stores.manifest import MANIFEST_NAME, build_manifest

ReadTree = Callable[[str], dict[str, bytes]]
PutRaw = Callable[[str, bytes], None]

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

ATTEMPT = "20261126T010203Z-3f9a2c"
OTHER_ATTEMPT = "20261126T010204Z-0b1c2d"


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


def put_old_layout(put_raw: PutRaw, key: str, files: Mapping[str, bytes]) -> dict[str, Any]:
    """Write a result as the wrapper did before attempt folders: files, manifest, in <key>/."""
    entries = [
        {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for path, data in sorted(files.items())
    ]
    manifest = {"key": key, "created": "2025-01-01T00:00:00+00:00", "files": entries}
    for path, data in files.items():
        put_raw(f"{key}/{path}", data)
    put_raw(f"{key}/{MANIFEST_NAME}", json.dumps(manifest).encode())
    return manifest


def by_location(store: ResultStore) -> dict[str, Published]:
    """Everything list_published reports, by location; asserts no location repeats."""
    found = list(store.list_published())
    listed = {entry.location: entry for entry in found}
    assert len(listed) == len(found)
    return listed


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

    @pytest.fixture
    def put_raw(self) -> PutRaw:
        """Write one file under the store's URL, behind its back; each backend overrides this."""
        raise NotImplementedError("bind the contract: override the `put_raw` fixture")

    def publish(
        self, store: ResultStore, key: str, folder: Path, attempt: str = ATTEMPT
    ) -> tuple[str, dict[str, Any]]:
        """Publish ``folder`` as ``attempt`` of ``key`` with its built manifest; return both."""
        manifest = build_manifest(key, folder)
        return store.publish(key, attempt, folder, manifest), manifest

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
        """The URL publish returns is location(key, attempt)."""
        key = key_of("returned")
        location, _ = self.publish(store, key, write_tree(tmp_path / "out", {"a.txt": b"a"}))
        assert location == store.location(key, ATTEMPT)

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
        location = store.location(key, ATTEMPT)
        folder = write_tree(tmp_path / "out", {"a.txt": b"a", "z/z.txt": b"z"})
        manifest = build_manifest(key, folder)
        os.symlink(tmp_path / "does-not-exist", folder / "m_broken_link")
        with pytest.raises(OSError):
            store.publish(key, ATTEMPT, folder, manifest)
        assert store.read_manifest(location) is None
        assert MANIFEST_NAME not in read_tree(location)
        # What a failed try left never blocks the next try of the same attempt.
        (folder / "m_broken_link").unlink()
        again, manifest = self.publish(store, key, folder)
        assert again == location
        assert store.read_manifest(location) == manifest
        assert sorted(read_tree(location)) == ["a.txt", MANIFEST_NAME, "z/z.txt"]

    def test_publishing_the_same_attempt_again_replaces_its_files(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """A retried publish of one attempt leaves exactly the new files and manifest."""
        key = key_of("again")
        first = {"a.txt": b"first", "only_first.txt": b"x", "old/deep.txt": b"old"}
        second = {"a.txt": b"second", "only_second.txt": b"y"}
        self.publish(store, key, write_tree(tmp_path / "first", first))
        location, manifest = self.publish(store, key, write_tree(tmp_path / "second", second))
        published = read_tree(location)
        assert sorted(published) == sorted([*second, MANIFEST_NAME])
        assert published["a.txt"] == b"second"
        assert store.read_manifest(location) == manifest

    def test_two_attempts_of_one_key_never_mix_and_both_stay_readable(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """Two attempts of a key get two folders, each with its own files and manifest."""
        key = key_of("two attempts")
        one = {"a.txt": b"one", "only_one.txt": b"1", "sub/x.txt": b"x1"}
        two = {"a.txt": b"two", "sub/y.txt": b"y2"}
        first, first_manifest = self.publish(store, key, write_tree(tmp_path / "1", one))
        second, second_manifest = self.publish(
            store, key, write_tree(tmp_path / "2", two), OTHER_ATTEMPT
        )
        assert first != second
        assert read_tree(first) == {**one, MANIFEST_NAME: read_tree(first)[MANIFEST_NAME]}
        assert read_tree(second) == {**two, MANIFEST_NAME: read_tree(second)[MANIFEST_NAME]}
        assert store.read_manifest(first) == first_manifest
        assert store.read_manifest(second) == second_manifest
        assert store.has_manifest(first) is True
        assert store.has_manifest(second) is True
        target = tmp_path / "a.txt"
        assert store.download(first, "a.txt", target) is True
        assert target.read_bytes() == b"one"

    def test_publish_leaves_no_staging_or_hidden_entries(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """After publishes and a re-publish, the store holds exactly the attempts' files."""
        one, two = key_of("one"), key_of("two")
        files = {"a.txt": b"a", "sub/b.txt": b"b"}
        self.publish(store, one, write_tree(tmp_path / "one", files))
        self.publish(store, two, write_tree(tmp_path / "two", files))
        self.publish(store, one, write_tree(tmp_path / "one-again", {"c.txt": b"c"}))
        everything = read_tree(store.url)
        assert sorted(everything) == sorted(
            [f"{one}/{ATTEMPT}/c.txt", f"{one}/{ATTEMPT}/{MANIFEST_NAME}"]
            + [f"{two}/{ATTEMPT}/{path}" for path in [*files, MANIFEST_NAME]]
        )

    def test_publish_ignores_stale_manifest_in_folder(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """A manifest.json already in the folder is not published; the given one is."""
        key = key_of("stale")
        folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
        manifest = build_manifest(key, folder)
        (folder / MANIFEST_NAME).write_text(json.dumps({"key": "stale", "files": []}))
        location = store.publish(key, ATTEMPT, folder, manifest)
        assert json.loads(read_tree(location)[MANIFEST_NAME]) == manifest
        assert store.read_manifest(location) == manifest

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
        assert store.read_manifest(location) == manifest

    # --- read_manifest, location -----------------------------------------------------

    def test_read_manifest_returns_published_manifest(
        self, store: ResultStore, tmp_path: Path
    ) -> None:
        """read_manifest(location) returns the manifest published there, slash or not."""
        key = key_of("read")
        location, manifest = self.publish(store, key, write_tree(tmp_path / "out", SAMPLE_FILES))
        assert store.read_manifest(location) == manifest
        assert store.read_manifest(location + "/") == manifest

    def test_read_manifest_where_nothing_was_published_is_none(
        self, store: ResultStore, tmp_path: Path
    ) -> None:
        """read_manifest of a location never published is None, in an empty store and a used one."""
        unknown = key_of("unknown")
        assert store.read_manifest(store.location(unknown, ATTEMPT)) is None
        self.publish(store, key_of("known"), write_tree(tmp_path / "out", {"a.txt": b"a"}))
        assert store.read_manifest(store.location(unknown, ATTEMPT)) is None
        assert store.read_manifest(store.location(key_of("known"), OTHER_ATTEMPT)) is None
        assert store.read_manifest(f"{store.url}/{key_of('known')}") is None

    def test_read_manifest_of_old_layout_folder(self, store: ResultStore, put_raw: PutRaw) -> None:
        """A record written before attempt folders names <url>/<key>: its manifest reads."""
        key = key_of("old layout")
        manifest = put_old_layout(put_raw, key, {"a.txt": b"a", "sub/b.txt": b"b"})
        assert store.read_manifest(f"{store.url}/{key}") == manifest
        assert store.has_manifest(f"{store.url}/{key}") is True
        assert store.read_manifest(store.location(key, ATTEMPT)) is None

    def test_read_manifest_of_corrupt_manifest_is_store_error(
        self, store: ResultStore, put_raw: PutRaw
    ) -> None:
        """A manifest.json that is not a JSON object raises StoreError naming the manifest."""
        key = key_of("corrupt")
        put_raw(f"{key}/{ATTEMPT}/{MANIFEST_NAME}", b"{not json")
        put_raw(f"{key}/{OTHER_ATTEMPT}/{MANIFEST_NAME}", b"[1, 2]")
        for attempt in (ATTEMPT, OTHER_ATTEMPT):
            with pytest.raises(StoreError, match=MANIFEST_NAME):
                store.read_manifest(store.location(key, attempt))

    def test_read_manifest_of_another_kind_of_store_is_none(self, store: ResultStore) -> None:
        """A location this kind of store cannot read gives None, not an error."""
        other = "gs://elsewhere/x" if not store.url.startswith("gs://") else "file:///x"
        assert store.read_manifest(other) is None

    def test_location_is_store_url_then_key_then_attempt(
        self, store: ResultStore, read_tree: ReadTree
    ) -> None:
        """location(key, attempt) is <url>/<key>/<attempt>, distinct per both, creating nothing."""
        for key in (key_of("a"), key_of("b")):
            for attempt in (ATTEMPT, OTHER_ATTEMPT, "1", "a.b_c-D"):
                assert store.location(key, attempt) == f"{store.url}/{key}/{attempt}"
        assert store.location(key_of("a"), ATTEMPT) != store.location(key_of("b"), ATTEMPT)
        assert store.location(key_of("a"), ATTEMPT) != store.location(key_of("a"), OTHER_ATTEMPT)
        assert read_tree(store.url) == {}

    @pytest.mark.parametrize("attempt", ["", ".", "..", ".staging-x", "a/b", "a b", "-x", "é"])
    def test_location_refuses_bad_attempt_names(
        self, store: ResultStore, attempt: str, tmp_path: Path
    ) -> None:
        """An attempt name outside [A-Za-z0-9._-] (or a hidden one) is a ValueError."""
        with pytest.raises(ValueError, match="attempt"):
            store.location(key_of("a"), attempt)
        folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
        with pytest.raises(ValueError, match="attempt"):
            store.publish(key_of("a"), attempt, folder, build_manifest(key_of("a"), folder))

    @pytest.mark.parametrize("key", ["", "abc", key_of("x").upper(), key_of("x") + "0", "../x"])
    def test_location_refuses_bad_keys(self, store: ResultStore, key: str) -> None:
        """A key that is not 64 lowercase hex digits is a ValueError."""
        with pytest.raises(ValueError, match="key"):
            store.location(key, ATTEMPT)

    def test_has_manifest_after_publish_only(self, store: ResultStore, tmp_path: Path) -> None:
        """has_manifest is true for a published location and false for an unpublished one."""
        location, _ = self.publish(store, key_of("hm"), write_tree(tmp_path / "o", {"a": b"a"}))
        assert store.has_manifest(location) is True
        assert store.has_manifest(store.location(key_of("never"), ATTEMPT)) is False
        assert store.has_manifest(store.location(key_of("hm"), OTHER_ATTEMPT)) is False

    def test_has_manifest_of_another_kind_of_store_is_unknown(self, store: ResultStore) -> None:
        """A location of another kind of store cannot be checked: None, not False."""
        other = "gs://elsewhere/x" if not store.url.startswith("gs://") else "file:///x"
        assert store.has_manifest(other) is None

    def test_has_manifests_answers_as_has_manifest(
        self, store: ResultStore, put_raw: PutRaw, tmp_path: Path
    ) -> None:
        """has_manifests gives each location exactly what has_manifest gives it."""
        folder = write_tree(tmp_path / "o", {"a.txt": b"a", "sub/b.txt": b"b"})
        published = [self.publish(store, key_of(("many", n)), folder)[0] for n in range(6)]
        unfinished = [store.location(key_of(("files only", n)), ATTEMPT) for n in range(3)]
        for n in range(3):
            put_raw(f"{key_of(('files only', n))}/{ATTEMPT}/a.txt", b"a")
        # Names that sort just before and after a manifest's, and none at all.
        odd = key_of("odd names")
        for name in ("manifest.jso", "manifest.jsoa", f"{MANIFEST_NAME}.partial", "manifest.jsp"):
            put_raw(f"{odd}/{ATTEMPT}/{name}", b"{}")
        put_old_layout(put_raw, key_of("old"), {"a.txt": b"a"})
        put_raw(f"{key_of('old files only')}/a.txt", b"a")
        locations = [
            *published,
            published[0] + "/",
            published[1],  # twice
            store.location(key_of(("many", 0)), OTHER_ATTEMPT),
            f"{store.url}/{key_of(('many', 2))}",  # a key's folder, not an attempt's
            *unfinished,
            store.location(odd, ATTEMPT),
            f"{store.url}/{key_of('old')}",
            f"{store.url}/{key_of('old files only')}",
            store.location(key_of("never"), ATTEMPT),
            f"{store.url}/{key_of('never')}",
            "gs://elsewhere/x" if not store.url.startswith("gs://") else "file:///x",
        ]
        expected = {location: store.has_manifest(location) for location in locations}
        assert list(expected.values()).count(True) == 8  # published, twice, old layout
        assert list(expected.values()).count(None) == 1
        assert store.has_manifests(locations) == expected
        assert store.has_manifests(iter(reversed(locations))) == expected
        assert store.has_manifests([]) == {}

    # --- list_published ---------------------------------------------------------------

    def test_list_published_of_empty_store_is_empty(self, store: ResultStore) -> None:
        """A store never written to lists nothing (and listing creates nothing)."""
        assert list(store.list_published()) == []

    def test_list_published_covers_every_kind_of_folder(
        self, store: ResultStore, read_tree: ReadTree, put_raw: PutRaw, tmp_path: Path
    ) -> None:
        """Complete attempts, an attempt without manifest and an old-layout result, each once."""
        started = time.time()
        done, crashed, old = key_of("done"), key_of("crashed"), key_of("old")
        files = {"a.txt": b"aaaa", "sub/b.txt": b"bb"}
        first, _ = self.publish(store, done, write_tree(tmp_path / "1", files))
        second, _ = self.publish(store, done, write_tree(tmp_path / "2", {"c": b"c"}), "2")
        put_raw(f"{crashed}/{ATTEMPT}/a.txt", b"half")
        put_raw(f"{crashed}/{ATTEMPT}/sub/b.txt", b"written")
        manifest = put_old_layout(put_raw, old, {"x.csv": b"x,y\n", "deep/er/z.bin": b"\0" * 9})
        listed = by_location(store)
        url = store.url
        assert sorted(listed) == sorted(
            [first, second, f"{url}/{crashed}/{ATTEMPT}", f"{url}/{old}"]
        )
        first_size = sum(map(len, read_tree(first).values()))
        assert listed[first] == Published(done, first, True, listed[first].modified, first_size, 3)
        assert (listed[second].key, listed[second].complete, listed[second].files) == (
            done,
            True,
            2,
        )
        half = listed[f"{url}/{crashed}/{ATTEMPT}"]
        assert (half.key, half.complete, half.files, half.size) == (crashed, False, 2, 11)
        legacy = listed[f"{url}/{old}"]
        manifest_size = len(json.dumps(manifest).encode())
        assert (legacy.key, legacy.complete, legacy.files) == (old, True, 3)
        assert legacy.size == 4 + 9 + manifest_size
        for entry in listed.values():
            assert started - 5 <= entry.modified <= time.time() + 5

    def test_list_published_ignores_what_is_not_a_key_folder(
        self, store: ResultStore, put_raw: PutRaw, tmp_path: Path
    ) -> None:
        """Files at the top and folders not named by 64 hex digits are not the store's."""
        put_raw("README.txt", b"not a result")
        put_raw("notes/2025/x.txt", b"x")
        put_raw(f"{key_of('k')[:63]}/a/b.txt", b"63 digits")
        put_raw(f"{key_of('k').upper()}/a/b.txt", b"upper case")
        put_raw(key_of("bare object"), b"a file named like a key")
        assert list(store.list_published()) == []
        location, _ = self.publish(store, key_of("k"), write_tree(tmp_path / "o", {"a": b"a"}))
        assert [entry.location for entry in store.list_published()] == [location]

    def test_list_published_splits_a_key_holding_both_layouts(
        self, store: ResultStore, put_raw: PutRaw, tmp_path: Path
    ) -> None:
        """An old result and a later attempt of its key are two folders; nested ones stay put."""
        key = key_of("both")
        old_files = {"a.txt": b"old", "nested/x.txt": b"x", f"keep/{MANIFEST_NAME}": b"{}"}
        put_old_layout(put_raw, key, old_files)
        put_raw(f"{key}/stray/y.txt", b"no manifest, not listed: kept with the old result")
        attempt, _ = self.publish(store, key, write_tree(tmp_path / "new", {"a.txt": b"new"}))
        listed = by_location(store)
        assert sorted(listed) == sorted([f"{store.url}/{key}", attempt])
        assert listed[f"{store.url}/{key}"].files == len(old_files) + 2
        assert listed[attempt].files == 2
        assert store.read_manifest(attempt) is not None

    # --- delete -----------------------------------------------------------------------

    def test_delete_removes_exactly_one_attempt(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """delete(location) removes that attempt's files only; others stay readable."""
        one, two = key_of("one"), key_of("two")
        files = {"a.txt": b"a", "sub/b.txt": b"b", "sub/deeper/c.txt": b"c"}
        gone, _ = self.publish(store, one, write_tree(tmp_path / "1", files))
        kept, kept_manifest = self.publish(store, one, write_tree(tmp_path / "2", files), "2")
        other, _ = self.publish(store, two, write_tree(tmp_path / "3", files))
        before = read_tree(store.url)
        assert store.delete(gone) == len(files) + 1
        prefix = f"{one}/{ATTEMPT}/"
        assert read_tree(store.url) == {
            path: data for path, data in before.items() if not path.startswith(prefix)
        }
        assert read_tree(gone) == {}
        assert store.read_manifest(gone) is None
        assert store.read_manifest(kept) == kept_manifest
        assert sorted(by_location(store)) == sorted([kept, other])
        assert store.delete(gone) == 0  # nothing left: nothing to do
        assert store.delete(store.location(key_of("never"), ATTEMPT)) == 0

    def test_delete_of_incomplete_and_old_layout_folders(
        self, store: ResultStore, read_tree: ReadTree, put_raw: PutRaw, tmp_path: Path
    ) -> None:
        """An attempt without manifest goes whole; an old result goes without its attempts."""
        crashed, key = key_of("crashed"), key_of("both")
        put_raw(f"{crashed}/{ATTEMPT}/a.txt", b"a")
        put_raw(f"{crashed}/{ATTEMPT}/sub/b.txt", b"b")
        assert store.delete(f"{store.url}/{crashed}/{ATTEMPT}/") == 2
        assert read_tree(store.url) == {}
        put_old_layout(put_raw, key, {"a.txt": b"old", "nested/x.txt": b"x"})
        attempt, manifest = self.publish(store, key, write_tree(tmp_path / "o", {"a.txt": b"n"}))
        assert store.delete(f"{store.url}/{key}") == 3
        assert sorted(read_tree(store.url)) == [
            f"{key}/{ATTEMPT}/a.txt",
            f"{key}/{ATTEMPT}/{MANIFEST_NAME}",
        ]
        assert store.read_manifest(attempt) == manifest
        assert sorted(by_location(store)) == [attempt]

    def test_delete_refuses_what_is_not_a_folder_of_this_store(
        self, store: ResultStore, read_tree: ReadTree, put_raw: PutRaw, tmp_path: Path
    ) -> None:
        """The store itself, a key's folder of attempts, a file, another store: StoreError."""
        key = key_of("kept")
        location, _ = self.publish(store, key, write_tree(tmp_path / "o", {"a/b.txt": b"b"}))
        put_raw("README.txt", b"not the store's")
        before = read_tree(store.url)
        other = "gs://elsewhere/x" if not store.url.startswith("gs://") else "file:///x"
        refused = [
            store.url,
            f"{store.url}/",
            f"{store.url}/{key}",  # holds an attempt: not a folder of its own
            f"{location}/a",
            f"{location}/a/b.txt",
            f"{store.url}/README.txt",
            f"{store.url}/{key}/../{key}",
            other,
        ]
        for url in refused:
            with pytest.raises(StoreError):
                store.delete(url)
        assert read_tree(store.url) == before

    # --- list_folder, file_sha256 (what results verify reads) ------------------------

    def test_list_folder_gives_every_file_with_its_size(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """One folder's files (nested, hidden, unicode, empty), manifest included, with sizes."""
        key = key_of("listed")
        location, _ = self.publish(store, key, write_tree(tmp_path / "out", SAMPLE_FILES))
        stored = read_tree(location)
        listing = store.list_folder(location)
        assert listing == {path: len(data) for path, data in stored.items()}
        assert sorted(listing) == sorted([*SAMPLE_FILES, MANIFEST_NAME])
        assert store.list_folder(location + "/") == listing

    def test_list_folder_keeps_to_its_own_folder(
        self, store: ResultStore, put_raw: PutRaw, tmp_path: Path
    ) -> None:
        """Attempts 1 and 10 of a key, and another key, never show in each other's listing.

        A key's own folder (an old-layout location) lists everything under it, its
        attempts' files too.
        """
        key = key_of("neighbours")
        one, _ = self.publish(store, key, write_tree(tmp_path / "1", {"a.txt": b"1"}), "1")
        ten, _ = self.publish(store, key, write_tree(tmp_path / "10", {"b/c.txt": b"10"}), "10")
        self.publish(store, key_of("other"), write_tree(tmp_path / "o", {"a.txt": b"o"}), "1")
        put_raw(f"{key}1/x.txt", b"a folder whose name starts with the key's")
        assert sorted(store.list_folder(one) or {}) == ["a.txt", MANIFEST_NAME]
        assert sorted(store.list_folder(ten) or {}) == ["b/c.txt", MANIFEST_NAME]
        assert sorted(store.list_folder(f"{store.url}/{key}") or {}) == [
            "1/a.txt",
            f"1/{MANIFEST_NAME}",
            "10/b/c.txt",
            f"10/{MANIFEST_NAME}",
        ]

    def test_list_folder_where_nothing_is_and_of_another_kind(
        self, store: ResultStore, tmp_path: Path
    ) -> None:
        """Nothing there: ``{}`` (in an empty store and a used one); another kind: ``None``."""
        never = store.location(key_of("never"), ATTEMPT)
        assert store.list_folder(never) == {}
        self.publish(store, key_of("known"), write_tree(tmp_path / "o", {"a.txt": b"a"}))
        assert store.list_folder(never) == {}
        assert store.list_folder(store.location(key_of("known"), OTHER_ATTEMPT)) == {}
        other = "gs://elsewhere/x" if not store.url.startswith("gs://") else "file:///x"
        assert store.list_folder(other) is None

    def test_list_folder_sees_changes_made_behind_the_stores_back(
        self, store: ResultStore, put_raw: PutRaw, tmp_path: Path
    ) -> None:
        """A file rewritten with another size, and a file added, are listed as they are now."""
        key = key_of("changed behind")
        location, _ = self.publish(store, key, write_tree(tmp_path / "o", {"a.txt": b"four"}))
        put_raw(f"{key}/{ATTEMPT}/a.txt", b"now longer")
        put_raw(f"{key}/{ATTEMPT}/sub/added.bin", b"\0" * 7)
        listing = store.list_folder(location) or {}
        assert (listing["a.txt"], listing["sub/added.bin"]) == (10, 7)

    def test_file_sha256_is_the_digest_of_the_stored_bytes(
        self, store: ResultStore, put_raw: PutRaw, tmp_path: Path
    ) -> None:
        """Every file's digest, one of several MiB and an empty one too; a missing file: None."""
        key = key_of("digests")
        files = {**SAMPLE_FILES, "large.bin": random.Random(3).randbytes(3 * 1024 * 1024 + 5)}
        location, _ = self.publish(store, key, write_tree(tmp_path / "o", files))
        for path, data in files.items():
            assert store.file_sha256(location, path) == hashlib.sha256(data).hexdigest(), path
        assert store.file_sha256(location, "not-there.txt") is None
        assert store.file_sha256(store.location(key_of("never"), ATTEMPT), "a.txt") is None
        put_raw(f"{key}/{ATTEMPT}/units.csv", b"changed behind the store's back")
        changed = hashlib.sha256(b"changed behind the store's back").hexdigest()
        assert store.file_sha256(location + "/", "units.csv") == changed

    def test_file_sha256_of_another_kind_of_store_is_an_error(self, store: ResultStore) -> None:
        """A location this kind of store cannot read: StoreError naming it."""
        other = "gs://elsewhere/x" if not store.url.startswith("gs://") else "file:///x"
        with pytest.raises(StoreError, match=r"elsewhere|file:///x"):
            store.file_sha256(other, "a.txt")

    def test_file_sha256_streams_and_serves_many_threads(
        self, store: ResultStore, put_raw: PutRaw
    ) -> None:
        """A 24 MiB file is hashed with a few MiB in memory at most, from 6 threads at once."""
        key = key_of("streamed")
        data = random.Random(5).randbytes(24 * 1024 * 1024)
        put_raw(f"{key}/{ATTEMPT}/big.bin", data)
        put_raw(f"{key}/{ATTEMPT}/small.txt", b"small")
        location = store.location(key, ATTEMPT)
        expected = {"big.bin": hashlib.sha256(data).hexdigest(), "small.txt": None}
        expected["small.txt"] = hashlib.sha256(b"small").hexdigest()
        del data
        store.file_sha256(location, "small.txt")  # the client made, outside the measure
        tracemalloc.start()
        try:
            assert store.file_sha256(location, "big.bin") == expected["big.bin"]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 8 * 1024 * 1024, f"{peak} bytes at once for a 24 MiB file"
        paths = ["big.bin", "small.txt"] * 3
        with ThreadPoolExecutor(6) as pool:
            digests = list(pool.map(lambda path: store.file_sha256(location, path), paths))
        assert digests == [expected[path] for path in paths]

    # --- pickling (a process pool or Dask worker gets a copy) -----------------------

    def test_store_pickled_after_use_publishes_and_reads_in_the_copy(
        self, store: ResultStore, read_tree: ReadTree, tmp_path: Path
    ) -> None:
        """A used store (client made, lock taken) pickles without them; the copy works."""
        key = key_of("pickled")
        location, manifest = self.publish(store, key, write_tree(tmp_path / "a", {"a.txt": b"a"}))
        assert store.read_manifest(location) == manifest
        data = pickle.dumps(store)
        for name in (b"botocore", b"boto3", b"_thread"):
            assert name not in data, name
        copy: ResultStore = pickle.loads(data)
        assert copy.url == store.url
        assert copy.read_manifest(location) == manifest
        folder = write_tree(tmp_path / "b", {"b.txt": b"b"})
        again, again_manifest = self.publish(copy, key, folder, OTHER_ATTEMPT)
        assert copy.has_manifest(again) is True
        assert store.read_manifest(again) == again_manifest
        assert sorted(read_tree(again)) == ["b.txt", MANIFEST_NAME]
        copy_of_copy: ResultStore = pickle.loads(pickle.dumps(copy))
        assert copy_of_copy.read_manifest(location) == manifest
