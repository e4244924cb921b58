"""Keep secrets out of messages: mask the credentials of connection strings."""

from __future__ import annotations

import re

# Greedy up to the last '@' before the path: a password may hold an unencoded '@'.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s'\"]*)@")


def mask_url(text: str) -> str:
    """Replace the ``user:password@`` part of every URL in ``text`` with ``***@``.

    >>> mask_url("mongodb://alice:s3cret@db.example:27017/analysis")
    'mongodb://***@db.example:27017/analysis'
    """
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
