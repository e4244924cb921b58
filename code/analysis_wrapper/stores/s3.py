"""Results on S3 or any S3-compatible store: ``s3://bucket/prefix/<key>/<attempt>/``.

Each publish attempt has a folder of its own (see :mod:`analysis_wrapper.stores.layout`),
so two attempts never mix files. Publishing goes in this order, so a reader that trusts
a folder only when its ``manifest.json`` exists never trusts a half-written one:

1. Every local file is checked to be readable; if one is not, nothing remote changes.
2. One LIST (of at most one key) tells whether the attempt's folder holds anything.
   A fresh attempt, the usual case, holds nothing. When the same attempt is published
   again (a retry), a ``manifest.json`` already there is deleted before any file
   changes: from then on that copy is no longer trusted.
3. Every file is uploaded through boto3's transfer manager, many at once; a file
   above the multipart threshold goes up in parts, themselves in parallel. How many
   bytes are up shows as a bar on a terminal (for 64 MiB or more), else as a log line
   every few seconds (:class:`~analysis_wrapper.progress.ByteProgress`).
4. ``manifest.json`` is written: from then on the attempt is trusted.
5. If step 2 found anything, objects of the attempt's folder that the new manifest
   does not list (left by the earlier try) are deleted, so the folder holds exactly the
   given files. A failure here is logged, not raised: the manifest says which objects
   belong to the result.

A failed attempt therefore leaves at most files without a manifest, in a folder no
later attempt uses; ``analysis-wrapper gc`` lists and deletes such folders
(:meth:`S3ResultStore.list_published`, :meth:`S3ResultStore.delete`).

The endpoint comes from ``AWS_ENDPOINT_URL`` and the credentials from the usual
chain, both read by boto3 itself. Transient errors (refused or reset connections,
timeouts, 5xx, throttling) are retried with exponential backoff and jitter, a bounded
number of times; botocore's own retries are off so that one policy decides. Other
errors fail at once with one line that names the store and the remedy, and never a
credential.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import boto3  # type: ignore[import-untyped]
import botocore.exceptions as boto_errors  # type: ignore[import-untyped]
from boto3.s3.transfer import (  # type: ignore[import-untyped]
    TransferConfig,
    create_transfer_manager,
)
from botocore.config import Config  # type: ignore[import-untyped]
from s3transfer.subscribers import BaseSubscriber  # type: ignore[import-untyped]

from ..errors import ConfigError, StoreError
from ..manifest import MANIFEST_NAME
from ..progress import BAR_MIN_BYTES, ByteProgress
from ..redact import mask_url
from ..retry import DEFAULT_POLICY, RetryPolicy, with_retries
from .base import Published
from .layout import StoredFile, attempt_path, folder_key, group_folders

__all__ = ["S3ResultStore", "TransferSettings"]

log = logging.getLogger(__name__)

T = TypeVar("T")
MiB = 1024 * 1024
DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes

# What botocore accepts as a bucket name (S3 itself is stricter: it answers
# InvalidBucketName). Anything else, e.g. "key:secret@bucket", is refused before use.
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")

_TRANSIENT_CODES = frozenset(
    [
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalError",
        "ServiceUnavailable",
    ]
)
_DENIED_CODES = frozenset(
    [
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AccountProblem",
        "403",
    ]
)
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
_CREDENTIAL_ERRORS = (
    boto_errors.NoCredentialsError,
    boto_errors.PartialCredentialsError,
    boto_errors.CredentialRetrievalError,
)
_CREDENTIALS_REMEDY = (
    "check the AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
    "or the role) and that they may read and write"
)


@dataclass(frozen=True)
class TransferSettings:
    """How uploads go through boto3's transfer manager.

    Parameters
    ----------
    max_concurrency : int
        Requests in flight at once: whole small files, or parts of large ones.
    multipart_threshold : int
        Files of at least this many bytes go up as multipart uploads.
    multipart_chunksize : int
        The size of each part (S3 needs at least 5 MiB, except for the last one).
    io_chunksize : int
        How much of a file is read at a time.
    progress_bar_min_bytes : int
        On a terminal, a publish of at least this many bytes shows a bar over bytes.
    progress_interval_s : float
        Without a bar, a line says how far a publish is at most this often.
    """

    max_concurrency: int = 10
    multipart_threshold: int = 16 * MiB
    multipart_chunksize: int = 16 * MiB
    io_chunksize: int = 1 * MiB
    progress_bar_min_bytes: int = BAR_MIN_BYTES
    progress_interval_s: float = 10.0


@dataclass(frozen=True)
class _LocalFile:
    """A file to upload: where it is, its path relative to the result folder, its size."""

    path: Path
    relative: str
    size: int = 0


class _ProgressSubscriber(BaseSubscriber):  # type: ignore[misc]
    """Passes the transfer manager's progress events to a :class:`ByteProgress`.

    A file whose upload failed gives its bytes back: the next round sends it again.
    """

    def __init__(self, progress: ByteProgress) -> None:
        self._progress = progress
        self._sent: dict[Any, int] = {}
        self._lock = threading.Lock()

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        """Count bytes sent (a negative count when a request rewinds)."""
        with self._lock:
            transfer = future.meta.transfer_id
            self._sent[transfer] = self._sent.get(transfer, 0) + bytes_transferred
        self._progress.update(bytes_transferred)

    def on_done(self, future: Any, **kwargs: Any) -> None:
        """Forget a finished file; take back the bytes of one that failed."""
        with self._lock:
            sent = self._sent.pop(future.meta.transfer_id, 0)
        try:
            future.result()  # done already: returns at once, or raises its error
        except Exception:
            self._progress.update(-sent)


class S3ResultStore:
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

    # --- the ResultStore protocol ----------------------------------------------------

    @property
    def url(self) -> str:
        """``s3://bucket/prefix`` (``s3://bucket`` for an empty prefix)."""
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def location(self, key: str, attempt: str) -> str:
        """Return ``<url>/<key>/<attempt>``."""
        return f"{self.url}/{attempt_path(key, attempt)}"

    def publish(self, key: str, attempt: str, folder: Path, manifest: Mapping[str, Any]) -> str:
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
        files = _local_files(folder)
        with self._translated(f"publishing {key}/{attempt}", self.bucket):
            occupied = self._clear_the_way(base)
            self._upload(files, base)
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
                if _code(exc) in ("NoSuchKey", "404"):
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
                if _code(exc) in _NOT_FOUND_CODES:
                    return False
                raise
        return True

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
                if _code(exc) in _NOT_FOUND_CODES:
                    raise StoreError(f"results store {self.url}: {where} does not exist") from exc
                raise
        return True

    def list_published(self) -> Iterator[Published]:
        """Yield every published folder under the prefix, from one paginated listing.

        Keys are the folders named by 64 hex digits right under the prefix; other
        objects there are ignored. An old-layout result's manifest is read only when
        a subfolder of it holds a manifest of its own (see
        :mod:`analysis_wrapper.stores.layout`).
        """
        with self._translated(f"listing {self.url}", self.bucket):
            files = self._retried(lambda: self._stored_files(""), f"listing {self.url}/")
            folders = group_folders(files, self._raw_manifest)
        for folder in folders:
            yield folder.published(f"{self.url}/{folder.path}")

    def delete(self, location: str) -> int:
        """Delete the objects of the folder at ``location``, the manifest first.

        Objects go 1,000 per request; every object that could not be deleted is named
        (up to a few) in the error.

        Raises
        ------
        StoreError
            If ``location`` is no published folder of this store, or deleting fails.
        """
        relative = self._relative(location)
        shown = mask_url(location)
        with self._translated(f"deleting {shown}", self.bucket):
            top = relative.split("/")[0]
            files = self._retried(lambda: self._stored_files(f"{top}/"), f"listing {shown}/")
            folders = group_folders(files, self._raw_manifest)
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
            failed = self._delete_objects([manifest], shown) if folder.complete else []
            rest = [name for name in names if name != manifest] if not failed else []
            for start in range(0, len(rest), DELETE_BATCH):
                failed += self._delete_objects(rest[start : start + DELETE_BATCH], shown)
        if failed:
            listed = ", ".join(failed[:5]) + (", ..." if len(failed) > 5 else "")
            raise StoreError(
                f"results store {self.url}: {len(failed)} of {len(names)} object(s) of {shown} "
                f"could not be deleted: {listed}"
            )
        return len(names)

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
            if _code(exc) in _NOT_FOUND_CODES:
                return True  # files of a failed attempt, no manifest: nothing to retire
            raise
        self._retried(
            lambda: self._client().delete_object(Bucket=self.bucket, Key=manifest_key),
            f"retiring s3://{self.bucket}/{manifest_key}",
        )
        return True

    def _upload(self, files: list[_LocalFile], base: str) -> None:
        """Upload ``files`` under ``base`` in rounds; each retry resends only the failed."""
        pending = {file.relative: file for file in files}
        if not pending:
            return
        config = TransferConfig(
            max_concurrency=self.transfer.max_concurrency,
            multipart_threshold=self.transfer.multipart_threshold,
            multipart_chunksize=self.transfer.multipart_chunksize,
            io_chunksize=self.transfer.io_chunksize,
            preferred_transfer_client="classic",
        )
        manager = create_transfer_manager(self._client(), config)
        failed = True
        progress = ByteProgress(
            sum(file.size for file in files),
            f"s3://{self.bucket}/{base}/",
            interval_s=self.transfer.progress_interval_s,
            bar_min_bytes=self.transfer.progress_bar_min_bytes,
        )
        try:
            with progress:
                subscriber = _ProgressSubscriber(progress)
                self._retried(
                    lambda: self._upload_round(manager, pending, base, subscriber),
                    f"uploading to s3://{self.bucket}/{base}/",
                )
            failed = False
        finally:
            manager.shutdown(cancel=failed)

    def _upload_round(
        self,
        manager: Any,
        pending: dict[str, _LocalFile],
        base: str,
        subscriber: _ProgressSubscriber,
    ) -> None:
        """Upload every pending file at once; drop each that arrived from ``pending``.

        Raises the first transient error once every upload has ended, so that the next
        round resends only what failed; a permanent error cancels the rest at once.
        """
        futures = [
            (
                file,
                manager.upload(
                    str(file.path),
                    self.bucket,
                    f"{base}/{file.relative}",
                    _extra(file),
                    subscribers=[subscriber],
                ),
            )
            for file in pending.values()
        ]
        transient: BaseException | None = None
        for file, future in futures:
            try:
                future.result()
            except Exception as exc:
                if not _is_transient(exc):
                    for _, other in futures:
                        other.cancel()
                    raise
                transient = transient or exc
            else:
                del pending[file.relative]
        if transient is not None:
            raise transient

    def _delete_leftovers(self, base: str, keep: set[str]) -> None:
        """Delete objects under ``<base>/`` not in ``keep``; log, never raise, on failure."""
        try:
            with self._translated("deleting files of an earlier try", self.bucket):
                stale = [
                    name
                    for name in self._retried(lambda: self._list(f"{base}/"), f"listing {base}/")
                    if name not in keep
                ]
                failed: list[str] = []
                for start in range(0, len(stale), DELETE_BATCH):
                    failed += self._delete_objects(stale[start : start + DELETE_BATCH], base)
                if failed:
                    raise StoreError(f"{len(failed)} leftover object(s) under {base}/ remain")
        except StoreError as exc:
            log.warning("%s; the manifest lists the result's files, the rest are leftovers", exc)

    def _delete_objects(self, names: list[str], where: str) -> list[str]:
        """Delete up to 1,000 objects in one request; return ``key (code)`` of each failure."""
        objects = [{"Key": name} for name in names]
        reply = self._retried(
            lambda: self._client().delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            ),
            f"deleting {len(objects)} object(s) of {where}",
        )
        return [
            f"{error.get('Key', '?')} ({error.get('Code', '?')})"
            for error in reply.get("Errors", [])
        ]

    def _list(self, prefix: str) -> list[str]:
        """Every object key under ``prefix``."""
        names: list[str] = []
        pages = self._client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
            names.extend(entry["Key"] for entry in page.get("Contents", []))
        return names

    # --- listing and deleting folders -------------------------------------------------

    def _stored_files(self, under: str) -> list[StoredFile]:
        """Every object under ``<prefix>/<under>``, with its path relative to the prefix."""
        root = f"{self.prefix}/" if self.prefix else ""
        files: list[StoredFile] = []
        pages = self._client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=root + under):
            files.extend(
                StoredFile(
                    entry["Key"][len(root) :], int(entry["Size"]), entry["LastModified"].timestamp()
                )
                for entry in page.get("Contents", [])
            )
        return files

    def _raw_manifest(self, relative: str) -> bytes | None:
        """The bytes of ``<relative>/manifest.json`` under the prefix, or ``None``."""
        object_key = self._object_key(f"{relative}/{MANIFEST_NAME}")

        def read() -> bytes:
            data: bytes = (
                self._client().get_object(Bucket=self.bucket, Key=object_key)["Body"].read()
            )
            return data

        try:
            return self._retried(read, f"reading s3://{self.bucket}/{object_key}")
        except boto_errors.ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise

    def _relative(self, location: str) -> str:
        """The path of ``location`` under the prefix, if it names a folder of this store."""
        parts = urlsplit(location.rstrip("/"))
        root = f"{self.prefix}/" if self.prefix else ""
        path = parts.path.lstrip("/")
        inside = parts.scheme == "s3" and parts.netloc == self.bucket and path.startswith(root)
        relative = path[len(root) :] if inside else ""
        if folder_key(relative) is None:
            raise StoreError(
                f"results store {self.url}: {mask_url(location)} is not a published folder "
                "of this store; nothing was deleted"
            )
        return relative

    # --- the client, retries and errors ----------------------------------------------

    def _client(self) -> Any:
        """The store's one S3 client, made on first use (boto3 clients are thread-safe)."""
        with self._lock:
            if self._s3 is None:
                config = Config(
                    retries={"mode": "standard", "total_max_attempts": 1},  # ours retry
                    max_pool_connections=self.transfer.max_concurrency + 4,
                    connect_timeout=10,
                    read_timeout=120,
                )
                self._s3 = boto3.session.Session().client("s3", config=config)
            return self._s3

    def _retried(self, action: Callable[[], T], what: str) -> T:
        """Run ``action`` under the store's retry policy."""
        return with_retries(
            action,
            is_transient=_is_transient,
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
            message = self._describe(exc, doing, bucket)
            if message is None:
                raise
            raise StoreError(f"results store {self.url}: {message}") from exc

    def _describe(self, exc: Exception, doing: str, bucket: str) -> str | None:
        """What went wrong and the remedy, in words that hold no secret."""
        attempts = self.retry_policy.attempts
        if isinstance(exc, boto_errors.ClientError):
            code, status = _code(exc), _status(exc)
            what = f"{code}, HTTP {status}" if code != str(status) else f"HTTP {status}"
            if code == "NoSuchBucket":
                return (
                    f"bucket {bucket!r} does not exist at {self._endpoint()} ({what}) while "
                    f"{doing}; create the bucket or fix ANALYSIS_BUCKET"
                )
            if code == "InvalidBucketName":
                return f"{bucket!r} is not a valid bucket name ({what}); fix ANALYSIS_BUCKET"
            if code in _DENIED_CODES or status == 403:
                return f"access denied ({what}) while {doing}; {_CREDENTIALS_REMEDY} s3://{bucket}"
            if _is_transient(exc):
                return (
                    f"S3 at {self._endpoint()} still failing after {attempts} attempts "
                    f"({what}) while {doing}; try again later"
                )
            return f"S3 refused {doing} ({what}); check ANALYSIS_BUCKET and the bucket"
        if isinstance(exc, _CREDENTIAL_ERRORS):
            return (
                f"no usable AWS credentials ({type(exc).__name__}) while {doing}; set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or attach a role"
            )
        if _is_transient(exc):
            return (
                f"cannot reach S3 at {self._endpoint()} ({type(exc).__name__}) after "
                f"{attempts} attempts while {doing}; check AWS_ENDPOINT_URL and the network"
            )
        if isinstance(exc, boto_errors.ParamValidationError):
            return f"invalid request while {doing}; check ANALYSIS_BUCKET ({bucket!r})"
        if isinstance(exc, boto_errors.BotoCoreError):
            return (
                f"{type(exc).__name__} while {doing}; check the AWS configuration "
                "(AWS_PROFILE, AWS_CONFIG_FILE, AWS_ENDPOINT_URL, the region)"
            )
        if isinstance(exc, OSError):
            name = exc.filename or "a result file"
            return f"cannot read {name} while {doing}: {exc.strerror or type(exc).__name__}"
        return None


def _local_files(folder: Path) -> list[_LocalFile]:
    """Every regular file under ``folder`` but a top-level manifest, checked readable.

    Raises
    ------
    StoreError
        If ``folder`` is not a folder, or holds something that is not a readable
        regular file (a broken link, a socket): before anything remote changes.
    """
    if not folder.is_dir():
        raise StoreError(f"cannot publish {folder}: not a folder")
    files: list[_LocalFile] = []
    for path in sorted(folder.rglob("*")):
        try:
            info = path.stat()
            mode = info.st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise StoreError(f"cannot publish {path}: not a regular file")
            with path.open("rb"):
                pass
        except OSError as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(
                f"cannot publish {path}: {exc.strerror or exc}; fix or remove it"
            ) from exc
        relative = path.relative_to(folder).as_posix()
        if relative != MANIFEST_NAME:
            files.append(_LocalFile(path, relative, info.st_size))
    return files


def _extra(file: _LocalFile) -> dict[str, str]:
    """The object's Content-Type, when the file name tells it."""
    kind, _ = mimetypes.guess_type(file.relative)
    return {"ContentType": kind} if kind else {}


def _code(exc: Any) -> str:
    """The error code of a botocore ``ClientError``."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: Any) -> int:
    """The HTTP status of a botocore ``ClientError`` (0 if unknown)."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _is_transient(exc: BaseException) -> bool:
    """Worth another try: no connection, a reset or timeout, a 5xx, or throttling."""
    if isinstance(exc, boto_errors.ClientError):
        status = _status(exc)
        return _code(exc) in _TRANSIENT_CODES or status >= 500 or status == 429
    if isinstance(exc, boto_errors.SSLError):
        return False  # a certificate problem does not go away by itself
    return isinstance(
        exc, (boto_errors.ConnectionError, boto_errors.HTTPClientError, ConnectionError)
    )
