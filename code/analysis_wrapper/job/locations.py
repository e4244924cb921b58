"""Input locations: one normal form for reading, one key form for the key.

A location may be an ``s3://`` URL, a ``file://`` URL, an absolute path, or a path
relative to the input directory. The *normal form* (:func:`normalise_location`) keeps
a relative path relative: a job keeps its key when the data folder moves (from a
clone's ``data/`` to Code Ocean's ``/data``). Reading resolves the normal form against
the input directory of the run.

The key hashes the *key form* (:func:`location_key_form`) of the normal form: Unicode
NFC, and the host (an S3 bucket) in lower case, so the same name typed on macOS (NFD)
and on Linux, or a bucket typed ``s3://My-Bucket``, gives one key. Reading keeps the
normal form, byte for byte: a Linux disk or an S3 key holding a name in NFD is found
only by that name.
"""

from __future__ import annotations

import posixpath
import unicodedata
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


def location_key_form(location: str) -> str:
    """Return the form of a location (or URL) that enters a key.

    Unicode NFC, and for a URL (``scheme://host/path``) the scheme and host in lower
    case: ``s3://My-Bucket/Key`` is ``s3://my-bucket/Key`` (bucket names are lower
    case; S3 keys and paths keep their case). User information and port stay as
    they are. ASCII text already in this form is returned as it is.
    """
    text = location
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    separator = text.find("://")
    if separator < 0:
        return text  # a path
    slash = text.find("/", separator + 3)
    head = text if slash < 0 else text[:slash]  # scheme://authority, perhaps ?query
    if head == head.lower():
        return text  # the common case, checked first: a plan asks this of every input
    scheme, rest = text[:separator], text[separator + 3 :]
    if "/" in scheme:
        return text  # a path holding "://"
    authority = rest if slash < 0 else rest[: slash - separator - 3]
    for delimiter in "?#":  # a URL with a query or fragment and no path
        authority = authority.partition(delimiter)[0]
    user, at, host = authority.rpartition("@")
    return f"{scheme.lower()}://{user}{at}{host.lower()}{rest[len(authority) :]}"


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
