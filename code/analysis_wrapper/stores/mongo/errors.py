"""pymongo's errors in one line each, and a ``DOCDB_HOST`` URI without its secrets.

Which errors are worth another try (a lost connection, an election, throttling), what
each means with its remedy, and how a URI or a server message is shown: the password
(raw and percent-decoded) and secret options masked wherever they appear, the text
flattened to one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote

from pymongo.errors import (
    AutoReconnect,
    ConfigurationError,
    ConnectionFailure,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from ...common.redact import mask_url

# Server error codes worth another try: network errors, elections, shutdown,
# interruption, and DocumentDB/Cosmos throttling (16500).
_TRANSIENT_CODES = frozenset(
    {6, 7, 89, 91, 134, 189, 262, 9001, 10058, 10107, 11600, 11602, 13435, 13436, 16500}
)
_AUTHENTICATION_FAILED = 18
_UNAUTHORIZED = 13

# Option values that are secrets; shown masked, never passed to a message.
_SECRET_OPTIONS = re.compile(
    r"(?P<name>(?:authMechanismProperties|tlsCertificateKeyFilePassword)=)(?P<value>[^&;#]*)",
    re.IGNORECASE,
)
_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://(?P<userinfo>[^/?#]*)@")


def is_transient(exc: BaseException) -> bool:
    """Tell whether a pymongo error is worth another try (network, election, throttling)."""
    if isinstance(exc, ConnectionFailure):  # AutoReconnect, NetworkTimeout, NotPrimary...
        return True
    if isinstance(exc, OperationFailure):
        labels = ("RetryableWriteError", "TransientTransactionError")
        return exc.code in _TRANSIENT_CODES or any(exc.has_error_label(x) for x in labels)
    return False


def explain(
    exc: BaseException, scrub: Callable[[str], str], database: str, *, read_only: bool
) -> str:
    """What went wrong and what to do, in one line without secrets.

    Parameters
    ----------
    exc : BaseException
        The pymongo (or BSON) error.
    scrub : callable
        Masks the store's secrets in a text (see :func:`scrub`).
    database : str
        The store's database, named in the remedy for a missing role.
    read_only : bool
        Whether the store only reads (the role it needs is ``read``, not ``readWrite``).
    """
    text = str(exc)
    if isinstance(exc, OperationFailure):
        details = exc.details or {}
        text = str(details.get("errmsg") or text.split(", full error:")[0])
        if exc.code == _AUTHENTICATION_FAILED:
            return (
                f"authentication failed (code 18: {scrub(one_line(text))}); check "
                "the user name and password in DOCDB_HOST (percent-encoded) and its "
                "authSource (admin for DocumentDB)"
            )
        if exc.code == _UNAUTHORIZED:
            role = "read" if read_only else "readWrite"
            return (
                f"not authorized (code 13: {scrub(one_line(text))}); give the "
                f"DOCDB_HOST user the {role} role on database {database}"
            )
        return f"{scrub(one_line(text))} (code {exc.code})"
    if isinstance(exc, AutoReconnect):
        # ServerSelectionTimeoutError repeats the timeouts and the whole topology.
        text = re.split(r" \(configured timeouts|, Timeout: ", text)[0]
        lost = not isinstance(exc, ServerSelectionTimeoutError)
        what = "the connection was lost" if lost else "no server answered"
        return (
            f"{what} ({scrub(one_line(text))}); check the host, port and TLS "
            "options in DOCDB_HOST, and that the database is running and reachable "
            "from this machine"
        )
    if isinstance(exc, ConfigurationError):
        return (
            f"invalid DOCDB_HOST ({scrub(one_line(text))}); write "
            "mongodb://user:password@host:port/?options with the user name and "
            "password percent-encoded"
        )
    return f"{type(exc).__name__}: {scrub(one_line(text))}"


def scrub(text: str, secrets: list[str]) -> str:
    """Mask URLs' credentials, secret options and each of ``secrets`` in ``text``."""
    text = mask_options(mask_url(text))
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def mask_options(text: str) -> str:
    """Replace the values of secret URI options with ``***``."""
    return _SECRET_OPTIONS.sub(r"\g<name>***", text)


def uri_option_names(uri: str) -> set[str]:
    """The lower-cased names of the options a URI sets (no parsing, no DNS)."""
    query = uri.partition("?")[2].partition("#")[0]
    return {part.partition("=")[0].lower() for part in re.split("[&;]", query) if part}


def uri_secrets(uri: str) -> list[str]:
    """The password (raw and decoded) and secret option values in ``uri``."""
    secrets: list[str] = []
    match = _USERINFO.match(uri)
    if match and ":" in match.group("userinfo"):
        password = match.group("userinfo").partition(":")[2]
        secrets += [password, unquote(password)]
    secrets += [m.group("value") for m in _SECRET_OPTIONS.finditer(uri)]
    # Longest first, so a secret inside another is not half-replaced; skip tiny ones,
    # which would mangle messages more than they could reveal.
    return sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with its white space folded to single spaces, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
