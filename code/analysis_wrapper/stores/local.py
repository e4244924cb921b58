"""Results in a local folder: ``<root>/<key>/<attempt>/``, ``manifest.json`` written last.

An attempt is assembled in a hidden staging folder beside its final place and renamed
into place in one step, so a reader never sees half an attempt. The folder layout,
old-layout results included, is described in :mod:`analysis_wrapper.stores.layout`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ..common.atomic_write import fsync_directory, fsync_file, write_atomic
from ..errors import StoreError, is_transient_os_error
from .base import Published, UploadProgress
from .layout import (
    KEY_PATTERN,
    Folder,
    StoredFile,
    attempt_path,
    folder_key,
    group_folders,
)
from .manifest import MANIFEST_NAME
from .manifest import file_sha256 as sha256_of_file

_ABSENT_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP})


class LocalResultStore:
    """A results store in a local folder.

    Parameters
    ----------
    root : Path
        The folder; created on the first publish.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def url(self) -> str:
        """The folder as a ``file://`` URL."""
        return self.root.resolve().as_uri()

    def location(self, key: str, attempt: str) -> str:
        """Return ``<url>/<key>/<attempt>``."""
        return f"{self.url}/{attempt_path(key, attempt)}"

    def publish(
        self,
        key: str,
        attempt: str,
        folder: Path,
        manifest: Mapping[str, Any],
        *,
        progress: UploadProgress | None = None,
    ) -> str:
        """Copy ``folder`` to ``<root>/<key>/<attempt>/``, manifest last, in one rename.

        Durable once it returns: every copied file and subfolder is fsynced before
        the manifest is written (temporary file, fsync, rename), the staging folder
        after that (its files' names and the manifest's), and the key's folder after
        the staging folder is renamed into place, which is when the manifest counts
        (the root, when the key's folder is new, before anything is copied). A
        publish that fails leaves no manifest and no staging folder. An earlier copy of the same
        attempt (a retried publish) is replaced whole, and only by a complete copy:
        it is put back if the new one cannot be renamed into place.
        """
        location = self.location(key, attempt)
        token = uuid.uuid4().hex[:12]
        final = self.root / key / attempt
        staging = final.parent / f".staging-{attempt}-{token}"
        try:
            for made in _make_folders(final.parent):  # a new key folder (and root) stay
                fsync_directory(made.parent)
            shutil.copytree(folder, staging)
            (staging / MANIFEST_NAME).unlink(missing_ok=True)  # a stale one; ours comes last
            _fsync_tree(staging)  # files and subfolders; the staging folder comes next
            # Fsyncs the manifest, then the staging folder: every top-level name too.
            write_atomic(staging / MANIFEST_NAME, json.dumps(manifest, indent=2))
            _rename_into_place(staging, final, token)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            _remove_if_empty(final.parent)  # a first attempt leaves no empty key folder
            raise StoreError(
                f"cannot publish to results folder {self.root}: {exc.strerror or exc}; "
                "check that it exists and is writable, or set ANALYSIS_BUCKET",
                transient=is_transient_os_error(exc),
            ) from exc
        return location

    def has_manifest(self, location: str) -> bool | None:
        """Check ``<location>/manifest.json`` for a ``file://`` location."""
        folder = _file_url_path(location)
        if folder is None:
            return None
        # One os.stat, no Path objects: a plan asks this of every record it finds.
        # The errors that mean "not there" are those Path.is_file ignores.
        manifest = f"{folder}/{MANIFEST_NAME}" if folder else MANIFEST_NAME
        try:
            return stat.S_ISREG(os.stat(manifest).st_mode)
        except OSError as exc:
            if exc.errno in _ABSENT_ERRNOS:
                return False
            raise
        except ValueError:  # an embedded NUL byte: no such file
            return False

    def has_manifests(self, locations: Iterable[str]) -> dict[str, bool | None]:
        """:meth:`has_manifest` of each location (a ``stat`` each)."""
        return {location: self.has_manifest(location) for location in locations}

    def read_manifest(self, location: str) -> dict[str, Any] | None:
        """Return ``<location>/manifest.json`` for a ``file://`` location, else ``None``."""
        folder = _local_path(location)
        if folder is None:
            return None
        path = folder / MANIFEST_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"cannot read {path}: {exc}; publish the result again",
                transient=is_transient_os_error(exc),
            ) from exc
        if not isinstance(data, dict):
            raise StoreError(f"cannot read {path}: not a JSON object; publish the result again")
        return data

    def download(self, location: str, relative_path: str, target: Path) -> bool:
        """Copy ``<location>/<relative_path>`` to ``target`` for a ``file://`` location.

        Raises
        ------
        StoreError
            If the file is missing or unreadable, or ``relative_path`` leaves the folder.
        """
        folder = _local_path(location)
        if folder is None:
            return False
        source = folder / _inside(location, relative_path)
        try:
            shutil.copyfile(source, target)
        except OSError as exc:
            raise StoreError(
                f"cannot read {source}: {exc.strerror or exc}", transient=is_transient_os_error(exc)
            ) from exc
        return True

    def list_folder(self, location: str) -> dict[str, int] | None:
        """Walk the ``file://`` folder at ``location``: every regular file and its size.

        Links to folders are not followed; a file gone while the walk runs is left out.
        ``None`` for another kind of URL, ``{}`` where no folder is.
        """
        folder = _file_url_path(location)
        if folder is None:
            return None
        top = folder.rstrip("/") or "/"
        files: dict[str, int] = {}
        pending = [""]
        while pending:
            relative = pending.pop()
            try:
                entries = list(os.scandir(f"{top}/{relative}" if relative else top))
            except OSError as exc:
                if exc.errno in _ABSENT_ERRNOS:
                    continue  # nothing there, or gone since its parent was listed
                raise _listing_error(top, exc) from exc
            for entry in entries:
                name = f"{relative}/{entry.name}" if relative else entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(name)
                    elif stat.S_ISREG((info := entry.stat()).st_mode):
                        files[name] = info.st_size
                except OSError as exc:
                    if exc.errno not in _ABSENT_ERRNOS:  # else a broken link, or gone
                        raise _listing_error(top, exc) from exc
        return files

    def file_sha256(self, location: str, relative_path: str) -> str | None:
        """The sha256 of ``<location>/<relative_path>``, read 1 MiB at a time.

        Raises
        ------
        StoreError
            If the file cannot be read, ``relative_path`` leaves the folder, or
            ``location`` is not a ``file://`` URL.
        """
        folder = _local_path(location)
        if folder is None:
            raise StoreError(
                f"{location} is not in a store like {self.url}; set ANALYSIS_BUCKET to a "
                "store of that kind"
            )
        path = folder / _inside(location, relative_path)
        try:
            return sha256_of_file(path)
        except OSError as exc:
            if exc.errno in _ABSENT_ERRNOS:
                return None
            raise StoreError(
                f"cannot read {path}: {exc.strerror or exc}", transient=is_transient_os_error(exc)
            ) from exc

    def list_published(self) -> Iterator[Published]:
        """Yield every attempt, old-layout result and staging leftover under the root.

        Keys are the folders named by 64 hex digits; other files and folders at the top
        of the root are ignored.
        """
        try:
            tops = sorted(
                entry.name for entry in os.scandir(self.root) if entry.is_dir(follow_symlinks=False)
            )
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(
                f"cannot list results folder {self.root}: {exc}",
                transient=is_transient_os_error(exc),
            ) from exc
        for top in tops:
            if folder_key(top) is not None:
                for folder in self._folders_under(top):
                    yield folder.published(f"{self.url}/{quote(folder.path)}")

    def delete(self, location: str) -> int:
        """Delete the folder at ``location`` (of this store), its manifest first.

        Raises
        ------
        StoreError
            If ``location`` is no published folder of this store, or deleting fails.
        """
        relative = self._relative(location)
        folders = self._folders_under(relative.split("/")[0])
        folder = next((found for found in folders if found.path == relative), None)
        if folder is None:
            _refuse_if_holding_files(location, relative, folders)
            return 0
        try:
            self._delete_folder(folder)
        except OSError as exc:
            raise StoreError(
                f"cannot delete {self.root / relative}: {exc.strerror or exc}",
                transient=is_transient_os_error(exc),
            ) from exc
        return len(folder.files)

    # --- helpers -------------------------------------------------------------------

    def _folders_under(self, top: str) -> list[Folder]:
        """The published folders in the top-level folder ``top`` (a key's or a leftover)."""
        base = self.root / top
        files: list[StoredFile] = []
        for directory, _, names in os.walk(base, onerror=_raise):
            for name in names:
                path = Path(directory) / name
                try:
                    info = path.lstat()
                except FileNotFoundError:
                    continue  # gone since the walk saw it (a publish renaming its staging)
                relative = path.relative_to(self.root).as_posix()
                files.append(StoredFile(relative, info.st_size, info.st_mtime))
        # The folders a crash may leave without files: a top-level leftover, or a
        # key's subfolder (a staging folder whose copy had not started).
        candidates = [base] if not KEY_PATTERN.fullmatch(top) else _subfolders(base)
        occupied = {"/".join(f.path.split("/")[:depth]) for f in files for depth in (1, 2)}
        empty: dict[str, float] = {}
        for candidate in candidates:
            relative = candidate.relative_to(self.root).as_posix()
            with contextlib.suppress(FileNotFoundError):
                if relative not in occupied:
                    empty[relative] = candidate.stat().st_mtime
        return group_folders(files, self._read_raw_manifest, empty)

    def _delete_folder(self, folder: Folder) -> None:
        """Delete ``folder``'s files (the manifest first), then the folders left empty."""
        path = self.root / folder.path
        manifest = path / MANIFEST_NAME
        if folder.complete:
            manifest.unlink()  # from here on the folder is never taken for complete
        if folder.path != folder.key:
            shutil.rmtree(path)  # an attempt or a leftover: everything under it
        else:
            # An old-layout result: its own files only, not the attempts beside them.
            for file in folder.files:
                (self.root / file.path).unlink(missing_ok=True)
            for directory, _, _ in sorted(os.walk(path), key=lambda entry: -len(entry[0])):
                _remove_if_empty(Path(directory))
        _remove_if_empty(self.root / folder.key)

    def _read_raw_manifest(self, relative: str) -> bytes | None:
        path = self.root / relative / MANIFEST_NAME
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(
                f"cannot read {path}: {exc.strerror or exc}", transient=is_transient_os_error(exc)
            ) from exc

    def _relative(self, location: str) -> str:
        """The path of ``location`` relative to the root, if it names a folder of this store."""
        path = _local_path(location.rstrip("/"))
        root = self.root.resolve()
        inside = path is not None and path != root and path.is_relative_to(root)
        relative = path.relative_to(root).as_posix() if inside and path else ""
        if folder_key(relative) is None:
            raise StoreError(
                f"{location} is not a published folder of results store {self.url}; "
                "nothing was deleted"
            )
        return relative


def _refuse_if_holding_files(location: str, relative: str, folders: list[Folder]) -> None:
    """Raise when ``relative`` is no published folder, yet files are under it.

    That is a key's folder holding only attempts, or a subfolder of an old-layout
    result (see :mod:`analysis_wrapper.stores.layout`); deleting it would delete files
    of other folders.
    """
    if not any(f.path.startswith(f"{relative}/") for found in folders for f in found.files):
        return
    if "/" not in relative:
        raise StoreError(f"{location} holds attempt folders only; delete each by its location")
    raise StoreError(
        f"{location} is part of the old-layout result in its parent folder; delete that one instead"
    )


def _inside(location: str, relative_path: str) -> str:
    """``relative_path`` if it stays inside the folder at ``location``, else a StoreError."""
    if ".." in Path(relative_path).parts or Path(relative_path).is_absolute():
        raise StoreError(f"{location}: file {relative_path!r} is outside the result folder")
    return relative_path


def _listing_error(folder: str, exc: OSError) -> StoreError:
    return StoreError(
        f"cannot list {exc.filename or folder}: {exc.strerror or exc}",
        transient=is_transient_os_error(exc),
    )


def _local_path(location: str) -> Path | None:
    """The folder a ``file://`` location names, or ``None`` for another kind of URL."""
    folder = _file_url_path(location)
    return None if folder is None else Path(folder)


_NOT_PLAIN = re.compile(r"[?#%\s\x00-\x1f\x7f]")


def _file_url_path(location: str) -> str | None:
    """The path of a ``file://`` URL (host, query and fragment dropped, decoded), or ``None``.

    What ``unquote(urlsplit(location).path)`` gives. The locations this store writes
    (``file:///abs/path``, nothing to decode or drop) skip the parser, which costs
    more than the ``stat`` that follows.
    """
    if not location.startswith("file://"):
        return None
    if location.startswith("file:///") and not _NOT_PLAIN.search(location):
        return location[7:]
    return unquote(urlsplit(location).path)


def _subfolders(folder: Path) -> list[Path]:
    """The folders directly in ``folder`` (not links to folders)."""
    try:
        return [path for path in folder.iterdir() if path.is_dir() and not path.is_symlink()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (other attempts), or already gone
        folder.rmdir()


def _rename_into_place(staging: Path, final: Path, token: str) -> None:
    """Rename the complete ``staging`` to ``final``, then fsync their folder.

    A folder cannot be renamed over another, so an earlier copy is moved aside first,
    put back if the rename (or the fsync after it) fails, and deleted only once the
    new copy is in place.
    """
    retired = None
    if final.exists():
        retired = final.parent / f".retired-{final.name}-{token}"
        os.replace(final, retired)
    try:
        os.replace(staging, final)
        try:
            fsync_directory(final.parent)
        except OSError:
            os.replace(final, staging)  # not known to be durable: back out
            raise
    except OSError:
        if retired is not None:
            with contextlib.suppress(OSError):
                os.replace(retired, final)
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def _make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and its missing parents; return the ones made, outermost first."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    folder.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def _fsync_tree(top: Path) -> None:
    """Fsync every file under ``top``, then every folder under it (not ``top`` itself).

    All copies first, then all fsyncs: the first fsync's journal commit carries the
    others' metadata, so the later ones are cheap (one file's fsync each, in turn,
    costs a commit each).
    """
    folders = []
    for directory, _, names in os.walk(top, topdown=False, onerror=_reraise):
        for name in names:
            fsync_file(Path(directory, name))
        if directory != str(top):
            folders.append(directory)
    for directory in folders:  # deepest first
        fsync_directory(Path(directory))


def _reraise(exc: OSError) -> None:
    raise exc


def _raise(exc: OSError) -> None:
    """Let ``os.walk`` fail loudly, but not on a folder gone since it was listed."""
    if not isinstance(exc, FileNotFoundError):
        raise StoreError(
            f"cannot list {exc.filename}: {exc.strerror or exc}",
            transient=is_transient_os_error(exc),
        ) from exc
