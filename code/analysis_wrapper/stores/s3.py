"""Results on S3 or any S3-compatible store: ``s3://bucket/prefix/<key>/``, manifest last.

Publishing ``key`` goes in this order, so a reader that trusts a result only when its
``manifest.json`` exists never trusts a half-written one:

1. Every local file is checked to be readable; if one is not, nothing remote changes.
2. One LIST (of at most one key) tells whether anything is under ``<key>/`` already;
   on a first publish, the usual case, nothing is. If ``<key>/manifest.json`` exists
   (a forced re-run, or a record that was lost), it is deleted before any file
   changes: from then on the old result is no longer trusted.
3. Every file is uploaded through boto3's transfer manager, many at once; a file
   above the multipart threshold goes up in parts, themselves in parallel.
4. ``manifest.json`` is written: from then on the result is trusted.
5. If step 2 found anything, objects under ``<key>/`` that the new manifest does not
   list (left by a failed or earlier attempt) are deleted. A failure here is logged,
   not raised: the result is complete, and its manifest says which objects belong to
   it.

A failed attempt therefore leaves at most files without a manifest, which the next
attempt overwrites and prunes: it never blocks it (upstream's "path already exists").

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

from ..errors import ConfigError, StoreError
from ..manifest import MANIFEST_NAME
from ..redact import mask_url
from ..retry import DEFAULT_POLICY, RetryPolicy, with_retries

__all__ = ["S3ResultStore", "TransferSettings"]

log = logging.getLogger(__name__)

T = TypeVar("T")
MiB = 1024 * 1024

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
    """

    max_concurrency: int = 10
    multipart_threshold: int = 16 * MiB
    multipart_chunksize: int = 16 * MiB
    io_chunksize: int = 1 * MiB


@dataclass(frozen=True)
class _LocalFile:
    """A file to upload: where it is, and its path relative to the result folder."""

    path: Path
    relative: str


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

    def location(self, key: str) -> str:
        """Return ``<url>/<key>``."""
        return f"{self.url}/{key}"

    def publish(self, key: str, folder: Path, manifest: Mapping[str, Any]) -> str:
        """Upload every file under ``folder`` to ``<url>/<key>/``, then the manifest.

        A ``manifest.json`` at the top of ``folder`` is not uploaded: ``manifest`` is.

        Raises
        ------
        StoreError
            If a local file cannot be read, or S3 refuses or stays unreachable; no
            manifest is then in place, and a later publish of ``key`` starts afresh.
        """
        started = time.perf_counter()
        files = _local_files(folder)
        base = self._object_key(key)
        with self._translated(f"publishing {key}", self.bucket):
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
                f"writing {self.location(key)}/{MANIFEST_NAME}",
            )
        if occupied:
            keep = {f"{base}/{file.relative}" for file in files} | {f"{base}/{MANIFEST_NAME}"}
            self._delete_leftovers(base, keep)
        log.info(
            "published %d file(s) to %s in %.1f s",
            len(files),
            self.location(key),
            time.perf_counter() - started,
        )
        return self.location(key)

    def read_manifest(self, key: str) -> dict[str, Any] | None:
        """Return ``<url>/<key>/manifest.json``, or ``None`` if there is none."""
        object_key = f"{self._object_key(key)}/{MANIFEST_NAME}"

        def read() -> bytes:
            reply = self._client().get_object(Bucket=self.bucket, Key=object_key)
            data: bytes = reply["Body"].read()
            return data

        with self._translated(f"reading the manifest of {key}", self.bucket):
            try:
                data = self._retried(read, f"reading {self.location(key)}/{MANIFEST_NAME}")
            except boto_errors.ClientError as exc:
                if _code(exc) in ("NoSuchKey", "404"):
                    return None
                raise
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise StoreError(
                f"results store {self.url}: {key}/{MANIFEST_NAME} is not JSON ({exc}); "
                "publish the result again"
            ) from exc
        return parsed if isinstance(parsed, dict) else None

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

    # --- the steps of a publish ------------------------------------------------------

    def _object_key(self, key: str) -> str:
        """The object key of ``key``'s folder, without a trailing slash."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def _clear_the_way(self, base: str) -> bool:
        """Retire an earlier manifest under ``<base>/``; tell whether anything was there.

        One LIST of at most one key answers the usual case (a first publish: nothing
        there, nothing to retire or prune later) and fails fast on a missing bucket.
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
        try:
            self._retried(
                lambda: self._upload_round(manager, pending, base),
                f"uploading to s3://{self.bucket}/{base}/",
            )
            failed = False
        finally:
            manager.shutdown(cancel=failed)

    def _upload_round(self, manager: Any, pending: dict[str, _LocalFile], base: str) -> None:
        """Upload every pending file at once; drop each that arrived from ``pending``.

        Raises the first transient error once every upload has ended, so that the next
        round resends only what failed; a permanent error cancels the rest at once.
        """
        futures = [
            (
                file,
                manager.upload(
                    str(file.path), self.bucket, f"{base}/{file.relative}", _extra(file)
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
            with self._translated("deleting files of earlier attempts", self.bucket):
                stale = self._retried(lambda: self._list(f"{base}/"), f"listing {base}/")
                stale = [name for name in stale if name not in keep]
                for start in range(0, len(stale), 1000):
                    self._delete_batch(base, stale[start : start + 1000])
        except StoreError as exc:
            log.warning("%s; the manifest lists the result's files, the rest are leftovers", exc)

    def _delete_batch(self, base: str, names: list[str]) -> None:
        """Delete up to 1,000 objects in one request."""
        objects = [{"Key": name} for name in names]
        reply = self._retried(
            lambda: self._client().delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            ),
            f"deleting {len(objects)} leftover object(s) under {base}/",
        )
        if reply.get("Errors"):
            raise StoreError(
                f"results store {self.url}: {len(reply['Errors'])} leftover object(s) under "
                f"{base}/ could not be deleted ({reply['Errors'][0].get('Code', '?')})"
            )

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
            mode = path.stat().st_mode
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
            files.append(_LocalFile(path, relative))
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
