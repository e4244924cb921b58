"""Results on S3 or any S3-compatible store: ``s3://bucket/prefix/<key>/<attempt>/``.

Each publish attempt has a folder of its own (see :mod:`analysis_wrapper.stores.layout`),
so two attempts never mix files. Publishing goes in this order, so a reader that trusts
a folder only when its ``manifest.json`` exists never trusts a half-written one:

1. Every local file is checked to be readable; if one is not, nothing remote changes.
2. One LIST (of at most one key) tells whether the attempt's folder holds anything.
   A fresh attempt, the usual case, holds nothing. When the same attempt is published
   again (a retry), a ``manifest.json`` already there is deleted before any file
   changes: from then on that copy is no longer trusted.
3. Every file is uploaded, many at once, bytes counted: small ones by one PUT each,
   large ones through boto3's transfer manager in parts (:mod:`.upload`).
4. ``manifest.json`` is written: from then on the attempt is trusted.
5. If step 2 found anything, objects of the attempt's folder that the new manifest
   does not list (left by the earlier try) are deleted, so the folder holds exactly the
   given files. A failure here is logged, not raised: the manifest says which objects
   belong to the result.

A failed attempt therefore leaves at most files without a manifest, in a folder no
later attempt uses; ``analysis-wrapper gc`` lists and deletes such folders
(:mod:`.folders`).

The endpoint comes from ``AWS_ENDPOINT_URL`` and the credentials from the usual
chain, both read by boto3 itself. Transient errors (refused or reset connections,
timeouts, 5xx, throttling) are retried with exponential backoff and jitter, a bounded
number of times; botocore's own retries are off so that one policy decides. Other
errors fail at once with one line that names the store and the remedy, and never a
credential (:mod:`.client`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import botocore.exceptions as boto_errors  # type: ignore[import-untyped]

from ...common.redact import mask_url
from ...common.retry import DEFAULT_POLICY, RetryPolicy, with_retries
from ...errors import ConfigError, StoreError
from ..base import UploadProgress
from ..layout import attempt_path
from ..manifest import MANIFEST_NAME
from .client import (
    NOT_FOUND_CODES,
    describe_error,
    error_code,
    is_transient,
    new_client,
)
from .contents import S3Contents
from .folders import DELETE_BATCH, S3Folders, delete_objects
from .manifests import find_manifests
from .upload import TransferSettings, local_files, upload_files

__all__ = ["S3ResultStore", "TransferSettings"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# What botocore accepts as a bucket name (S3 itself is stricter: it answers
# InvalidBucketName). Anything else, e.g. "key:secret@bucket", is refused before use.
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


class S3ResultStore(S3Folders, S3Contents):
    """A results store in an S3 bucket, under a prefix.

    Parameters
    ----------
    bucket : str
        The bucket's name.
    prefix : str
        The folder inside the bucket (``""`` for its top); slashes at either end are
        ignored.
    retry_policy : RetryPolicy
        Attempts and backoff for transient errors.
    transfer : TransferSettings
        Concurrency and multipart sizes of uploads.
    sleep : callable
        Waits between retries; replaceable so tests need not wait.

    Raises
    ------
    ConfigError
        If ``bucket`` cannot be a bucket name (the message masks credentials).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        transfer: TransferSettings | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.prefix = prefix.strip("/")
        if not _BUCKET_NAME.match(bucket):
            shown = mask_url(f"s3://{bucket}/{self.prefix}".rstrip("/"))
            raise ConfigError(
                f"ANALYSIS_BUCKET={shown!r}: not a valid S3 bucket name; write "
                "s3://bucket/prefix (credentials come from the AWS credential chain, "
                "never from ANALYSIS_BUCKET)"
            )
        self.bucket = bucket
        self.retry_policy = retry_policy
        self.transfer = transfer or TransferSettings()
        self._sleep = sleep
        self._lock = threading.Lock()
        self._s3: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # The lock and the client (its connections, its credentials) stay behind: a
        # copy (a process pool or Dask worker) makes its own client on first use.
        state = {**self.__dict__, "_s3": None}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # --- the ResultStore protocol ----------------------------------------------------

    @property
    def url(self) -> str:
        """``s3://bucket/prefix`` (``s3://bucket`` for an empty prefix)."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

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
        """Upload every file under ``folder`` to ``<url>/<key>/<attempt>/``, then the manifest.

        A ``manifest.json`` at the top of ``folder`` is not uploaded: ``manifest`` is.

        Raises
        ------
        StoreError
            If a local file cannot be read, or S3 refuses or stays unreachable; no
            manifest is then in place, and no other attempt of ``key`` was touched.
        """
        started = time.perf_counter()
        location = self.location(key, attempt)
        base = self._object_key(attempt_path(key, attempt))
        files = local_files(folder)
        with self._translated(f"publishing {key}/{attempt}", self.bucket):
            occupied = self._clear_the_way(base)
            upload_files(
                self._client(),
                self.bucket,
                base,
                files,
                self.transfer,
                self._retried,
                progress=progress,
            )
            body = json.dumps(dict(manifest), indent=2).encode("utf-8")
            self._retried(
                lambda: self._client().put_object(
                    Bucket=self.bucket,
                    Key=f"{base}/{MANIFEST_NAME}",
                    Body=body,
                    ContentType="application/json",
                ),
                f"writing {location}/{MANIFEST_NAME}",
            )
        if occupied:
            keep = {f"{base}/{file.relative}" for file in files} | {f"{base}/{MANIFEST_NAME}"}
            self._delete_leftovers(base, keep)
        log.info(
            "published %d file(s) to %s in %.1f s",
            len(files),
            location,
            time.perf_counter() - started,
        )
        return location

    def read_manifest(self, location: str) -> dict[str, Any] | None:
        """Return ``<location>/manifest.json``; ``None`` if absent or not ``s3://``.

        ``location`` may be in any bucket this store's credentials can read.
        """
        parts = urlsplit(location)
        if parts.scheme != "s3" or not _BUCKET_NAME.match(parts.netloc):
            return None  # another kind of store, or a bucket no name can have
        bucket, folder = parts.netloc, parts.path.strip("/")
        object_key = f"{folder}/{MANIFEST_NAME}" if folder else MANIFEST_NAME
        where = f"{mask_url(location.rstrip('/'))}/{MANIFEST_NAME}"

        def read() -> bytes:
            reply = self._client().get_object(Bucket=bucket, Key=object_key)
            data: bytes = reply["Body"].read()
            return data

        with self._translated(f"reading {where}", bucket):
            try:
                data = self._retried(read, f"reading {where}")
            except boto_errors.ClientError as exc:
                if error_code(exc) in ("NoSuchKey", "404"):
                    return None
                raise
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise StoreError(
                f"results store {self.url}: {where} is not JSON ({exc}); publish the result again"
            ) from exc
        if not isinstance(parsed, dict):
            raise StoreError(
                f"results store {self.url}: {where} is not a JSON object; publish the result again"
            )
        return parsed

    def has_manifest(self, location: str) -> bool | None:
        """Check ``<location>/manifest.json`` with one HEAD; ``None`` if not ``s3://``.

        ``location`` may be in any bucket this store's credentials can read.
        """
        parts = urlsplit(location)
        if parts.scheme != "s3":
            return None
        bucket, folder = parts.netloc, parts.path.strip("/")
        if not _BUCKET_NAME.match(bucket):
            return False  # no bucket can have that name, so no manifest is there
        object_key = f"{folder}/{MANIFEST_NAME}" if folder else MANIFEST_NAME
        with self._translated(f"looking for {mask_url(location)}/{MANIFEST_NAME}", bucket):
            try:
                self._retried(
                    lambda: self._client().head_object(Bucket=bucket, Key=object_key),
                    f"looking for {mask_url(location)}/{MANIFEST_NAME}",
                )
            except boto_errors.ClientError as exc:
                if error_code(exc) in NOT_FOUND_CODES:
                    return False
                raise
        return True

    def has_manifests(self, locations: Iterable[str]) -> dict[str, bool | None]:
        """Check many locations' manifests with seek listings, several in flight.

        Each answer is what :meth:`has_manifest` gives for that location, for far
        fewer requests: one LIST per up to 1,000 neighbouring objects, a HEAD each
        where the manifests looked for lie far apart (see :mod:`.manifests`).
        """
        return find_manifests(self, locations)

    def download(self, location: str, relative_path: str, target: Path) -> bool:
        """Copy ``<location>/<relative_path>`` to ``target``; ``False`` if not ``s3://``.

        ``location`` may be in any bucket this store's credentials can read. Transient
        errors are retried; others raise one-line :class:`StoreError` s.
        """
        parts = urlsplit(location)
        if parts.scheme != "s3":
            return False
        bucket, folder = parts.netloc, parts.path.strip("/")
        object_key = f"{folder}/{relative_path}" if folder else relative_path
        where = f"{mask_url(location)}/{relative_path}"
        if not _BUCKET_NAME.match(bucket):
            raise StoreError(f"results store {self.url}: {where}: no bucket has that name")
        with self._translated(f"downloading {where}", bucket):
            try:
                self._retried(
                    lambda: self._client().download_file(bucket, object_key, str(target)),
                    f"downloading {where}",
                )
            except boto_errors.ClientError as exc:
                if error_code(exc) in NOT_FOUND_CODES:
                    raise StoreError(f"results store {self.url}: {where} does not exist") from exc
                raise
        return True

    # --- the steps of a publish ------------------------------------------------------

    def _object_key(self, relative: str) -> str:
        """The object key of ``relative`` (a path under the store), without a trailing slash."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def _clear_the_way(self, base: str) -> bool:
        """Retire an earlier manifest under ``<base>/``; tell whether anything was there.

        One LIST of at most one key answers the usual case (a fresh attempt: nothing
        there, nothing to retire or prune later) and fails fast on a missing bucket.
        Only a retried publish of the same attempt finds something.
        """
        listing = self._retried(
            lambda: self._client().list_objects_v2(
                Bucket=self.bucket, Prefix=f"{base}/", MaxKeys=1
            ),
            f"looking under s3://{self.bucket}/{base}/",
        )
        if not listing.get("KeyCount", len(listing.get("Contents", []))):
            return False
        manifest_key = f"{base}/{MANIFEST_NAME}"
        try:
            self._retried(
                lambda: self._client().head_object(Bucket=self.bucket, Key=manifest_key),
                f"looking for s3://{self.bucket}/{manifest_key}",
            )
        except boto_errors.ClientError as exc:
            if error_code(exc) in NOT_FOUND_CODES:
                return True  # files of a failed attempt, no manifest: nothing to retire
            raise
        self._retried(
            lambda: self._client().delete_object(Bucket=self.bucket, Key=manifest_key),
            f"retiring s3://{self.bucket}/{manifest_key}",
        )
        return True

    def _delete_leftovers(self, base: str, keep: set[str]) -> None:
        """Delete objects under ``<base>/`` not in ``keep``; log, never raise, on failure."""
        try:
            with self._translated("deleting files of an earlier try", self.bucket):
                stale = [
                    name
                    for name in self._retried(lambda: self._list(f"{base}/"), f"listing {base}/")
                    if name not in keep
                ]
                failed: list[tuple[str, str]] = []
                for start in range(0, len(stale), DELETE_BATCH):
                    failed += delete_objects(self, stale[start : start + DELETE_BATCH], base)
                if failed:
                    raise StoreError(f"{len(failed)} leftover object(s) under {base}/ remain")
        except StoreError as exc:
            log.warning("%s; the manifest lists the result's files, the rest are leftovers", exc)

    def _list(self, prefix: str) -> list[str]:
        """Every object key under ``prefix``."""
        names: list[str] = []
        pages = self._client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
            names.extend(entry["Key"] for entry in page.get("Contents", []))
        return names

    # --- the client, retries and errors ----------------------------------------------

    def _client(self) -> Any:
        """The store's one S3 client, made on first use (boto3 clients are thread-safe)."""
        with self._lock:
            if self._s3 is None:
                # Small files' PUTs and large files' parts may be in flight at once.
                connections = 2 * self.transfer.max_concurrency + 4
                self._s3 = new_client(max_pool_connections=connections)
            return self._s3

    def _retried(self, action: Callable[[], T], what: str) -> T:
        """Run ``action`` under the store's retry policy."""
        return with_retries(
            action,
            is_transient=is_transient,
            what=f"results store {self.url}: {what}",
            policy=self.retry_policy,
            sleep=self._sleep,
        )

    def _endpoint(self) -> str:
        """The endpoint the client talks to, for messages."""
        try:
            return mask_url(str(self._client().meta.endpoint_url))
        except Exception:  # the client could not even be made
            return "the default S3 endpoint"

    @contextmanager
    def _translated(self, doing: str, bucket: str) -> Iterator[None]:
        """Turn botocore and local I/O errors into one-line :class:`StoreError` s."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            attempts = self.retry_policy.attempts
            message = describe_error(exc, doing, bucket, self._endpoint, attempts)
            if message is None:
                raise
            raise StoreError(
                f"results store {self.url}: {message}", transient=is_transient(exc)
            ) from exc
