"""Input locations: one normal form for the key, one resolution for reading.

A location may be an ``s3://`` URL, a ``file://`` URL, an absolute path, or a path
relative to the input directory. The key hashes the *normal form*, which keeps a
relative path relative: a job keeps its key when the data folder moves (from a clone's
``data/`` to Code Ocean's ``/data``). Reading resolves the location against the input
directory of the run.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from urllib.parse import unquote, urlsplit

S3_SCHEME = "s3://"


class LocationError(ValueError):
    """A location that cannot be normalised; the message says why and what to do."""


def normalise_location(raw: str) -> str:
    """Return the normal form of a location, the form that enters the key.

    - ``s3://bucket/key/`` becomes ``s3://bucket/key`` (lower-case scheme, no trailing
      slash);
    - ``file:///abs/path`` becomes ``/abs/path`` (a file URL and its path are one place);
    - paths are normalised (``a/./b/../c`` is ``a/c``); relative paths stay relative.

    Raises
    ------
    LocationError
        For an empty location, an unsupported scheme, or a relative path that
        escapes the input directory with ``..``.
    """
    text = raw.strip()
    if not text:
        raise LocationError("location is empty; give an s3:// URL or a path")
    scheme, sep, rest = text.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme == "s3":
            bucket_and_key = rest.strip("/")
            if not bucket_and_key:
                raise LocationError(f"{raw!r} names no bucket; write s3://bucket/prefix")
            return S3_SCHEME + bucket_and_key
        if scheme == "file":
            parts = urlsplit(text)
            if parts.netloc not in ("", "localhost"):
                raise LocationError(
                    f"{raw!r} names host {parts.netloc!r}; a file URL must be file:///abs/path"
                )
            return posixpath.normpath(unquote(parts.path) or "/")
        raise LocationError(
            f"{raw!r} has unsupported scheme {scheme!r}; use s3://, file:// or a path"
        )
    normal = posixpath.normpath(text)
    if posixpath.isabs(normal):
        # normpath keeps a leading '//' (POSIX allows it a meaning); we do not need it.
        return "/" + normal.lstrip("/")
    if normal == ".." or normal.startswith("../"):
        raise LocationError(
            f"{raw!r} escapes the input directory with '..'; move the data under the "
            "input directory or give an absolute path"
        )
    return normal


def is_s3(location: str) -> bool:
    """Tell whether a normalised location is an S3 URL."""
    return location.startswith(S3_SCHEME)


def resolve_location(location: str, input_directory: Path) -> str | Path:
    """Return where a normalised location is read from in this run.

    S3 URLs are returned unchanged; paths become absolute ``Path`` objects, relative
    ones under ``input_directory``.
    """
    if is_s3(location):
        return location
    path = Path(location)
    return path if path.is_absolute() else input_directory / path
