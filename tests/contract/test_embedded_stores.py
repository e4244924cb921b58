"""The store contracts bound to the embedded stores, plus what only they do.

The contracts run against :class:`SqliteRecordStore` and :class:`LocalResultStore`;
below them: read-only SQLite, table names, the store factory, and several processes
writing one SQLite file at once.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import multiprocessing
import os
import pickle
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from analysis_wrapper.config.settings import Capsule, StoreSettings
from analysis_wrapper.errors import ConfigError, FencedOutError, RecordExistsError, StoreError
from analysis_wrapper.stores.base import RecordQuery
from analysis_wrapper.stores.claims import Claims, Owner
from analysis_wrapper.stores.factory import open_record_store, open_result_store
from analysis_wrapper.stores.local import LocalResultStore
from analysis_wrapper.stores.manifest import MANIFEST_NAME, build_manifest
from analysis_wrapper.stores.sqlite import SqliteRecordStore
from contract.claim_store_contract import ClaimStoreContract, sample_claim
from contract.record_store_contract import (
    RecordStoreContract,
    key_of,
    make_record,
    with_inputs,
)
from contract.result_store_contract import ATTEMPT, ResultStoreContract, write_tree

TABLE = "analysis_results"


def read_file_tree(url: str) -> dict[str, bytes]:
    """Return every file under a ``file://`` URL as ``{relative POSIX path: bytes}``."""
    parts = urlsplit(url)
    assert parts.scheme == "file", url
    root = Path(unquote(parts.path))
    if not root.exists():
        return {}
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file()
    }


# --- the contracts, bound ------------------------------------------------------------


class TestSqliteRecordStore(RecordStoreContract):
    """The record store contract on a SQLite file in a folder that does not exist yet."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SqliteRecordStore]:
        store = SqliteRecordStore(tmp_path / "not" / "yet" / "records.sqlite", TABLE)
        yield store
        store.close()


class TestSqliteClaimStore(ClaimStoreContract):
    """The claim store contract on one SQLite file, each worker with its own connection."""

    @pytest.fixture
    def claim_stores(self, tmp_path: Path) -> Iterator[Callable[[], SqliteRecordStore]]:
        opened: list[SqliteRecordStore] = []

        def open_handle() -> SqliteRecordStore:
            opened.append(SqliteRecordStore(tmp_path / "claims" / "records.sqlite", TABLE))
            return opened[-1]

        yield open_handle
        for store in opened:
            store.close()


class TestLocalResultStore(ResultStoreContract):
    """The result store contract on a local folder that does not exist yet."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalResultStore:
        return LocalResultStore(tmp_path / "store" / "results")

    @pytest.fixture
    def read_tree(self) -> Any:
        return read_file_tree

    @pytest.fixture
    def put_raw(self, store: LocalResultStore) -> Any:
        def put(relative: str, data: bytes) -> None:
            path = store.root.joinpath(*relative.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

        return put


# --- the local results folder --------------------------------------------------------


def test_local_publish_leaves_only_attempt_folders(tmp_path: Path) -> None:
    """After publishes, a re-publish and a failed publish, only attempt folders remain."""
    root = tmp_path / "results"
    store = LocalResultStore(root)
    assert store.location(key_of("a"), ATTEMPT).endswith(f"{key_of('a')}/{ATTEMPT}")
    assert not root.exists()
    one = write_tree(tmp_path / "one", {"a.txt": b"a", "sub/b.txt": b"b"})
    store.publish(key_of("one"), ATTEMPT, one, build_manifest(key_of("one"), one))
    store.publish(key_of("one"), ATTEMPT, one, build_manifest(key_of("one"), one))
    os.symlink(tmp_path / "nowhere", one / "broken")
    with pytest.raises(StoreError):
        store.publish(key_of("two"), ATTEMPT, one, build_manifest(key_of("two"), one))
    assert os.listdir(root) == [key_of("one")]  # the failed try left no folder at all
    assert os.listdir(root / key_of("one")) == [ATTEMPT]
    assert sorted(os.listdir(root / key_of("one") / ATTEMPT)) == ["a.txt", MANIFEST_NAME, "sub"]


class _DiskEvents:
    """os.fsync and os.replace as they are called, by path (fsync's through /proc)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.fail_fsync: Callable[[str], bool] = lambda path: False
        self.fail_replace: Callable[[str, str], bool] = lambda source, target: False
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(descriptor: int) -> None:
            path = os.readlink(f"/proc/self/fd/{descriptor}")
            if self.fail_fsync(path):
                raise OSError(errno.EIO, "Input/output error")
            self.events.append(("fsync", path, ""))
            real_fsync(descriptor)

        def replace(source: Any, target: Any) -> None:
            source, target = os.path.abspath(source), os.path.abspath(target)
            if self.fail_replace(source, target):
                raise OSError(errno.EIO, "Input/output error")
            real_replace(source, target)
            self.events.append(("replace", source, target))

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def index(self, kind: str, path: str, target: str = "") -> int:
        """Where the first event of this kind on this path (and target) happened."""
        for position, event in enumerate(self.events):
            if event[0] == kind and event[1] == path and (not target or event[2] == target):
                return position
        raise AssertionError(f"no {kind} of {path} in {self.events}")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fsyncs")
def test_local_publish_fsyncs_files_and_folders_before_the_manifest_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every copied file, every folder and the manifest are fsynced in the order that counts.

    Files and subfolders before the manifest is renamed into the staging folder, the
    staging folder after that rename and before its own rename into place (when the
    manifest counts), the key's folder after that, and the root when it gains the
    key's folder.
    """
    root = (tmp_path / "results").resolve()
    store = LocalResultStore(root)
    key = key_of("durable")
    files = {"a.txt": b"a", "sub/b.txt": b"b", "sub/deeper/c.txt": b"c"}
    folder = write_tree(tmp_path / "out", files)
    disk = _DiskEvents(monkeypatch)
    store.publish(key, ATTEMPT, folder, build_manifest(key, folder))
    final = root / key / ATTEMPT
    assert (final / MANIFEST_NAME).is_file()
    renames = [event for event in disk.events if event[0] == "replace"]
    assert len(renames) == 2  # the manifest into the staging folder; the folder into place
    _, temporary, manifest = renames[0]
    staging = os.path.dirname(manifest)
    assert manifest == f"{staging}/{MANIFEST_NAME}"
    assert os.path.basename(staging).startswith(".staging-")
    assert renames[1][1:] == (staging, str(final))
    counted = disk.index("replace", temporary, manifest)
    in_place = disk.index("replace", staging, str(final))
    for relative in files:
        assert disk.index("fsync", f"{staging}/{relative}") < counted, relative
    for subfolder in ("/sub", "/sub/deeper"):
        assert disk.index("fsync", f"{staging}{subfolder}") < counted, subfolder
    assert disk.index("fsync", temporary) < counted
    # The staging folder's own entries (top-level files, the manifest) before the
    # manifest counts: a staging folder is never trusted, its rename into place is.
    assert counted < disk.index("fsync", staging) < in_place
    assert ("fsync", str(root / key), "") in disk.events[in_place:]
    assert disk.index("fsync", str(root)) < in_place  # the new key folder's entry


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fsyncs")
def test_local_publish_failing_at_an_fsync_leaves_no_manifest_and_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that cannot be fsynced fails the publish: no manifest, no staging, no key folder."""
    root = (tmp_path / "results").resolve()
    store = LocalResultStore(root)
    key = key_of("fsync fails")
    folder = write_tree(tmp_path / "out", {"a.txt": b"a", "sub/b.txt": b"b"})
    disk = _DiskEvents(monkeypatch)
    disk.fail_fsync = lambda path: path.endswith("/sub/b.txt")
    with pytest.raises(StoreError, match="Input/output error"):
        store.publish(key, ATTEMPT, folder, build_manifest(key, folder))
    assert store.read_manifest(store.location(key, ATTEMPT)) is None
    assert not any(event[0] == "replace" for event in disk.events)  # no manifest counted
    assert os.listdir(root) == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fsyncs")
@pytest.mark.parametrize("failing", ["rename into place", "fsync after the rename"])
def test_local_retry_that_fails_keeps_the_good_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """A re-publish of an attempt that fails at its last steps puts the earlier copy back."""
    root = (tmp_path / "results").resolve()
    store = LocalResultStore(root)
    key = key_of("retry fails")
    good = write_tree(tmp_path / "good", {"a.txt": b"good"})
    location = store.publish(key, ATTEMPT, good, build_manifest(key, good))
    first = store.read_manifest(location)
    newer = write_tree(tmp_path / "newer", {"a.txt": b"newer", "b.txt": b"b"})
    disk = _DiskEvents(monkeypatch)
    final = str(root / key / ATTEMPT)
    if failing == "rename into place":
        disk.fail_replace = lambda source, target: target == final and "staging" in source
    else:
        disk.fail_fsync = lambda path: path == str(root / key)
    with pytest.raises(StoreError):
        store.publish(key, ATTEMPT, newer, build_manifest(key, newer))
    assert store.read_manifest(location) == first
    assert (root / key / ATTEMPT / "a.txt").read_bytes() == b"good"
    assert sorted(os.listdir(root / key / ATTEMPT)) == ["a.txt", MANIFEST_NAME]
    assert os.listdir(root / key) == [ATTEMPT]  # no staging or retired folder left


def test_local_staging_leftovers_are_listed_incomplete_and_deletable(tmp_path: Path) -> None:
    """Hidden folders of crashed publishes, old and new style, are listed and deletable."""
    root = tmp_path / "results"
    store = LocalResultStore(root)
    key = key_of("crashed")
    staging = root / key / f".staging-{ATTEMPT}-0123456789ab"
    write_tree(staging, {"a.txt": b"aa", MANIFEST_NAME: b"{}"})  # crashed before the rename
    retired = root / key / f".retired-{ATTEMPT}-0123456789ab"
    retired.mkdir()  # crashed with nothing in it
    top = root / f".staging-{key}-ba9876543210"
    write_tree(top, {"x/y.txt": b"yyy"})
    (root / ".staging-not-a-key").mkdir()
    listed = {entry.location: entry for entry in store.list_published()}
    assert sorted(listed) == sorted(
        f"{store.url}/{path.relative_to(root).as_posix()}" for path in (staging, retired, top)
    )
    assert all(entry.key == key and not entry.complete for entry in listed.values())
    sizes = {staging: (2, 4), retired: (0, 0), top: (1, 3)}
    for folder, (files, size) in sizes.items():
        entry = listed[f"{store.url}/{folder.relative_to(root).as_posix()}"]
        assert (entry.files, entry.size) == (files, size), folder.name
    assert listed[f"{store.url}/{key}/{retired.name}"].modified == retired.stat().st_mtime
    assert sorted(store.delete(location) for location in listed) == [0, 1, 2]
    assert sorted(os.listdir(root)) == [".staging-not-a-key"]
    assert list(store.list_published()) == []


def test_local_list_published_sees_folder_names_needing_quotes(tmp_path: Path) -> None:
    """A folder name with a space or '%' gets a location that read_manifest and delete take."""
    root = tmp_path / "results dir"
    store = LocalResultStore(root)
    key = key_of("quoted")
    write_tree(root / key / "odd name%20", {MANIFEST_NAME: b'{"files": []}', "a": b"a"})
    [entry] = store.list_published()
    assert entry.complete and entry.files == 2
    assert store.read_manifest(entry.location) == {"files": []}
    assert store.delete(entry.location) == 2
    assert not (root / key).exists()


def test_local_read_manifest_of_unreadable_location_is_none(tmp_path: Path) -> None:
    """A location that is a file, or under one, has no manifest."""
    store = LocalResultStore(tmp_path / "results")
    (tmp_path / "a-file").write_text("x")
    assert store.read_manifest((tmp_path / "a-file").as_uri()) is None
    assert store.read_manifest((tmp_path / "missing").as_uri()) is None


# --- SQLite: read-only, tables ---------------------------------------------------------


def test_read_only_store_on_missing_file_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    """A read-only store on a missing file reads as empty and creates no file or folder."""
    store = SqliteRecordStore(tmp_path / "absent" / "records.sqlite", TABLE, read_only=True)
    assert store.get(key_of("a")) is None
    assert store.get_many([key_of("a"), key_of("b")]) == {}
    assert store.find(RecordQuery()) == []
    assert store.find(RecordQuery(parameters={"x": 1})) == []
    assert store.display_url.endswith(f"records.sqlite#{TABLE}")
    store.close()
    assert list(tmp_path.iterdir()) == []


def test_read_only_put_raises_store_error(tmp_path: Path) -> None:
    """A read-only put raises StoreError (not RecordExistsError) and writes nothing."""
    path = tmp_path / "absent" / "records.sqlite"
    store = SqliteRecordStore(path, TABLE, read_only=True)
    with pytest.raises(StoreError) as raised:
        store.put(make_record(key_of("a")))
    assert not isinstance(raised.value, RecordExistsError)
    assert list(tmp_path.iterdir()) == []


def test_read_only_store_reads_a_writers_records_and_refuses_writes(tmp_path: Path) -> None:
    """A read-only store sees what a writer stored, and put leaves the file unchanged."""
    path = tmp_path / "records.sqlite"
    writer = SqliteRecordStore(path, TABLE)
    record = make_record(key_of("a"), {"x": 1})
    writer.put(record)
    reader = SqliteRecordStore(path, TABLE, read_only=True)
    assert reader.get(key_of("a")) == record
    assert [r["_id"] for r in reader.find(RecordQuery(parameters={"x": 1}))] == [key_of("a")]
    with pytest.raises(StoreError):
        reader.put(make_record(key_of("b")))
    assert writer.get(key_of("b")) is None
    reader.close()
    writer.close()


def test_read_only_store_on_file_without_its_table_is_empty(tmp_path: Path) -> None:
    """A read-only store whose table is not in the file reads as empty."""
    path = tmp_path / "records.sqlite"
    writer = SqliteRecordStore(path, "other_table")
    writer.put(make_record(key_of("a")))
    writer.close()
    reader = SqliteRecordStore(path, TABLE, read_only=True)
    assert reader.get(key_of("a")) is None
    assert reader.find(RecordQuery()) == []
    reader.close()


def test_tables_in_one_file_are_separate(tmp_path: Path) -> None:
    """Two tables in one file do not see each other's records."""
    path = tmp_path / "records.sqlite"
    first, second = SqliteRecordStore(path, "first"), SqliteRecordStore(path, "second-2")
    first.put(make_record(key_of("a")))
    second.put(make_record(key_of("a")))
    second.put(make_record(key_of("b")))
    assert sorted(first.get_many([key_of("a"), key_of("b")])) == [key_of("a")]
    assert len(second.find(RecordQuery())) == 2
    first.close()
    second.close()


@pytest.mark.parametrize(
    "table",
    ["", "1records", 'rec"ords', "rec ords", "records;drop", "a.b", "naïve", "records\n"],
)
def test_invalid_table_name_is_config_error(tmp_path: Path, table: str) -> None:
    """A table name that is not letters, digits, '_' and '-' is a ConfigError."""
    with pytest.raises(ConfigError, match="DOCDB_COLLECTION"):
        SqliteRecordStore(tmp_path / "records.sqlite", table)
    assert list(tmp_path.iterdir()) == []


# --- the factory: DOCDB_HOST ---------------------------------------------------------


def test_factory_without_docdb_host_uses_sqlite_in_capsule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DOCDB_HOST unset: records go to <capsule>/.analysis_store/records.sqlite."""
    monkeypatch.setenv("DOCDB_COLLECTION", "my_records")
    store = open_record_store(StoreSettings(), Capsule(tmp_path))
    store.put(make_record(key_of("a")))
    store.close()
    path = tmp_path / ".analysis_store" / "records.sqlite"
    assert path.is_file()
    with sqlite3.connect(path) as connection:
        rows = connection.execute('SELECT _id FROM "my_records"').fetchall()
    connection.close()
    assert rows == [(key_of("a"),)]
    assert store.display_url.endswith("/.analysis_store/records.sqlite#my_records")


def test_factory_read_only_without_docdb_host_creates_nothing(tmp_path: Path) -> None:
    """DOCDB_HOST unset and read-only: a missing store reads as empty and is not created."""
    store = open_record_store(StoreSettings(), Capsule(tmp_path), read_only=True)
    assert store.get_many([key_of("a")]) == {}
    with pytest.raises(StoreError):
        store.put(make_record(key_of("a")))
    store.close()
    assert list(tmp_path.iterdir()) == []


def test_factory_honours_absolute_sqlite_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DOCDB_HOST=sqlite:///abs/path (percent-encoded) puts records in that file."""
    path = tmp_path / "else where" / "mine.sqlite"
    url = "sqlite://" + path.as_uri().removeprefix("file://")
    assert "%20" in url
    monkeypatch.setenv("DOCDB_HOST", url)
    capsule = tmp_path / "capsule"
    store = open_record_store(StoreSettings(), Capsule(capsule))
    store.put(make_record(key_of("a")))
    store.close()
    assert path.is_file()
    assert not capsule.exists()
    reader = SqliteRecordStore(path, TABLE, read_only=True)
    assert reader.get(key_of("a")) is not None
    reader.close()


@pytest.mark.parametrize("url", ["sqlite://records.sqlite", "sqlite://data/records.sqlite"])
def test_factory_rejects_relative_sqlite_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """DOCDB_HOST with a relative SQLite path is a ConfigError that shows the right form."""
    monkeypatch.setenv("DOCDB_HOST", url)
    with pytest.raises(ConfigError, match="sqlite:///"):
        open_record_store(StoreSettings(), Capsule(tmp_path))


@pytest.mark.parametrize(
    "host",
    [
        "mongodb://alice:s3cret-pw@db.example.org:27017/analysis?authSource=admin",
        "mongodb+srv://alice:s3cret-pw@cluster0.example.org/analysis",
    ],
)
def test_factory_opens_mongodb_store_masking_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """DOCDB_HOST=mongodb://... opens a MongoRecordStore, not yet connected, hiding the password."""
    from analysis_wrapper.stores.mongo.store import MongoRecordStore

    monkeypatch.setenv("DOCDB_HOST", host)
    monkeypatch.setenv("DOCDB_DATABASE", "analysis_db")
    monkeypatch.setenv("DOCDB_COLLECTION", "my_results")
    for read_only in (False, True):
        store = open_record_store(StoreSettings(), Capsule(tmp_path), read_only=read_only)
        assert isinstance(store, MongoRecordStore)
        assert store.read_only is read_only
        assert "s3cret-pw" not in store.display_url
        masked = host.replace("alice:s3cret-pw@", "***@")
        assert store.display_url == f"{masked}#analysis_db.my_results"
        store.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("host", ["api.allenneuraldynamics.org", "127.0.0.1:18443/"])
def test_factory_opens_docdb_api_store_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """DOCDB_HOST naming a host gives a DocDbApiRecordStore, opened without any request."""
    import socket

    from analysis_wrapper.stores.docdb_api.store import DocDbApiRecordStore

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the store must not touch the network when it is opened")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("DOCDB_HOST", host)
    monkeypatch.setenv("DOCDB_DATABASE", "analysis")
    monkeypatch.setenv("DOCDB_COLLECTION", "my_results")
    monkeypatch.setenv("DOCDB_VERSION", "v2")
    for read_only in (False, True):
        store = open_record_store(StoreSettings(), Capsule(tmp_path), read_only=read_only)
        assert isinstance(store, DocDbApiRecordStore)
        assert store.display_url == f"https://{host.rstrip('/')}/v2/analysis/my_results"
        store.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "host", ["https://alice:s3cret-pw@docdb.example.org", "alice:s3cret-pw@docdb.example.org"]
)
def test_factory_rejects_docdb_host_with_credentials_masking_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """A DocDB API host with a scheme or credentials is a ConfigError that hides the password."""
    monkeypatch.setenv("DOCDB_HOST", host)
    with pytest.raises(ConfigError, match="DOCDB_HOST") as raised:
        open_record_store(StoreSettings(), Capsule(tmp_path))
    assert "s3cret-pw" not in str(raised.value)
    assert all("s3cret-pw" not in str(arg) for arg in raised.value.args)
    assert list(tmp_path.iterdir()) == []


# --- the factory: ANALYSIS_BUCKET ----------------------------------------------------


def _publish_one(store: Any, tmp_path: Path) -> str:
    folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
    return str(store.publish(key_of("a"), ATTEMPT, folder, build_manifest(key_of("a"), folder)))


def test_factory_without_bucket_uses_folder_in_capsule(tmp_path: Path) -> None:
    """ANALYSIS_BUCKET unset: results go to <capsule>/.analysis_store/results."""
    capsule = tmp_path / "capsule"
    store = open_result_store(StoreSettings(), Capsule(capsule))
    root = capsule / ".analysis_store" / "results"
    assert store.url == root.resolve().as_uri()
    _publish_one(store, tmp_path)
    assert (root / key_of("a") / ATTEMPT / "a.txt").read_bytes() == b"a"
    assert (root / key_of("a") / ATTEMPT / MANIFEST_NAME).is_file()


@pytest.mark.parametrize("form", ["file_url", "absolute_path"])
def test_factory_honours_local_bucket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """ANALYSIS_BUCKET=file:///abs or /abs puts results in that folder, not the capsule."""
    root = tmp_path / "my results"
    monkeypatch.setenv("ANALYSIS_BUCKET", root.as_uri() if form == "file_url" else str(root))
    capsule = tmp_path / "capsule"
    store = open_result_store(StoreSettings(), Capsule(capsule))
    assert store.url == root.as_uri()
    location = _publish_one(store, tmp_path)
    assert location == f"{root.as_uri()}/{key_of('a')}/{ATTEMPT}"
    assert (root / key_of("a") / ATTEMPT / "a.txt").read_bytes() == b"a"
    assert not capsule.exists()


@pytest.mark.parametrize(
    ("bucket", "url"),
    [
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        ("s3://bucket/prefix/", "s3://bucket/prefix"),
        ("bucket/prefix", "s3://bucket/prefix"),
        ("bucket", "s3://bucket"),
    ],
)
def test_factory_opens_s3_bucket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket: str, url: str
) -> None:
    """ANALYSIS_BUCKET naming S3 (with or without s3://) opens an S3 store, creating nothing."""
    from analysis_wrapper.stores.s3.store import S3ResultStore

    monkeypatch.setenv("ANALYSIS_BUCKET", bucket)
    store = open_result_store(StoreSettings(), Capsule(tmp_path))
    assert isinstance(store, S3ResultStore)
    assert store.url == url
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("bucket", "secret"),
    [
        ("gs://x", None),
        ("https://alice:s3cret-key@storage.example.org/x", "s3cret-key"),
        ("s3://AKIAEXAMPLE:s3cret-key@bucket/prefix", "s3cret-key"),
    ],
)
def test_factory_rejects_unusable_bucket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bucket: str, secret: str | None
) -> None:
    """ANALYSIS_BUCKET of another scheme, or holding credentials, is a ConfigError, masked."""
    monkeypatch.setenv("ANALYSIS_BUCKET", bucket)
    with pytest.raises(ConfigError, match="ANALYSIS_BUCKET") as raised:
        open_result_store(StoreSettings(), Capsule(tmp_path))
    if secret is not None:
        assert secret not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_factory_rejects_file_url_with_remote_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ANALYSIS_BUCKET=file://host/path (another machine) is a ConfigError."""
    monkeypatch.setenv("ANALYSIS_BUCKET", "file://fileserver/results")
    with pytest.raises(ConfigError, match="file:///"):
        open_result_store(StoreSettings(), Capsule(tmp_path))


# --- several processes on one SQLite file ----------------------------------------------

_WORKERS = 4
_PER_WORKER = 200
_KEYS = [key_of(f"concurrent {n}") for n in range(300)]


def _keys_for(worker: int) -> list[str]:
    """200 keys per worker, overlapping its neighbours'; odd workers go backwards."""
    keys = [_KEYS[(75 * worker + n) % len(_KEYS)] for n in range(_PER_WORKER)]
    return keys[::-1] if worker % 2 else keys


def _insert_worker(worker: int, path: str, barrier: Any, results: Any) -> None:
    """Insert this worker's keys once the others are ready; report what went in."""
    store = SqliteRecordStore(Path(path), TABLE)
    inserted: list[str] = []
    errors: list[str] = []
    barrier.wait(timeout=120)
    for key in _keys_for(worker):
        try:
            store.put(make_record(key, {"writer": worker}))
        except RecordExistsError:
            continue
        except Exception as exc:  # reported to the parent, which fails the test
            errors.append(f"{key}: {exc!r}")
        else:
            inserted.append(key)
    store.close()
    results.put((worker, inserted, errors))


def test_processes_inserting_at_once_store_each_key_once(tmp_path: Path) -> None:
    """4 processes inserting overlapping keys into one new file: each key inserted once."""
    assert all(len(set(_keys_for(w))) == _PER_WORKER for w in range(_WORKERS))
    assert set().union(*(_keys_for(w) for w in range(_WORKERS))) == set(_KEYS)
    path = tmp_path / "shared" / "records.sqlite"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(_WORKERS)
    results = context.Queue()
    processes = [
        context.Process(target=_insert_worker, args=(w, str(path), barrier, results))
        for w in range(_WORKERS)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert [errors for _, _, errors in reports] == [[]] * _WORKERS
    successes = Counter(key for _, inserted, _ in reports for key in inserted)
    assert sorted(successes) == sorted(_KEYS)
    assert set(successes.values()) == {1}
    writer_of = {key: worker for worker, inserted, _ in reports for key in inserted}
    reader = SqliteRecordStore(path, TABLE, read_only=True)
    stored = reader.get_many(_KEYS)
    reader.close()
    assert sorted(stored) == sorted(_KEYS)
    for key, record in stored.items():
        writer = record["processing"]["data_processes"][0]["code"]["parameters"]["writer"]
        assert writer == writer_of[key]
    connection = sqlite3.connect(path)
    count = connection.execute(f'SELECT COUNT(*), COUNT(DISTINCT _id) FROM "{TABLE}"').fetchone()
    connection.close()
    assert count == (len(_KEYS), len(_KEYS))


def test_sqlite_find_by_inputs_uses_the_url_index(tmp_path: Path) -> None:
    """The side table of input URLs is filled with each put and read through its index."""
    store = SqliteRecordStore(tmp_path / "records.sqlite", TABLE)
    record = with_inputs(make_record(key_of("a"), {"x": 1}), ["s3://bucket/a", "s3://bucket/b"])
    store.put(record)
    connection = sqlite3.connect(tmp_path / "records.sqlite")
    rows = connection.execute(f'SELECT _id, url FROM "{TABLE}__inputs" ORDER BY url').fetchall()
    plan = connection.execute(
        f'EXPLAIN QUERY PLAN SELECT _id FROM "{TABLE}__inputs" WHERE url IN (?, ?)',
        ["s3://bucket/a", "s3://x"],
    ).fetchall()
    connection.close()
    assert rows == [(key_of("a"), "s3://bucket/a"), (key_of("a"), "s3://bucket/b")]
    assert any("USING" in str(step) and "INDEX" in str(step) for step in plan), plan
    assert store.find_by_inputs([["s3://bucket/a", "s3://bucket/b"]]) == {
        ("s3://bucket/a", "s3://bucket/b"): [record]
    }
    store.close()


def test_sqlite_failed_put_leaves_no_input_rows(tmp_path: Path) -> None:
    """A put refused as a duplicate rolls its input rows back with the record."""
    store = SqliteRecordStore(tmp_path / "records.sqlite", TABLE)
    store.put(with_inputs(make_record(key_of("a"), {"x": 1}), ["s3://bucket/a"]))
    with pytest.raises(RecordExistsError):
        store.put(with_inputs(make_record(key_of("a"), {"x": 2}), ["s3://bucket/b"]))
    assert store.find_by_inputs([["s3://bucket/b"]]) == {("s3://bucket/b",): []}
    assert ids_of(store.find_by_inputs([["s3://bucket/a"]])[("s3://bucket/a",)]) == [key_of("a")]
    store.close()


def ids_of(records: list[dict[str, Any]]) -> list[str]:
    """The _id of each record."""
    return [record["_id"] for record in records]


# --- which embedded-store errors are transient -------------------------------------------


def test_sqlite_held_by_another_writer_is_a_transient_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection keeps the write lock past the busy timeout: worth another try."""
    monkeypatch.setattr("analysis_wrapper.stores.sqlite._BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "records.sqlite"
    store = SqliteRecordStore(path, TABLE)
    store.put(make_record(key_of("a")))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock, as a long transaction does
    try:
        with pytest.raises(StoreError, match="database is locked") as raised:
            store.put(make_record(key_of("b")))
        assert raised.value.transient is True
        assert not isinstance(raised.value, RecordExistsError)
        with pytest.raises(StoreError, match="database is locked") as raised:
            store.insert_claim(sample_claim(key_of("b")))
        assert raised.value.transient is True
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.put(make_record(key_of("b")))  # the lock is gone: the same write succeeds
    assert store.get(key_of("b")) is not None
    store.close()


def test_sqlite_errors_that_stay_are_not_transient(tmp_path: Path) -> None:
    """A file that is no database, or a read-only store asked to write: no other try helps."""
    garbage = tmp_path / "records.sqlite"
    garbage.write_bytes(b"this is not a database, whatever its name says" * 100)
    store = SqliteRecordStore(garbage, TABLE)
    with pytest.raises(StoreError, match="not a database") as raised:
        store.put(make_record(key_of("a")))
    assert raised.value.transient is False
    store.close()
    read_only = SqliteRecordStore(tmp_path / "absent.sqlite", TABLE, read_only=True)
    with pytest.raises(StoreError, match="read-only") as raised:
        read_only.put(make_record(key_of("a")))
    assert raised.value.transient is False


def test_local_results_folder_that_cannot_be_made_is_not_transient(tmp_path: Path) -> None:
    """A file where the results folder should be: the publish fails, not transient."""
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    store = LocalResultStore(in_the_way / "results")
    folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
    with pytest.raises(StoreError, match="cannot publish to results folder") as raised:
        store.publish(key_of("a"), ATTEMPT, folder, build_manifest(key_of("a"), folder))
    assert raised.value.transient is False


# --- fenced record writes: the claim checked in the record's own transaction -----------


def test_sqlite_fenced_put_checks_the_claim_inside_its_write_transaction(tmp_path: Path) -> None:
    """A takeover committing while a fenced put waits for the file: the put is refused.

    Another connection holds the write lock while it raises the claim's epoch; the
    stalled writer's put queues behind it and, once it gets the lock, finds epoch 2 in
    the same transaction: nothing is written, input rows included.
    """
    path = tmp_path / "records.sqlite"
    store = SqliteRecordStore(path, TABLE)
    key = key_of("in one transaction")
    claim = Claims(store, Owner("host-a", 4242, "run-a")).acquire(key).claim
    other = sqlite3.connect(path, isolation_level=None, timeout=60)
    other.execute("BEGIN IMMEDIATE")
    taken = dataclasses.replace(claim, owner=Owner("host-b", 4242, "run-b"), epoch=2)
    other.execute(
        f'UPDATE "{TABLE}__claims" SET epoch = 2, document = ? WHERE _id = ?',
        (json.dumps(taken.to_document()), key),
    )
    raised: list[BaseException] = []

    def stalled_put() -> None:
        record = with_inputs(make_record(key, {"by": "a"}), ["s3://bucket/in"])
        try:
            store.put(record, replace=True, epoch=claim.epoch)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=stalled_put)
    thread.start()
    time.sleep(0.3)  # the put is waiting for the write lock
    assert thread.is_alive() and raised == []
    other.execute("COMMIT")
    thread.join(timeout=60)
    other.close()
    assert not thread.is_alive()
    (error,) = raised
    assert isinstance(error, FencedOutError)
    assert (error.epoch, error.current_epoch, error.written) == (1, 2, False)
    assert store.get(key) is None
    assert store.find_by_inputs([["s3://bucket/in"]]) == {("s3://bucket/in",): []}
    store.close()


def test_fenced_out_error_travels_through_pickle_and_context() -> None:
    """Sent back from a worker or given context, it keeps its class and its fields."""
    error = FencedOutError("record k not written", key="k", epoch=1, current_epoch=2)
    for copy in (pickle.loads(pickle.dumps(error)), error.with_context("job_001.json")):
        assert isinstance(copy, FencedOutError) and isinstance(copy, StoreError)
        assert (copy.key, copy.epoch, copy.current_epoch, copy.written) == ("k", 1, 2, False)
        assert copy.transient is False
    assert str(error.with_context("job_001.json")) == "job_001.json: record k not written"
