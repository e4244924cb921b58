"""The AIND DocDB REST API's failures in one line each, with no credential in them.

Which failures are worth another try (connection trouble, timeouts, 408, 429, 5xx;
never a TLS verification failure), which reply means "this ``_id`` exists" (409, or an
error quoting MongoDB's E11000), what each means with its remedy, and how a server
message is shown: its first line, cut short, with the credentials in use masked.
botocore's own DEBUG log of a signed request is kept from showing the session token.

requests and botocore are imported inside the functions that need them, as in
:mod:`.store`, so that importing either module loads no client.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from ...common.redact import mask_url

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
AWS_CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and "
    "AWS_DEFAULT_REGION; in Code Ocean, attach the AWS credentials secret"
)
_MIN_SECRET_LENGTH = 8
_SESSION_TOKEN_LINE = re.compile(r"(?im)^(x-amz-security-token:).*$")


class DuplicateId(Exception):
    """The API said a document with this ``_id`` exists."""


def is_transient(exc: BaseException) -> bool:
    """Connection trouble, timeouts, 408/429 and 5xx; never TLS verification failures."""
    import requests  # type: ignore[import-untyped,unused-ignore]

    if isinstance(exc, requests.exceptions.SSLError):
        return False
    if isinstance(
        exc,
        requests.exceptions.ConnectionError
        | requests.exceptions.Timeout
        | requests.exceptions.ChunkedEncodingError,
    ):
        return True
    return isinstance(exc, requests.exceptions.HTTPError) and status(exc) in TRANSIENT_STATUS


def is_duplicate(exc: BaseException) -> bool:
    """Whether an error reply says the ``_id`` exists (409, or any status quoting E11000)."""
    code = status(exc)
    return code == 409 or (code is not None and "E11000" in server_message(exc))


def status(exc: Any) -> int | None:
    """The HTTP status of an error reply, if there was a reply."""
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def server_message(exc: Any) -> str:
    """The ``message`` of an error reply (API Gateway's shape), or its text."""
    response = getattr(exc, "response", None)
    if response is None:
        return ""
    try:
        body = response.json()
    except ValueError:
        return str(response.text or "")
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return json.dumps(body)[:500]


def describe(where: str, exc: Exception, size: int, attempts: int, secrets: list[str]) -> str:
    """One line naming what failed and the remedy; no secret in it.

    Parameters
    ----------
    where : str
        ``record store <url>: <action>``.
    exc : Exception
        What the client raised, once retries were over.
    size : int
        The bytes of the record being written (named when the API finds it too large).
    attempts : int
        How many tries the retry policy made of a transient failure.
    secrets : list of str
        The credentials in use, masked wherever a server message quotes them.
    """
    import requests
    from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
        NoCredentialsError,
    )

    if isinstance(exc, requests.exceptions.SSLError):
        return (
            f"{where} failed: the server's TLS certificate could not be verified; set "
            "REQUESTS_CA_BUNDLE to a CA bundle that includes its issuer"
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return f"{where} timed out ({attempts} attempts); check DOCDB_HOST and the network"
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.RetryError):
        return (
            f"{where} failed: cannot connect ({attempts} attempts); check DOCDB_HOST "
            "and the network"
        )
    if isinstance(exc, NoCredentialsError):
        return f"{where} failed: no AWS credentials to sign with; {AWS_CREDENTIALS_HINT}"
    if isinstance(exc, requests.exceptions.HTTPError):
        return _http_message(where, exc, size, attempts, secrets)
    if isinstance(exc, ValueError):  # the reply was not JSON
        return (
            f"{where} failed: the reply is not JSON; check that DOCDB_HOST names the AIND DocDB API"
        )
    return f"{where} failed: {type(exc).__name__}: {scrub(str(exc), secrets)}"


def _http_message(where: str, exc: Any, size: int, attempts: int, secrets: list[str]) -> str:
    code = status(exc)
    said = scrub(server_message(exc), secrets)
    got = f"HTTP {code}" + (f": {said}" if said else "")
    if code == 403:
        return (
            f"{where} refused ({got}): the AWS credentials or region are wrong or may "
            f"not write here, or the path does not exist; {AWS_CREDENTIALS_HINT}; "
            "check DOCDB_VERSION, DOCDB_DATABASE and DOCDB_COLLECTION"
        )
    if code == 401:
        return f"{where} refused ({got}); {AWS_CREDENTIALS_HINT}"
    if code == 404:
        return (
            f"{where} failed ({got}): no such path; check DOCDB_HOST, DOCDB_VERSION "
            "(v1 or v2), DOCDB_DATABASE and DOCDB_COLLECTION"
        )
    if code == 413:
        return (
            f"{where} refused ({got}): the record is {size / 1e6:.1f} MB, over the API's "
            "payload limit (about 10 MB); keep large outputs in result files, not in "
            "the record"
        )
    if code == 414:
        return f"{where} refused ({got}): the request URL is too long for the API"
    if code in TRANSIENT_STATUS:
        return (
            f"{where} failed ({got}) after {attempts} attempts; "
            "the API is unavailable, try again later"
        )
    return f"{where} refused ({got})"


def scrub(text: str, secrets: list[str]) -> str:
    """First line, at most 200 characters, with ``secrets`` and URL credentials masked."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    for secret in secrets:
        if len(secret) >= _MIN_SECRET_LENGTH:  # a shorter one would garble words
            line = line.replace(secret, "***")
    line = mask_url(line)
    return line if len(line) <= 200 else line[:197] + "..."


class _HideSessionToken(logging.Filter):
    """Mask the session token in the canonical request botocore logs at DEBUG level."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's arguments; never drop the record."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SESSION_TOKEN_LINE.sub(r"\1***", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def hide_session_tokens_in_botocore_logs() -> None:
    """Install :class:`_HideSessionToken` on botocore's signing logger, once."""
    signing_log = logging.getLogger("botocore.auth")
    if not any(isinstance(f, _HideSessionToken) for f in signing_log.filters):
        signing_log.addFilter(_HideSessionToken())
