"""The boto3 S3 client that results and inputs use, and what its errors mean.

One place decides how a client is made (botocore's own retries off, so that the
caller's :func:`~analysis_wrapper.common.retry.with_retries` policy alone decides; bounded
timeouts; a fast parser of S3's timestamps) and how a botocore error reads: its code
and HTTP status, whether another try may cure it, and one line that names the remedy
and never a credential.

boto3 is imported here; only the S3 modules import this one, lazily.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Any

import boto3  # type: ignore[import-untyped]
import botocore.exceptions as boto_errors  # type: ignore[import-untyped]
import botocore.session  # type: ignore[import-untyped]
from botocore import UNSIGNED
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.utils import parse_timestamp as botocore_parse_timestamp  # type: ignore[import-untyped]

TRANSIENT_CODES = frozenset(
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
"""Error codes of throttling and of a failing server: worth another try."""

DENIED_CODES = frozenset(
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
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
CREDENTIAL_ERRORS = (
    boto_errors.NoCredentialsError,
    boto_errors.PartialCredentialsError,
    boto_errors.CredentialRetrievalError,
)
_CREDENTIALS_REMEDY = (
    "check the AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
    "or the role) and that they may read and write"
)


def new_client(max_pool_connections: int, *, unsigned: bool = False) -> Any:
    """A new S3 client from the usual chain (``AWS_ENDPOINT_URL``, credentials, region).

    botocore retries nothing: the caller's retry policy decides alone. An
    ``unsigned`` client sends anonymous requests, which public buckets answer.
    """
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},  # ours retry
        max_pool_connections=max_pool_connections,
        connect_timeout=10,
        read_timeout=120,
        **({"signature_version": UNSIGNED} if unsigned else {}),
    )
    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )
    return boto3.session.Session(botocore_session=session).client("s3", config=config)


_UTC_TIMESTAMP = re.compile(
    r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.([0-9]{1,9}))?(?:Z|\+00:00)"
)
"""ISO 8601 in UTC, to the second or finer: how S3 writes ``LastModified`` in listings."""

_zero_offset_zones: dict[tuple[str, str], tzinfo | None] = {}
"""The zone botocore's parser gives a UTC timestamp, by local zone names (``None``: it varies)."""


def parse_timestamp(value: Any) -> Any:
    """Parse a timestamp of a response exactly as botocore does, S3's usual form faster.

    botocore's parser (dateutil's) costs about 30 µs; a listing has a timestamp per
    object. ``2026-12-02T14:20:13.000Z`` and the like are read with
    :meth:`datetime.fromisoformat` instead, into the same datetime, zone included
    (dateutil gives ``tzlocal()`` where the local zone is named UTC, ``tzutc()``
    elsewhere). Anything else (RFC 1123 headers, epoch numbers, other offsets) goes
    to botocore's parser.
    """
    if type(value) is str and (match := _UTC_TIMESTAMP.fullmatch(value)):
        names = time.tzname
        zone = _zero_offset_zones.get(names, ...)
        if zone is ...:
            zone = _zero_offset_zones[names] = _zero_offset_zone()
        if zone is not None:
            try:
                naive = datetime.fromisoformat(value[:19])
            except ValueError:
                pass  # not a date (month 13, say): botocore's error
            else:
                fraction = match.group(1) or ""
                micro = int(fraction[:6].ljust(6, "0"))  # truncated, as dateutil does
                return naive.replace(microsecond=micro, tzinfo=zone)
    return botocore_parse_timestamp(value)


def _zero_offset_zone() -> tzinfo | None:
    """The zone botocore's parser gives UTC timestamps here, if the same all year."""
    winter, summer = (
        botocore_parse_timestamp(f"2001-{month}-01T00:00:00Z") for month in ("01", "07")
    )
    zone = winter.tzinfo
    same = type(zone) is type(summer.tzinfo) and zone == summer.tzinfo
    utc = winter.utcoffset() == summer.utcoffset() == timedelta(0)
    return zone if same and utc else None


def has_credentials() -> bool:
    """Whether boto3's usual chain finds credentials (variables, profile, role).

    A chain that fails (a profile that does not exist, say) counts as having
    credentials: the signed client then reports that error, with its remedy.
    """
    try:
        return boto3.session.Session().get_credentials() is not None
    except boto_errors.BotoCoreError:
        return True


def is_unsigned(client: Any) -> bool:
    """Whether ``client`` sends anonymous requests (made with ``unsigned=True``)."""
    return client.meta.config.signature_version is UNSIGNED


def error_code(exc: Any) -> str:
    """The error code of a botocore ``ClientError``."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: Any) -> int:
    """The HTTP status of a botocore ``ClientError`` (0 if unknown)."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_transient(exc: BaseException) -> bool:
    """Worth another try: no connection, a reset or timeout, a 5xx, or throttling."""
    if isinstance(exc, boto_errors.ClientError):
        status = http_status(exc)
        return error_code(exc) in TRANSIENT_CODES or status >= 500 or status == 429
    if isinstance(exc, boto_errors.SSLError):
        return False  # a certificate problem does not go away by itself
    return isinstance(
        exc, (boto_errors.ConnectionError, boto_errors.HTTPClientError, ConnectionError)
    )


def describe_error(
    exc: Exception, doing: str, bucket: str, endpoint: Callable[[], str], attempts: int
) -> str | None:
    """What went wrong and the remedy, in words that hold no secret.

    Parameters
    ----------
    exc : Exception
        What boto3 (or reading a local file to upload) raised.
    doing : str
        What was being done, for "... while <doing>".
    bucket : str
        The bucket the request was for.
    endpoint : callable
        Gives the endpoint, credentials masked (only called when the message names it).
    attempts : int
        How many tries the retry policy made of a transient failure.

    Returns
    -------
    str or None
        The message; ``None`` for an error that is none of boto3's or the file's.
    """
    if isinstance(exc, boto_errors.ClientError):
        code, status = error_code(exc), http_status(exc)
        what = f"{code}, HTTP {status}" if code != str(status) else f"HTTP {status}"
        if code == "NoSuchBucket":
            return (
                f"bucket {bucket!r} does not exist at {endpoint()} ({what}) while "
                f"{doing}; create the bucket or fix ANALYSIS_BUCKET"
            )
        if code == "InvalidBucketName":
            return f"{bucket!r} is not a valid bucket name ({what}); fix ANALYSIS_BUCKET"
        if code in DENIED_CODES or status == 403:
            return f"access denied ({what}) while {doing}; {_CREDENTIALS_REMEDY} s3://{bucket}"
        if is_transient(exc):
            return (
                f"S3 at {endpoint()} still failing after {attempts} attempts "
                f"({what}) while {doing}; try again later"
            )
        return f"S3 refused {doing} ({what}); check ANALYSIS_BUCKET and the bucket"
    if isinstance(exc, CREDENTIAL_ERRORS):
        return (
            f"no usable AWS credentials ({type(exc).__name__}) while {doing}; set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or attach a role"
        )
    if is_transient(exc):
        return (
            f"cannot reach S3 at {endpoint()} ({type(exc).__name__}) after "
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
