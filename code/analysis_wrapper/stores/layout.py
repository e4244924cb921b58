"""The folders of a results store, laid out the same way by every backend.

::

    <url>/<key>/<attempt>/...              one publish attempt: its files, manifest.json last
    <url>/<key>/...                        the old layout (records written before attempt
                                           folders): one result's files directly under the key
    <url>/<key>/.staging-<attempt>-<t>/    a local publish being assembled, or one that crashed
    <url>/<key>/.retired-<attempt>-<t>/    a replaced local attempt being deleted, or a crash's
    <url>/.staging-<key>-<t>/              the same two, from before attempt folders
    <url>/.retired-<key>-<t>/

A backend lists its files as :class:`StoredFile` s (paths relative to the store's root)
and :func:`group_folders` splits them into :class:`Folder` s, so that every backend's
``list_published`` and ``delete`` agree on what a folder holds.

A key's folder that holds files directly is an old-layout result. It may hold attempt
folders too: a key published before attempt folders existed and run again after. A
subfolder of it counts as an attempt only if it has its own ``manifest.json`` and the
old manifest lists no file in it. Any other subfolder (the old result's nested output,
or an attempt still without a manifest) stays with the old result: deleting a live
result's files would be worse than keeping an unfinished attempt until the old result
itself goes. Only for such a subfolder is the old manifest read.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .base import Published
from .manifest import MANIFEST_NAME

KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
"""A job key: the name of each key's folder at the top of a results store."""

ATTEMPT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""An attempt's name; it never starts with a dot, so it never looks like a leftover."""

LEFTOVER_PREFIXES = (".staging-", ".retired-")
"""The names of the hidden folders a local publish works in."""

ReadManifest = Callable[[str], bytes | None]
"""Reads ``<folder>/manifest.json`` (folder relative to the root); ``None`` if absent."""


def check_key(key: str) -> str:
    """Return ``key`` if it is 64 lowercase hex digits, else raise ``ValueError``."""
    if not KEY_PATTERN.fullmatch(key):
        raise ValueError(f"not a job key (64 lowercase hex digits): {key!r}")
    return key


def check_attempt(attempt: str) -> str:
    """Return ``attempt`` if it is a valid attempt name, else raise ``ValueError``."""
    if not ATTEMPT_PATTERN.fullmatch(attempt):
        raise ValueError(
            f"not an attempt name ([A-Za-z0-9._-], starting with a letter or digit): {attempt!r}"
        )
    return attempt


def attempt_path(key: str, attempt: str) -> str:
    """``<key>/<attempt>``, both checked: an attempt's folder relative to the root."""
    return f"{check_key(key)}/{check_attempt(attempt)}"


@dataclass(frozen=True)
class StoredFile:
    """One file (object) of a store.

    Parameters
    ----------
    path : str
        Its POSIX path relative to the store's root.
    size : int
        Its size in bytes.
    modified : float
        When it was last written, in Unix seconds.
    """

    path: str
    size: int
    modified: float


@dataclass(frozen=True)
class Folder:
    """A published folder: an attempt, an old-layout result, or a staging leftover.

    Parameters
    ----------
    path : str
        Relative to the store's root: ``<key>/<attempt>``, ``<key>`` or a leftover's.
    key : str
        The job key it belongs to.
    files : tuple of StoredFile
        Exactly its files (for an old-layout result, without its attempts' files).
    leftover : bool
        A staging or retired folder: never complete, whatever it holds.
    modified_if_empty : float
        The folder's own time, for a folder without files.
    """

    path: str
    key: str
    files: tuple[StoredFile, ...]
    leftover: bool = False
    modified_if_empty: float = 0.0

    @property
    def complete(self) -> bool:
        """Whether its own ``manifest.json`` is there (never for a leftover)."""
        manifest = f"{self.path}/{MANIFEST_NAME}"
        return not self.leftover and any(file.path == manifest for file in self.files)

    def published(self, location: str) -> Published:
        """Describe it as :meth:`ResultStore.list_published` does, at ``location``."""
        return Published(
            key=self.key,
            location=location,
            complete=self.complete,
            modified=max((file.modified for file in self.files), default=self.modified_if_empty),
            size=sum(file.size for file in self.files),
            files=len(self.files),
        )


def leftover_key(name: str) -> str | None:
    """The key of a top-level leftover ``.staging-<key>-<token>``, else ``None``."""
    for prefix in LEFTOVER_PREFIXES:
        key = name[len(prefix) : len(prefix) + 64]
        if name.startswith(prefix) and KEY_PATTERN.fullmatch(key):
            return key
    return None


def folder_key(path: str) -> str | None:
    """The key of the folder at ``path`` (relative), or ``None`` if no folder is there.

    Folders are at ``<key>``, ``<key>/<name>`` and top-level leftovers; nothing deeper,
    and no other name at the top, is one.
    """
    parts = path.split("/")
    if len(parts) == 1:
        return parts[0] if KEY_PATTERN.fullmatch(parts[0]) else leftover_key(parts[0])
    if len(parts) == 2 and KEY_PATTERN.fullmatch(parts[0]) and parts[1] not in ("", ".", ".."):
        return parts[0]
    return None


def group_folders(
    files: Iterable[StoredFile],
    read_manifest: ReadManifest,
    empty: Mapping[str, float] | None = None,
) -> list[Folder]:
    """Split a store's files into its published folders, in path order.

    Parameters
    ----------
    files : iterable of StoredFile
        Every file of the store, or every file under one top-level folder.
    read_manifest : callable
        Reads an old-layout result's manifest (see the module's docstring for when).
    empty : mapping of str to float, optional
        Folders that hold no file (relative path to their own time): a backend with
        real folders passes those a crash may have left empty.

    Returns
    -------
    list of Folder
        Files outside any key's folder or leftover are not in any.
    """
    empty = empty or {}
    by_top: dict[str, list[StoredFile]] = defaultdict(list)
    for file in files:
        top, inside, _ = file.path.partition("/")
        if inside:  # a file at the very top of the store belongs to no key
            by_top[top].append(file)
    for path in empty:
        by_top.setdefault(path.partition("/")[0], [])
    folders: list[Folder] = []
    for top, members in sorted(by_top.items()):
        if KEY_PATTERN.fullmatch(top):
            folders += _split_key_folder(top, members, read_manifest, empty)
        elif (key := leftover_key(top)) is not None:
            folders.append(Folder(top, key, tuple(members), True, empty.get(top, 0.0)))
    return folders


def _split_key_folder(
    key: str, members: list[StoredFile], read_manifest: ReadManifest, empty: Mapping[str, float]
) -> list[Folder]:
    direct: list[StoredFile] = []
    nested: dict[str, list[StoredFile]] = defaultdict(list)
    for file in members:
        name, deeper, _ = file.path[len(key) + 1 :].partition("/")
        if deeper:
            nested[name].append(file)
        else:
            direct.append(file)
    for path in empty:
        parent, _, name = path.partition("/")
        if parent == key and name:
            nested.setdefault(name, [])
    old = list(direct)
    in_old_manifest: set[str] | None = None  # read at most once, and only if needed
    folders: list[Folder] = []
    for name, inside in sorted(nested.items()):
        path = f"{key}/{name}"
        leftover = name.startswith(LEFTOVER_PREFIXES)
        if direct and not leftover:
            has_manifest = any(file.path == f"{path}/{MANIFEST_NAME}" for file in inside)
            if has_manifest and in_old_manifest is None:
                in_old_manifest = _top_folders_listed(key, direct, read_manifest)
            if not has_manifest or name in (in_old_manifest or set()):
                old += inside
                continue
        folders.append(Folder(path, key, tuple(inside), leftover, empty.get(path, 0.0)))
    if old:
        folders.append(Folder(key, key, tuple(old)))
    return folders


def _top_folders_listed(
    key: str, direct: list[StoredFile], read_manifest: ReadManifest
) -> set[str]:
    """The top-level folders the old result's manifest lists files in.

    An old result without a readable manifest claims none: a folder with its own
    manifest is then an attempt, which keeps a live attempt safe from deletion.
    """
    if not any(file.path == f"{key}/{MANIFEST_NAME}" for file in direct):
        return set()
    raw = read_manifest(key)
    try:
        listed = json.loads(raw or b"null")
    except ValueError:
        return set()
    entries = listed.get("files") if isinstance(listed, dict) else None
    return {
        entry["path"].split("/")[0]
        for entry in entries or []
        if isinstance(entry, dict) and isinstance(entry.get("path"), str) and "/" in entry["path"]
    }
