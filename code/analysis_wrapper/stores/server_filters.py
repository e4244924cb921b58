"""The part of a record query that a document store evaluates on the server.

MongoDB/DocumentDB (through pymongo) and the AIND DocDB REST API both take a filter of
dotted equalities on the parameters. Each backend pushes only the conditions the
server evaluates at least as broadly as :meth:`RecordQuery.matches`, a prefilter that
never drops a matching record; ``matches`` then decides in Python, so every backend
returns exactly the reference's records. What is safe to push differs:

- pymongo (:func:`mongo_filter`): scalars whose server equality is exact, under names
  a dotted path can address;
- the REST API (:func:`docdb_api_filter`): the same kind of scalars within the
  limits of a 64-bit integer and a short string, as many as fit in
  :data:`URL_FILTER_BUDGET` characters, because the filter travels in the URL; for
  the same reason, keys looked up with ``$in`` go in batches that fit
  (:func:`url_sized_batches`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

from .base import PARAMETERS_PATH, RecordQuery

PARAMETERS_FIELD = ".".join(str(step) for step in PARAMETERS_PATH)
"""The dotted path of a record's parameters."""

URL_FILTER_BUDGET = 6000
"""Most URL characters a REST API ``find`` filter may take (API Gateway allows 8,192)."""

_MAX_BATCH = 500
_EXACT_INT_LIMIT = 2**53  # beyond this, some servers compare int and double inexactly
_MAX_PUSHED_STRING = 256
_INT64 = 2**63


def mongo_filter(query: RecordQuery) -> dict[str, Any]:
    """The server-side part of ``query``: dotted equality on exactly comparable scalars.

    Names with ``.`` or ``$`` (which a dotted path cannot address), and values whose
    equality differs on the server (lists and dicts; integers beyond 2**53), are left
    to :meth:`RecordQuery.matches`.
    """
    condition: dict[str, Any] = {}
    for name, value in query.parameters.items():
        if not name or any(c in name for c in ".$\x00"):
            continue
        if _exact_on_server(value):
            condition[f"{PARAMETERS_FIELD}.{name}"] = value
    return condition


def _exact_on_server(value: Any) -> bool:
    """Whether server equality on ``value`` never misses a record that matches it."""
    if value is None or isinstance(value, str | bool | float):
        return True
    return isinstance(value, int) and abs(value) <= _EXACT_INT_LIMIT


def docdb_api_filter(query: RecordQuery) -> dict[str, Any]:
    """Conditions a document store evaluates at least as broadly as ``query.matches``.

    Only scalars under plain names: MongoDB equality on a scalar also matches an array
    holding it and ``null`` also matches a missing field, both of which the Python
    check removes afterwards; it compares numbers by value and never ``true`` with
    ``1``, as the reference does. Lists and objects (whose MongoDB equality depends on
    key order) and names with ``.`` or a leading ``$`` (which MongoDB reads as paths or
    operators) are checked in Python only.
    """
    conditions: dict[str, Any] = {}
    used = 0
    for name, value in query.parameters.items():
        if not name or "." in name or name.startswith("$") or "\x00" in name:
            continue
        if not (
            value is None
            or isinstance(value, bool)
            or (isinstance(value, int) and -_INT64 <= value < _INT64)
            or (isinstance(value, float) and math.isfinite(value))
            or (isinstance(value, str) and len(value) <= _MAX_PUSHED_STRING)
        ):
            continue
        path = f"{PARAMETERS_FIELD}.{name}"
        cost = len(quote_plus(json.dumps({path: value})))
        if used + cost > URL_FILTER_BUDGET:
            continue
        conditions[path] = value
        used += cost
    return conditions


def url_sized_batches(keys: list[str]) -> Iterator[list[str]]:
    """Split ``keys`` so each batch's ``$in`` filter fits in the URL budget."""
    batch: list[str] = []
    used = 0
    for key in keys:
        cost = len(quote_plus(json.dumps(key))) + len(quote_plus(", "))
        if batch and (used + cost > URL_FILTER_BUDGET or len(batch) >= _MAX_BATCH):
            yield batch
            batch, used = [], 0
        batch.append(key)
        used += cost
    if batch:
        yield batch
