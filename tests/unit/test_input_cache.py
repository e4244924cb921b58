"""The input cache on disk: complete files only, served once downloaded, bounded (LRU)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from filelock import FileLock

from analysis_wrapper.errors import StoreError
from analysis_wrapper.inputs.cache import LOCKS_DIR, InputCache


def writer(payload: bytes, calls: list[int] | None = None):  # type: ignore[no-untyped-def]
    """A download that writes ``payload`` (and counts its calls)."""

    def download(handle: BinaryIO) -> None:
        if calls is not None:
            calls.append(1)
        handle.write(payload)

    return download


def test_fetch_downloads_once_then_serves_the_copy(tmp_path: Path) -> None:
    """The second fetch of the same identity does not download; the name is kept."""
    cache = InputCache(tmp_path / "cache", max_bytes=10_000)
    calls: list[int] = []
    first = cache.fetch(
        ("e", "b", "dir/units.nwb", "etag:1"), "dir/units.nwb", 5, writer(b"abcde", calls)
    )
    again = cache.fetch(
        ("e", "b", "dir/units.nwb", "etag:1"), "dir/units.nwb", 5, writer(b"abcde", calls)
    )
    assert (first.downloaded, again.downloaded) == (True, False)
    assert first.path == again.path and first.path.name == "units.nwb"
    assert first.path.read_bytes() == b"abcde" and calls == [1]


def test_a_new_version_is_a_new_entry(tmp_path: Path) -> None:
    """Another ETag for the same key is downloaded, never served from the old copy."""
    cache = InputCache(tmp_path / "cache", max_bytes=10_000)
    old = cache.fetch(("e", "b", "k", "etag:1"), "k", 3, writer(b"old"))
    new = cache.fetch(("e", "b", "k", "etag:2"), "k", 3, writer(b"new"))
    assert new.downloaded and new.path != old.path
    assert (old.path.read_bytes(), new.path.read_bytes()) == (b"old", b"new")


def test_a_failed_download_leaves_nothing_to_serve(tmp_path: Path) -> None:
    """A download that breaks half way leaves no file; the next fetch downloads again."""
    cache = InputCache(tmp_path / "cache", max_bytes=10_000)

    def breaks(handle: BinaryIO) -> None:
        handle.write(b"half")
        raise ConnectionError("reset")

    with pytest.raises(ConnectionError):
        cache.fetch(("e", "b", "k", "v"), "k", 8, breaks)
    assert [p for p in (tmp_path / "cache" / "objects").rglob("*") if p.is_file()] == []
    fetched = cache.fetch(("e", "b", "k", "v"), "k", 8, writer(b"complete"))
    assert fetched.downloaded and fetched.path.read_bytes() == b"complete"


def test_a_download_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    """Fewer bytes than announced: StoreError, and no file under the final name."""
    cache = InputCache(tmp_path / "cache", max_bytes=10_000)
    with pytest.raises(StoreError, match="has 3 bytes, not the 5") as raised:
        cache.fetch(("e", "b", "k", "v"), "k", 5, writer(b"abc"))
    assert raised.value.transient is True  # a cut download: the job's next try fetches it
    assert [p for p in (tmp_path / "cache" / "objects").rglob("*") if p.is_file()] == []


def test_a_download_held_elsewhere_too_long_is_a_transient_error(tmp_path: Path) -> None:
    """Another holder keeps the entry's lock past the timeout: a transient StoreError."""
    cache = InputCache(tmp_path / "cache", max_bytes=10_000, lock_timeout_s=0.05)
    identity = ("e", "b", "k", "v")
    digest = hashlib.sha256(json.dumps(list(identity)).encode()).hexdigest()
    (tmp_path / "cache" / LOCKS_DIR).mkdir(parents=True)
    with (
        FileLock(tmp_path / "cache" / LOCKS_DIR / f"{digest}.lock"),
        pytest.raises(StoreError, match="another process has been downloading") as raised,
    ):
        cache.fetch(identity, "k", 5, writer(b"abcde"))
    assert raised.value.transient is True
    assert cache.fetch(identity, "k", 5, writer(b"abcde")).downloaded  # the lock is free


def test_a_damaged_copy_is_downloaded_again(tmp_path: Path) -> None:
    """A cached file whose size is wrong (truncated on disk) is never served."""
    cache = InputCache(tmp_path / "cache", max_bytes=10_000)
    first = cache.fetch(("e", "b", "k", "v"), "k", 5, writer(b"abcde"))
    first.path.write_bytes(b"ab")
    again = cache.fetch(("e", "b", "k", "v"), "k", 5, writer(b"abcde"))
    assert again.downloaded and again.path.read_bytes() == b"abcde"


def fetch_three(cache: InputCache, touch_first: bool) -> list[str]:
    """Fetch a, b (then a again if asked), then c; return the names still cached."""
    for name in ("a", "b"):
        cache.fetch(("e", "b", name, "v"), name, 400, writer(b"x" * 400))
        time.sleep(0.02)  # distinct modification times
    if touch_first:
        assert not cache.fetch(("e", "b", "a", "v"), "a", 400, writer(b"x" * 400)).downloaded
        time.sleep(0.02)
    cache.fetch(("e", "b", "c", "v"), "c", 400, writer(b"x" * 400))
    return sorted(next(entry.folder.iterdir()).name for entry in cache.entries())


def test_cache_at_its_bound_evicts_the_least_recently_used(tmp_path: Path) -> None:
    """Three 400-byte files under a 1,000-byte bound: the one used longest ago goes."""
    assert fetch_three(InputCache(tmp_path / "one", max_bytes=1000), touch_first=False) == [
        "b",
        "c",
    ]
    # serving a copy counts as a use: then b is the least recently used
    two = InputCache(tmp_path / "two", max_bytes=1000)
    assert fetch_three(two, touch_first=True) == ["a", "c"]
    assert two.total_bytes() == 800


def test_an_entry_in_use_elsewhere_is_not_evicted(tmp_path: Path) -> None:
    """An entry whose lock another holder has stays, even over the bound."""
    cache = InputCache(tmp_path / "cache", max_bytes=500)
    first = cache.fetch(("e", "b", "a", "v"), "a", 400, writer(b"x" * 400))
    held = FileLock(tmp_path / "cache" / LOCKS_DIR / f"{first.path.parent.name}.lock")
    with held:
        cache.fetch(("e", "b", "c", "v"), "c", 400, writer(b"y" * 400))
        assert first.path.is_file() and cache.total_bytes() == 800
    assert cache.evict() == [first.path.parent]
    assert not first.path.exists()


def test_a_file_larger_than_the_bound_is_still_served(tmp_path: Path) -> None:
    """The bound never refuses the file being fetched: it evicts the others."""
    cache = InputCache(tmp_path / "cache", max_bytes=100)
    small = cache.fetch(("e", "b", "s", "v"), "s", 50, writer(b"s" * 50))
    big = cache.fetch(("e", "b", "big", "v"), "big", 300, writer(b"b" * 300))
    assert big.path.read_bytes() == b"b" * 300
    assert not small.path.exists()


def _slow_fetch(
    root: str, start: Any, queue: multiprocessing.Queue[tuple[int, bool, bytes]]
) -> None:
    """In a child process: fetch one object whose download takes a while."""
    cache = InputCache(Path(root), max_bytes=10_000_000)
    start.wait(timeout=60)  # both processes ask at the same moment

    def slow(handle: BinaryIO) -> None:
        for _ in range(10):
            handle.write(b"z" * 1000)
            handle.flush()
            time.sleep(0.05)

    fetched = cache.fetch(("e", "b", "shared", "v"), "shared", 10_000, slow)
    queue.put((os.getpid(), fetched.downloaded, fetched.path.read_bytes()))


def test_two_processes_fetching_at_once_download_once(tmp_path: Path) -> None:
    """Two spawned processes ask for one object together: one downloads, both get it whole."""
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[tuple[int, bool, bytes]] = context.Queue()
    start = context.Barrier(2)
    workers = [
        context.Process(target=_slow_fetch, args=(str(tmp_path / "cache"), start, queue))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert sorted(downloaded for _, downloaded, _ in results) == [False, True]
    assert all(content == b"z" * 10_000 for _, _, content in results)
