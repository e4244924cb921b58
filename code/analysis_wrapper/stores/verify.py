"""Whether stored result folders hold what their manifests list: ``results verify``'s engine.

Each folder is listed once (:meth:`ResultStore.list_folder`: on S3 a paginated LIST of
its prefix, in a local folder a walk) and compared with its manifest: every file the
manifest lists must be there with its size, and nothing else may be (the manifest
itself aside). With ``deep``, every file whose size matches is read again and its
sha256 compared (:meth:`ResultStore.file_sha256`, streamed). Folders are checked
several at once, and their digests several at once besides, so thousands of folders
on S3 cost a few minutes of round trips rather than hours of them one after the other.

A failure of the store that persisted through its retries (unreachable, throttled)
stops the whole check; any other error reading one folder (denied access to an old
bucket, say) is that folder's problem, and the others are still checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from ..errors import StoreError
from .base import ResultStore
from .layout import KEY_PATTERN, LEFTOVER_PREFIXES
from .manifest import MANIFEST_NAME

FOLDERS_IN_FLIGHT = 16
"""Folders listed (and their manifests read) at once."""

DIGESTS_IN_FLIGHT = 8
"""Files read for their sha256 at once, over all folders (with the folders' requests,
within the S3 store's 24 connections)."""

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Target:
    """One record's result folder to check.

    Parameters
    ----------
    key : str
        The record's key.
    location : str
        Its ``location`` (``""`` when the record names none).
    """

    key: str
    location: str


@dataclass(frozen=True)
class ListedFile:
    """A file of a manifest, or of a folder.

    Parameters
    ----------
    path : str
        POSIX, relative to the result folder.
    size : int
        In bytes.
    sha256 : str or None
        Its hex digest; ``None`` where it was not read (a file found, sizes only).
    """

    path: str
    size: int
    sha256: str | None = None


@dataclass(frozen=True)
class ChangedFile:
    """A file whose size or content is not the manifest's.

    Parameters
    ----------
    path : str
        POSIX, relative to the result folder.
    expected : ListedFile
        As the manifest lists it.
    found : ListedFile
        As the store holds it (its ``sha256`` only when it was read).
    """

    path: str
    expected: ListedFile
    found: ListedFile


@dataclass(frozen=True)
class Verdict:
    """What checking one result folder found.

    Parameters
    ----------
    target : Target
        The record and folder checked.
    files : int
        How many files the manifest lists (0 without a readable manifest).
    missing : tuple of ListedFile
        Listed, not there (as the manifest lists them).
    changed : tuple of ChangedFile
        There, with another size (or, with ``deep``, another sha256).
    extra : tuple of ListedFile
        There, not listed.
    problem : str or None
        Why the folder could not be compared at all: no manifest, an unreadable one,
        no location, a store that refused.
    hashed : int
        How many files were read for their sha256.
    """

    target: Target
    files: int = 0
    missing: tuple[ListedFile, ...] = ()
    changed: tuple[ChangedFile, ...] = ()
    extra: tuple[ListedFile, ...] = ()
    problem: str | None = None
    hashed: int = 0

    @property
    def ok(self) -> bool:
        """Whether the folder holds exactly what its manifest lists."""
        return not (self.problem or self.missing or self.changed or self.extra)


@dataclass
class _Comparison:
    """A manifest against a listing, before any digest is read."""

    expected: list[ListedFile]
    missing: list[ListedFile] = field(default_factory=list)
    changed: list[ChangedFile] = field(default_factory=list)
    extra: list[ListedFile] = field(default_factory=list)
    same_size: list[ListedFile] = field(default_factory=list)
    hashed: int = 0


class ManifestError(ValueError):
    """A manifest that is JSON, but not a list of files with sizes and digests."""


def manifest_files(manifest: Mapping[str, Any]) -> list[ListedFile]:
    """The files a manifest lists, checked: a path, a size and a sha256 each, no path twice.

    Raises
    ------
    ManifestError
        Naming the first entry that is not a file with a path, size and sha256.
    """
    entries = manifest.get("files")
    if not isinstance(entries, list):
        raise ManifestError('no "files" list')
    files: dict[str, ListedFile] = {}
    for number, entry in enumerate(entries):
        path = entry.get("path") if isinstance(entry, dict) else None
        size = entry.get("size") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path or path.startswith("/"):
            raise ManifestError(f"files[{number}] has no relative path")
        if type(size) is not int or size < 0:
            raise ManifestError(f"files[{number}] ({path}) has no size in bytes")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ManifestError(f"files[{number}] ({path}) has no sha256")
        if path in files:
            raise ManifestError(f"files[{number}] lists {path} a second time")
        files[path] = ListedFile(path, size, digest)
    return list(files.values())


def compare(expected: list[ListedFile], listing: Mapping[str, int], location: str) -> _Comparison:
    """Sort a manifest's files and a folder's listing into missing, changed, extra, same size.

    The folder's own ``manifest.json`` is no extra file. Neither are, in an old-layout
    folder (``<url>/<key>``, whose attempts sit inside it), the files of a subfolder
    that is another attempt (it holds its own ``manifest.json`` and this manifest lists
    nothing in it) or a local publish's staging or retired folder.
    """
    result = _Comparison(expected)
    for file in expected:
        size = listing.get(file.path)
        if size is None:
            result.missing.append(file)
        elif size != file.size:
            result.changed.append(ChangedFile(file.path, file, ListedFile(file.path, size)))
        else:
            result.same_size.append(file)
    listed = {file.path for file in expected}
    others = _other_folders(expected, listing) if _is_key_folder(location) else set()
    result.extra = [
        ListedFile(path, size)
        for path, size in sorted(listing.items())
        if path not in listed and path != MANIFEST_NAME and path.split("/")[0] not in others
    ]
    return result


def _is_key_folder(location: str) -> bool:
    """Whether ``location`` is an old-layout result: it ends with the key itself."""
    return bool(KEY_PATTERN.fullmatch(location.rstrip("/").rsplit("/", 1)[-1]))


def _other_folders(expected: list[ListedFile], listing: Mapping[str, int]) -> set[str]:
    """The subfolders of an old-layout folder that are not its result's own."""
    claimed = {file.path.split("/")[0] for file in expected if "/" in file.path}
    tops = {path.split("/")[0] for path in listing if "/" in path}
    return {
        top
        for top in tops - claimed
        if top.startswith(LEFTOVER_PREFIXES) or f"{top}/{MANIFEST_NAME}" in listing
    }


def verify_folders(
    store: ResultStore,
    targets: Sequence[Target],
    *,
    deep: bool = False,
    on_verdict: Callable[[Verdict], None] | None = None,
    folders_in_flight: int = FOLDERS_IN_FLIGHT,
    digests_in_flight: int = DIGESTS_IN_FLIGHT,
) -> list[Verdict]:
    """Check every target's folder against its manifest, several at once.

    Parameters
    ----------
    store : ResultStore
        The results store (it reads other folders of its kind too).
    targets : sequence of Target
        The folders to check.
    deep : bool
        Also read each file whose size matches and compare its sha256.
    on_verdict : callable, optional
        Called in this thread with each verdict as it is reached (a progress bar).
    folders_in_flight, digests_in_flight : int
        How many folders, and how many files' digests, are read at once.

    Returns
    -------
    list of Verdict
        One per target, in the targets' order.

    Raises
    ------
    StoreError
        If the store stayed unreachable or throttled through its retries (the
        folders under way finish first; the rest are not checked).
    """
    digests = ThreadPoolExecutor(max(1, digests_in_flight), thread_name_prefix="aw-verify-sha")
    folders = ThreadPoolExecutor(max(1, folders_in_flight), thread_name_prefix="aw-verify")
    verdicts: list[Verdict | None] = [None] * len(targets)
    try:
        futures: dict[Future[Verdict], int] = {
            folders.submit(_verify_one, store, target, digests if deep else None): number
            for number, target in enumerate(targets)
        }
        for future in as_completed(futures):
            verdict = future.result()
            verdicts[futures[future]] = verdict
            if on_verdict is not None:
                on_verdict(verdict)
    finally:
        # On an error or Ctrl-C, what has not started never starts.
        folders.shutdown(wait=True, cancel_futures=True)
        digests.shutdown(wait=True, cancel_futures=True)
    return [verdict for verdict in verdicts if verdict is not None]


def _verify_one(store: ResultStore, target: Target, digests: ThreadPoolExecutor | None) -> Verdict:
    """Check one folder: list it, read its manifest, compare; with ``digests``, hash."""
    if not target.location:
        return Verdict(target, problem="the record names no location")
    try:
        listing = store.list_folder(target.location)
    except StoreError as exc:
        return _refused(target, exc, "cannot list the folder")
    if listing is None:
        return Verdict(target, problem=f"{target.location} is not in a store like {store.url}")
    try:
        manifest = store.read_manifest(target.location) if MANIFEST_NAME in listing else None
        expected = manifest_files(manifest) if manifest is not None else None
    except (StoreError, ManifestError) as exc:
        return _refused(target, exc, f"{MANIFEST_NAME} unreadable")
    if expected is None:
        held = f"it holds {len(listing)} other file(s)" if listing else "nothing is there"
        return Verdict(target, problem=f"{MANIFEST_NAME} missing at {target.location} ({held})")
    found = compare(expected, listing, target.location)
    if digests is not None:
        try:
            found = _hashed(store, target.location, found, digests)
        except StoreError as exc:
            return _refused(target, exc, "cannot read a file")
    return Verdict(
        target,
        files=len(expected),
        missing=tuple(sorted(found.missing, key=lambda file: file.path)),
        changed=tuple(sorted(found.changed, key=lambda file: file.path)),
        extra=tuple(found.extra),
        hashed=found.hashed,
    )


def _hashed(
    store: ResultStore, location: str, found: _Comparison, digests: ThreadPoolExecutor
) -> _Comparison:
    """``found`` after reading the sha256 of every file there (of a changed size too)."""
    present = [*found.same_size, *(change.expected for change in found.changed)]
    read = dict(
        zip(
            [file.path for file in present],
            digests.map(lambda file: store.file_sha256(location, file.path), present),
            strict=True,
        )
    )
    result = _Comparison(found.expected, list(found.missing), [], found.extra, [])
    result.hashed = sum(digest is not None for digest in read.values())
    sizes = {change.path: change.found.size for change in found.changed}
    for file in present:
        digest = read[file.path]
        if digest is None:  # gone since the folder was listed
            result.missing.append(file)
        elif file.path in sizes or digest != file.sha256:
            now = ListedFile(file.path, sizes.get(file.path, file.size), digest)
            result.changed.append(ChangedFile(file.path, file, now))
        else:
            result.same_size.append(file)
    return result


def _refused(target: Target, exc: Exception, doing: str) -> Verdict:
    """The verdict on a folder the store would not read; a lasting outage stops everything."""
    if isinstance(exc, StoreError) and exc.transient:
        raise exc
    return Verdict(target, problem=f"{doing}: {exc}")
