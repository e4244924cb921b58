"""What ``results verify`` reads of an S3 folder, mixed into :class:`~.s3.S3ResultStore`.

A folder's files and their sizes come from listing its prefix (``ListObjectsV2``,
1,000 keys a page, every page), never from a HEAD per file. A file's sha256 is
computed from its body as it arrives, 1 MiB at a time, so a file of any size costs
one GET and one chunk of memory.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import botocore.exceptions as boto_errors  # type: ignore[import-untyped]

from ...common.redact import mask_url
from ...errors import StoreError
from .client import error_code

T = TypeVar("T")

LIST_PAGE = 1000
"""Keys per LIST: the most S3 returns in one page."""

CHUNK = 1 << 20
"""Bytes read from a body at a time while its digest is computed."""

_BUCKET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")  # as :mod:`.store` checks it


class _Store(Protocol):
    """What the mixin uses of :class:`~.s3.S3ResultStore`."""

    @property
    def url(self) -> str: ...

    def _client(self) -> Any: ...

    def _retried(self, action: Callable[[], T], what: str) -> T: ...

    def _translated(self, doing: str, bucket: str) -> AbstractContextManager[None]: ...


class S3Contents:
    """``list_folder`` and ``file_sha256`` of the result store protocol, on S3."""

    def list_folder(self: _Store, location: str) -> dict[str, int] | None:
        """List ``<location>/`` (every page): each object's path under it and its size.

        Keys ending in ``/`` (the empty "folder" objects some tools make) are no
        files. ``location`` may be in any bucket this store's credentials can read;
        ``None`` if it is not ``s3://``, ``{}`` for a bucket name no bucket can have.
        """
        parts = urlsplit(location)
        if parts.scheme != "s3":
            return None
        bucket, folder = parts.netloc, parts.path.strip("/")
        if not _BUCKET_NAME.match(bucket):
            return {}  # no bucket can have that name, so nothing is there
        prefix = f"{folder}/" if folder else ""
        where = f"listing {mask_url(location.rstrip('/'))}/"

        def listing() -> dict[str, int]:
            files: dict[str, int] = {}
            pages = (
                self._client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": LIST_PAGE})
            )
            for page in pages:
                for entry in page.get("Contents", []):
                    name = str(entry["Key"])[len(prefix) :]
                    if name and not name.endswith("/"):
                        files[name] = int(entry["Size"])
            return files

        with self._translated(where, bucket):
            return self._retried(listing, where)  # a failed page starts the listing again

    def file_sha256(self: _Store, location: str, relative_path: str) -> str | None:
        """The sha256 of ``<location>/<relative_path>``, hashed as its body streams in.

        ``None`` when the object does not exist. A transient failure part-way reads
        the object again from its start.

        Raises
        ------
        StoreError
            If ``location`` is not ``s3://`` or S3 refuses or stays unreachable.
        """
        parts = urlsplit(location)
        if parts.scheme != "s3" or not _BUCKET_NAME.match(parts.netloc):
            raise StoreError(
                f"{mask_url(location)} is not in a store like {self.url}; set "
                "ANALYSIS_BUCKET to a store of that kind"
            )
        bucket, folder = parts.netloc, parts.path.strip("/")
        object_key = f"{folder}/{relative_path}" if folder else relative_path
        where = f"reading {mask_url(location.rstrip('/'))}/{relative_path}"

        def digest() -> str:
            body = self._client().get_object(Bucket=bucket, Key=object_key)["Body"]
            hasher = hashlib.sha256()
            try:
                for chunk in body.iter_chunks(CHUNK):
                    hasher.update(chunk)
            finally:
                body.close()
            return hasher.hexdigest()

        with self._translated(where, bucket):
            try:
                return self._retried(digest, where)
            except boto_errors.ClientError as exc:
                if error_code(exc) in ("NoSuchKey", "404"):
                    return None
                raise
