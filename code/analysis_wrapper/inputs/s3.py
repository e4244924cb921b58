"""Input objects on S3: look one up, list a prefix, download one; errors in one line.

boto3 is imported here only; :mod:`analysis_wrapper.inputs.job_inputs` imports this module on
first use of an S3 input. One client per process serves every job (boto3 clients are
thread-safe); the endpoint comes from ``AWS_ENDPOINT_URL`` and the credentials from
the usual chain, both read by boto3 itself. When that chain finds no credentials at
all, requests go unsigned: public buckets (AIND's open data, ``s3://aind-open-data``)
are read with no setup, and a private one answers "access denied" with the remedy.
Transient errors (no connection, 5xx, throttling) are retried with backoff and
jitter, a bounded number of times.

A missing object or bucket is :class:`InputNotFound` (the caller names the job file
and field); denied access and other failures are :class:`StoreError` naming the URL
and the remedy, never a credential, transient only when S3 stayed unreachable or
throttled after the retries.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

import botocore.exceptions as boto_errors  # type: ignore[import-untyped]

from ..common.redact import mask_url
from ..common.retry import DEFAULT_POLICY, RetryPolicy, with_retries
from ..errors import StoreError
from ..stores.s3.client import (
    CREDENTIAL_ERRORS,
    NOT_FOUND_CODES,
    error_code,
    has_credentials,
    http_status,
    is_transient,
    is_unsigned,
    new_client,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

CHUNK_BYTES = 1024 * 1024
_DENIED = frozenset(
    {"403", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)
_CHANGED = frozenset({"412", "PreconditionFailed"})
_CREDENTIALS_REMEDY = (
    "check the AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
    "or the role) and that they may read"
)

_lock = threading.Lock()
_clients: dict[tuple[str | None, ...], Any] = {}
# What a client is made from: a change (another endpoint or profile) makes a new one.
_CLIENT_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
)


class InputNotFound(Exception):
    """The object, prefix or bucket does not exist."""


class ObjectChanged(Exception):
    """The object was replaced between looking it up and reading it."""


@dataclass(frozen=True)
class ObjectInfo:
    """One S3 object as a listing or a HEAD describes it.

    Parameters
    ----------
    bucket, key : str
        Where it is.
    etag : str
        Its ETag, without quotes (``<md5>`` or, for a multipart upload, ``<md5>-<parts>``).
    size : int
        Its size in bytes.
    version_id : str or None
        Its version in a versioned bucket.
    """

    bucket: str
    key: str
    etag: str
    size: int
    version_id: str | None = None

    @property
    def url(self) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{self.key}"

    @property
    def version(self) -> str:
        """The object's version for a key: its VersionId when it has one, else its ETag."""
        return f"version:{self.version_id}" if self.version_id else f"etag:{self.etag}"


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` as ``(bucket, key)``; the key may be empty."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key.strip("/")


def client() -> Any:
    """The process's S3 client, made on first use (a forked child makes its own)."""
    key = (str(os.getpid()), *(os.environ.get(name) for name in _CLIENT_VARIABLES))
    with _lock:
        if key not in _clients:
            _clients.clear()
            anonymous = not has_credentials()
            if anonymous:
                log.info(
                    "no AWS credentials found: reading S3 inputs anonymously, which "
                    "public buckets allow"
                )
            _clients[key] = new_client(max_pool_connections=20, unsigned=anonymous)
        return _clients[key]


def configured_endpoint() -> str | None:
    """The client's endpoint if the environment sets one (``AWS_ENDPOINT_URL[_S3]``).

    ``None`` on AWS itself, where boto3 picks the regional endpoint.
    """
    if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"):
        return endpoint()
    return None


def anonymous() -> bool:
    """Whether this process reads S3 inputs unsigned (no credentials were found)."""
    return bool(is_unsigned(client()))


def endpoint() -> str:
    """The endpoint this process's client talks to (part of a cache entry's identity)."""
    return str(client().meta.endpoint_url)


def head(url: str, policy: RetryPolicy = DEFAULT_POLICY) -> ObjectInfo:
    """Look one object up (one HEAD request).

    Raises
    ------
    InputNotFound
        If the object or its bucket does not exist.
    StoreError
        If access is denied or S3 cannot be reached.
    """
    bucket, key = split_url(url)
    reply = _call(url, "reading", lambda: client().head_object(Bucket=bucket, Key=key), policy)
    version = reply.get("VersionId")
    return ObjectInfo(
        bucket,
        key,
        str(reply.get("ETag", "")).strip('"'),
        int(reply.get("ContentLength", 0)),
        version if version and version != "null" else None,
    )


def list_objects(url: str, policy: RetryPolicy = DEFAULT_POLICY) -> list[ObjectInfo]:
    """Every object under a prefix (one request per 1,000 objects).

    Raises
    ------
    InputNotFound
        If the bucket does not exist.
    StoreError
        If access is denied or S3 cannot be reached.
    """
    bucket, key = split_url(url)
    prefix = f"{key}/" if key else ""

    def read() -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        pages = client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found.append(
                    ObjectInfo(
                        bucket, item["Key"], str(item.get("ETag", "")).strip('"'), item["Size"]
                    )
                )
        return found

    return _call(url, "listing", read, policy)


def download(info: ObjectInfo, handle: BinaryIO, policy: RetryPolicy = DEFAULT_POLICY) -> None:
    """Write one object's bytes into ``handle``: exactly the version ``info`` describes.

    The GET carries ``If-Match: <ETag>`` (or the VersionId), so a replaced object is
    never mixed with the old one.

    Raises
    ------
    ObjectChanged
        If the object was replaced since ``info`` was read.
    InputNotFound
        If it was deleted since.
    StoreError
        If access is denied or S3 cannot be reached.
    """
    pin = {"VersionId": info.version_id} if info.version_id else {"IfMatch": f'"{info.etag}"'}

    def read() -> None:
        handle.seek(0)
        handle.truncate()
        body = client().get_object(Bucket=info.bucket, Key=info.key, **pin)["Body"]
        try:
            for chunk in body.iter_chunks(CHUNK_BYTES):
                handle.write(chunk)
        finally:
            body.close()

    _call(info.url, "downloading", read, policy)


def _call(url: str, doing: str, action: Callable[[], T], policy: RetryPolicy) -> T:
    """Run ``action`` with retries; translate what botocore raises."""
    try:
        return with_retries(action, is_transient=is_transient, what=f"{doing} {url}", policy=policy)
    except boto_errors.ClientError as exc:
        code, status = error_code(exc), http_status(exc)
        what = f"{code}, HTTP {status}" if code != str(status) else f"HTTP {status}"
        if code in NOT_FOUND_CODES or status == 404:
            raise InputNotFound(code) from None
        if code in _CHANGED or status == 412:
            raise ObjectChanged(url) from None
        if code in _DENIED or status == 403:
            raise StoreError(denied_message(what, doing, url, anonymously=anonymous())) from None
        if is_transient(exc):
            raise StoreError(
                f"S3 still failing after {policy.attempts} attempts ({what}) {doing} {url}; "
                "try again later",
                transient=True,
            ) from None
        raise StoreError(f"S3 refused {doing} {url} ({what})") from None
    except CREDENTIAL_ERRORS as exc:
        raise StoreError(
            f"no usable AWS credentials ({type(exc).__name__}) {doing} {url}; set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or attach a role"
        ) from None
    except boto_errors.BotoCoreError as exc:
        raise StoreError(
            f"cannot reach S3 at {_shown_endpoint()} ({type(exc).__name__}) {doing} {url}; "
            "check AWS_ENDPOINT_URL, the region and the network",
            transient=is_transient(exc),  # not for a bad TLS certificate or parameter
        ) from None


def denied_message(what: str, doing: str, url: str, *, anonymously: bool) -> str:
    """Access denied, and what to do: find credentials, or give these ones the right."""
    bucket = split_url(url)[0]
    if anonymously:
        return (
            f"access denied ({what}) {doing} {url}: no AWS credentials were found, so S3 "
            f"was read anonymously, which only public buckets allow; set AWS_ACCESS_KEY_ID "
            f"and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or attach a role that may read "
            f"s3://{bucket}"
        )
    return f"access denied ({what}) {doing} {url}; {_CREDENTIALS_REMEDY} s3://{bucket}"


def _shown_endpoint() -> str:
    """The endpoint for a message, credentials masked; never raises."""
    try:
        return mask_url(endpoint())
    except Exception:  # the client itself could not be made
        return "the default S3 endpoint"
