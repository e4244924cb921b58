"""Listing and deleting an S3 results store's folders, mixed into :class:`~.s3.S3ResultStore`.

What ``analysis-wrapper gc`` and ``results`` need: every published folder under the
prefix from one paginated listing (grouped as :mod:`analysis_wrapper.stores.layout`
says), and deleting one folder, its manifest first, 1,000 objects per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import botocore.exceptions as boto_errors  # type: ignore[import-untyped]

from ...common.redact import mask_url
from ...errors import StoreError
from ..base import Published
from ..layout import StoredFile, folder_key, group_folders
from ..manifest import MANIFEST_NAME
from .client import TRANSIENT_CODES, error_code

T = TypeVar("T")

DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes


class _Store(Protocol):
    """What the mixin uses of :class:`~.s3.S3ResultStore`."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str: ...

    def _client(self) -> Any: ...

    def _retried(self, action: Callable[[], T], what: str) -> T: ...

    def _translated(self, doing: str, bucket: str) -> AbstractContextManager[None]: ...

    def _object_key(self, relative: str) -> str: ...


class S3Folders:
    """``list_published`` and ``delete`` of the result store protocol, on S3."""

    def list_published(self: _Store) -> Iterator[Published]:
        """Yield every published folder under the prefix, from one paginated listing.

        Keys are the folders named by 64 hex digits right under the prefix; other
        objects there are ignored. An old-layout result's manifest is read only when
        a subfolder of it holds a manifest of its own (see
        :mod:`analysis_wrapper.stores.layout`).
        """
        with self._translated(f"listing {self.url}", self.bucket):
            files = self._retried(lambda: _stored_files(self, ""), f"listing {self.url}/")
            folders = group_folders(files, lambda relative: _raw_manifest(self, relative))
        for folder in folders:
            yield folder.published(f"{self.url}/{folder.path}")

    def delete(self: _Store, location: str) -> int:
        """Delete the objects of the folder at ``location``, the manifest first.

        Objects go 1,000 per request; every object that could not be deleted is named
        (up to a few) in the error.

        Raises
        ------
        StoreError
            If ``location`` is no published folder of this store, or deleting fails.
        """
        relative = _relative(self, location)
        shown = mask_url(location)
        with self._translated(f"deleting {shown}", self.bucket):
            top = relative.split("/")[0]
            files = self._retried(lambda: _stored_files(self, f"{top}/"), f"listing {shown}/")
            folders = group_folders(files, lambda relative: _raw_manifest(self, relative))
            folder = next((found for found in folders if found.path == relative), None)
            if folder is None:
                if any(file.path.startswith(f"{relative}/") for file in files):
                    raise StoreError(
                        f"results store {self.url}: {shown} is not a folder of its own (a "
                        "key's folder holding attempts, or part of an old-layout result); "
                        "nothing was deleted"
                    )
                return 0
            names = [self._object_key(file.path) for file in folder.files]
            manifest = self._object_key(f"{folder.path}/{MANIFEST_NAME}")
            # The manifest goes alone, first: a half-deleted folder is never complete.
            failed = delete_objects(self, [manifest], shown) if folder.complete else []
            rest = [name for name in names if name != manifest] if not failed else []
            for start in range(0, len(rest), DELETE_BATCH):
                failed += delete_objects(self, rest[start : start + DELETE_BATCH], shown)
        if failed:
            listed = ", ".join(f"{name} ({code})" for name, code in failed[:5])
            raise StoreError(
                f"results store {self.url}: {len(failed)} of {len(names)} object(s) of {shown} "
                f"could not be deleted: {listed}" + (", ..." if len(failed) > 5 else ""),
                # Only throttled or failing-server objects: another try deletes them.
                transient=all(code in TRANSIENT_CODES for _, code in failed),
            )
        return len(names)


def delete_objects(store: _Store, names: list[str], where: str) -> list[tuple[str, str]]:
    """Delete up to 1,000 objects in one request; return ``(key, code)`` of each failure."""
    objects = [{"Key": name} for name in names]
    reply = store._retried(
        lambda: store._client().delete_objects(
            Bucket=store.bucket, Delete={"Objects": objects, "Quiet": True}
        ),
        f"deleting {len(objects)} object(s) of {where}",
    )
    return [
        (str(error.get("Key", "?")), str(error.get("Code", "?")))
        for error in reply.get("Errors", [])
    ]


def _stored_files(store: _Store, under: str) -> list[StoredFile]:
    """Every object under ``<prefix>/<under>``, with its path relative to the prefix."""
    root = f"{store.prefix}/" if store.prefix else ""
    files: list[StoredFile] = []
    pages = store._client().get_paginator("list_objects_v2")
    for page in pages.paginate(Bucket=store.bucket, Prefix=root + under):
        files.extend(
            StoredFile(
                entry["Key"][len(root) :], int(entry["Size"]), entry["LastModified"].timestamp()
            )
            for entry in page.get("Contents", [])
        )
    return files


def _raw_manifest(store: _Store, relative: str) -> bytes | None:
    """The bytes of ``<relative>/manifest.json`` under the prefix, or ``None``."""
    object_key = store._object_key(f"{relative}/{MANIFEST_NAME}")

    def read() -> bytes:
        data: bytes = store._client().get_object(Bucket=store.bucket, Key=object_key)["Body"].read()
        return data

    try:
        return store._retried(read, f"reading s3://{store.bucket}/{object_key}")
    except boto_errors.ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise


def _relative(store: _Store, location: str) -> str:
    """The path of ``location`` under the prefix, if it names a folder of this store."""
    parts = urlsplit(location.rstrip("/"))
    root = f"{store.prefix}/" if store.prefix else ""
    path = parts.path.lstrip("/")
    inside = parts.scheme == "s3" and parts.netloc == store.bucket and path.startswith(root)
    relative = path[len(root) :] if inside else ""
    if folder_key(relative) is None:
        raise StoreError(
            f"results store {store.url}: {mask_url(location)} is not a published folder "
            "of this store; nothing was deleted"
        )
    return relative
