"""Keep secrets out of messages: mask the credentials of connection strings."""

from __future__ import annotations

import re

# Greedy up to the last '@' before the path: a password may hold an unencoded '@'.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s'\"]*)@")


# user:password@host with no scheme (a DOCDB_HOST written without mongodb://).
_BARE_USERINFO = re.compile(r"(?P<before>^|[\s'\"=(])[^\s'\"/@:]+:[^\s'\"/]*@")


def mask_url(text: str) -> str:
    """Replace the ``user:password@`` part of every URL in ``text`` with ``***@``.

    >>> mask_url("mongodb://alice:s3cret@db.example:27017/analysis")
    'mongodb://***@db.example:27017/analysis'
    """
    masked = _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _BARE_USERINFO.sub(lambda m: f"{m.group('before')}***@", masked)
