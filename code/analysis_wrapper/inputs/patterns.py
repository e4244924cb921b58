"""Globbing an input asset: the pattern language, and the paths an asset holds.

A pattern is matched against paths relative to the asset, ``/``-separated, whether the
asset is a folder (walked on disk) or an S3 prefix (listed, 1,000 objects a request).
On S3, folders are the prefixes the objects' keys imply, so ``**/*.zarr`` finds Zarr
stores as it does on disk.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def glob_pattern(pattern: str) -> re.Pattern[str]:
    """A regular expression for a glob pattern over ``/``-separated relative paths.

    ``**/`` matches any number of folders (none included), ``**`` alone anything,
    ``*`` anything within one folder level, ``?`` one character, ``[...]`` a class.

    Raises
    ------
    ValueError
        If the pattern is absolute or climbs out with ``..``.
    """
    text = pattern.strip()
    if not text or text.startswith("/") or ".." in text.split("/"):
        raise ValueError(f"glob pattern {pattern!r} must be relative to the asset, without ..")
    out, i = [], 0
    while i < len(text):
        if text.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            out.append("[^/]*")
            i += 1
        elif text[i] == "?":
            out.append("[^/]")
            i += 1
        elif text[i] == "[" and "]" in text[i + 2 :]:
            end = text.index("]", i + 2)
            body = text[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(text[i]))
            i += 1
    return re.compile("".join(out))


def s3_paths(location: str) -> set[str]:
    """Every path under the S3 prefix ``location``: its objects and the folders they imply.

    Empty when the prefix holds no objects or its bucket does not exist.

    Raises
    ------
    StoreError
        If S3 denies the listing or cannot be reached.
    """
    from . import s3 as input_s3

    try:
        objects = input_s3.list_objects(location)
    except input_s3.InputNotFound:
        return set()
    prefix = input_s3.split_url(location)[1]
    keys = [item.key[len(prefix) :].lstrip("/") for item in objects]
    return set(keys) | {
        "/".join(key.split("/")[:depth]) for key in keys for depth in range(1, key.count("/") + 1)
    }


def folder_paths(root: Path) -> set[str]:
    """Every file and folder under ``root``, as paths relative to it."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        relative = Path(folder).relative_to(root).as_posix()
        for name in (*dirs, *files):
            found.add(name if relative == "." else f"{relative}/{name}")
    return found
