"""A local cache of downloaded input files, shared by jobs and processes.

Layout under the cache folder (``INPUT_CACHE_DIR``)::

    objects/<ab>/<digest>/<file name>   a complete copy, renamed into place when whole
    locks/<digest>.lock                 held while an entry is filled, checked or evicted
    evict.lock                          held by the one process evicting at a time

``<digest>`` is the sha256 of the object's identity (endpoint, bucket, key and ETag or
VersionId), so a re-uploaded object is a new entry and an old copy is never served for
it. The file keeps its name (``session.nwb``), for readers that look at the suffix.

Safe for many processes at once: an entry is filled under its lock, into a temporary
name in the entry's folder, flushed to disk, checked against the expected size and only
then renamed (``os.replace``) to its final name. A second process asking for the same
object waits on the lock and finds the complete file: the object is downloaded once.
A file whose size is wrong is never served; a crashed download leaves only a
temporary file, removed by the next process that takes the entry's lock.

The cache is bounded: after each download, while the files add up to more than the
bound, the least recently used entries (by the time each was last served) are deleted,
except the one just fetched and any whose lock another process holds. A process that
holds a path to an evicted file keeps reading it if it has it open (POSIX), so make the
bound larger than the inputs of the jobs running at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock, Timeout

from ..errors import StoreError

log = logging.getLogger(__name__)

OBJECTS_DIR = "objects"
LOCKS_DIR = "locks"
PART_MARK = ".part-"
DEFAULT_LOCK_TIMEOUT_S = 3600.0
"""How long a process waits for another one's download of the same object."""
_MAX_NAME = 200


@dataclass(frozen=True)
class CachedFile:
    """A file served from the cache.

    Parameters
    ----------
    path : Path
        The complete local copy.
    downloaded : bool
        True when this call downloaded it, False when it was already cached.
    """

    path: Path
    downloaded: bool


@dataclass(frozen=True)
class CacheEntry:
    """One cached object: its folder, its size on disk and when it was last served."""

    folder: Path
    size: int
    last_used_ns: int


class InputCache:
    """Downloaded input files, keyed by object identity, bounded in size.

    Parameters
    ----------
    root : Path
        The cache folder; created on first use.
    max_bytes : int
        The bound on the files' total size.
    lock_timeout_s : float
        How long to wait for another process's download of the same object.
    """

    def __init__(
        self, root: Path, max_bytes: int, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.lock_timeout_s = lock_timeout_s

    def fetch(
        self,
        identity: Sequence[str],
        name: str,
        size: int,
        download: Callable[[BinaryIO], None],
    ) -> CachedFile:
        """Return the cached copy of an object, downloading it first if needed.

        Parameters
        ----------
        identity : sequence of str
            What makes the object unique, version included (endpoint, bucket, key,
            ETag or VersionId).
        name : str
            The file name the copy gets.
        size : int
            The object's size in bytes; a copy of another size is never served.
        download : callable
            Writes the object's bytes into the open file it is given.

        Raises
        ------
        StoreError
            If another process's download of the same object takes longer than the
            lock timeout, or the download ends short or long.
        """
        digest = hashlib.sha256(json.dumps(list(identity)).encode()).hexdigest()
        folder = self.root / OBJECTS_DIR / digest[:2] / digest
        final = folder / _safe_name(name)
        lock = self._entry_lock(digest, self.lock_timeout_s)
        try:
            lock.acquire()
        except Timeout:
            raise StoreError(
                f"input cache {self.root}: another process has been downloading {name} for "
                f"over {self.lock_timeout_s:.0f} s; try again, or remove {lock.lock_file}",
                transient=True,  # that download ends, or its lock goes with its process
            ) from None
        try:
            if _complete(final, size):
                os.utime(final)  # last served now: the least recently used go first
                return CachedFile(final, downloaded=False)
            folder.mkdir(parents=True, exist_ok=True)
            _remove_leftovers(folder)  # we hold the lock: any other file here is stale
            part = folder / f".{final.name}{PART_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                with part.open("wb") as handle:
                    download(handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                got = part.stat().st_size
                if got != size:
                    raise StoreError(
                        f"input cache: the download of {name} has {got} bytes, not the "
                        f"{size} the server announced; run again",
                        transient=True,  # a cut connection: the next try downloads it whole
                    )
                os.replace(part, final)
            finally:
                part.unlink(missing_ok=True)
        finally:
            lock.release()
        log.debug("cached %s (%d bytes) as %s", name, size, final)
        self.evict(keep=final.parent)
        return CachedFile(final, downloaded=True)

    def entries(self) -> list[CacheEntry]:
        """Every entry in the cache, least recently used first."""
        found: list[CacheEntry] = []
        for folder in (self.root / OBJECTS_DIR).glob("*/*"):
            size, last_used = 0, 0
            try:
                for file in folder.iterdir():
                    stat = file.stat()
                    size += stat.st_size
                    last_used = max(last_used, stat.st_mtime_ns)
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
            found.append(CacheEntry(folder, size, last_used))
        return sorted(found, key=lambda entry: (entry.last_used_ns, entry.folder.name))

    def total_bytes(self) -> int:
        """The size of every file in the cache."""
        return sum(entry.size for entry in self.entries())

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Delete least recently used entries until the cache is within its bound.

        Skips ``keep`` (an entry folder) and entries another process holds. Only one
        process evicts at a time; the others return at once.

        Returns
        -------
        list of Path
            The entry folders deleted.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        evicting = FileLock(self.root / "evict.lock", timeout=0)
        try:
            evicting.acquire()
        except Timeout:
            return []
        removed: list[Path] = []
        try:
            entries = self.entries()
            total = sum(entry.size for entry in entries)
            for entry in entries:
                if total <= self.max_bytes:
                    break
                if keep is not None and entry.folder == keep:
                    continue
                lock = self._entry_lock(entry.folder.name, timeout=0)
                try:
                    lock.acquire()
                except Timeout:
                    continue  # being filled or served right now
                try:
                    shutil.rmtree(entry.folder, ignore_errors=True)
                finally:
                    lock.release()
                total -= entry.size
                removed.append(entry.folder)
            if total > self.max_bytes:
                log.warning(
                    "input cache %s holds %d bytes, over its bound of %d: the files in use "
                    "are larger than INPUT_CACHE_MAX_SIZE",
                    self.root,
                    total,
                    self.max_bytes,
                )
        finally:
            evicting.release()
        if removed:
            log.info(
                "input cache %s: evicted %d least recently used file(s)", self.root, len(removed)
            )
        return removed

    def _entry_lock(self, digest: str, timeout: float) -> FileLock:
        locks = self.root / LOCKS_DIR
        locks.mkdir(parents=True, exist_ok=True)
        return FileLock(locks / f"{digest}.lock", timeout=timeout)


def _complete(path: Path, size: int) -> bool:
    """True when ``path`` is a regular file of exactly ``size`` bytes."""
    try:
        return path.stat().st_size == size and path.is_file()
    except FileNotFoundError:
        return False


def _remove_leftovers(folder: Path) -> None:
    """Delete every file of an entry's folder (a crashed download's, or a bad copy)."""
    for file in folder.iterdir():
        file.unlink(missing_ok=True)


def _safe_name(name: str) -> str:
    """The last part of an object key, usable as a file name on any system."""
    base = name.rstrip("/").rsplit("/", 1)[-1].replace("\x00", "")
    return "object" if base in ("", ".", "..") else base[-_MAX_NAME:]
