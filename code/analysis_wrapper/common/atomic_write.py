"""Files written whole or not at all, and folders whose entries survive a crash.

:func:`write_atomic` writes a temporary file beside the target, flushes and fsyncs it,
renames it over the target with ``os.replace`` and fsyncs the folder, so a crash or
an error at any point leaves either the previous file or the new one, never half of
one, and no temporary file behind (unless the process itself dies mid-write: the
leftover is a hidden ``.<name>.<token>.tmp`` beside the target, never the target).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes | str, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` in one rename.

    Parameters
    ----------
    path : Path
        The file; its folder must exist.
    data : bytes or str
        The new content; text is written as UTF-8.
    durable : bool
        Fsync the file before the rename and its folder after it, so the new content
        survives a power cut once this returns. Without it the write is still atomic
        for readers and for a crash of this process.

    Raises
    ------
    OSError
        If the file cannot be written; ``path`` is then as it was.
    """
    content = data.encode("utf-8") if isinstance(data, str) else data
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        # O_EXCL: never write through a file (or link) that is already there.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            if durable:
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    if durable:
        fsync_directory(path.parent)


def write_json(path: Path, value: Any, *, durable: bool = True) -> None:
    """Write ``value`` as indented UTF-8 JSON with :func:`write_atomic`.

    The value is serialised before any file is touched: one that cannot be (a value
    with no JSON form) raises and leaves ``path`` as it was.
    """
    text = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    write_atomic(path, text, durable=durable)


def fsync_directory(folder: Path) -> None:
    """Fsync a folder, making the creation, renaming and removal of its entries durable.

    A no-op where folders cannot be opened (Windows).
    """
    try:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (PermissionError, IsADirectoryError):  # Windows: folders cannot be opened
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_file(path: Path) -> None:
    """Fsync a file's content and size to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
