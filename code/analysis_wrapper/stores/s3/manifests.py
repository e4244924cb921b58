"""Many manifests checked at once on S3: seek listings, several in flight.

A plan asks whether the manifest of every recorded job exists. One HEAD per
manifest pays one round trip each, so this module lists instead. The manifest keys
(``<folder>/manifest.json``) are grouped by bucket and sorted, then cut into
contiguous chunks, and a few chunks are resolved at once (the store has one
thread-safe client). A chunk is resolved by seeking:

1. LIST at most :data:`PAGE` keys that start with the chunk's common prefix and
   sort after the first unresolved target less its last character, so the page
   begins at that target or at the first key after the place it would have.
2. Every target that sorts at or before the page's last key is answered from the
   page (it exists if and only if it is listed); when the page is the listing's
   last, every target left is answered too. Then seek to the next unresolved target.
   "Sorts" holds in each order the server's pages may have come in: S3's (bytes)
   and a tree's (folder by folder, as SeaweedFS lists). Until a page shows which, a
   target is answered only if both orders agree on it (for job folders, whose
   names have the same length, they always do); otherwise it is left to a later
   page, or to a HEAD.

A dense chunk (its targets close together, as when a plan's jobs are most of the
store) therefore costs one LIST per ``PAGE / files-per-folder`` targets. When the
pages of a chunk answer fewer than :data:`SPARSE_TARGETS` targets each on average,
the rest of the chunk is checked with one HEAD each instead: a LIST that answers
one target costs a round trip like a HEAD, but carries up to a thousand keys and
costs S3 twelve times a HEAD's price. Chunks still run several at once then.

A bucket whose listing is refused other than for not existing (no ``s3:ListBucket``
permission, say) is checked with :meth:`~.s3.S3ResultStore.has_manifest` per
location, so each answer, and each error, is that method's; so is an S3 Express
directory bucket, which lists keys in no order and takes no ``StartAfter``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from itertools import groupby, pairwise
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import botocore.exceptions as boto_errors  # type: ignore[import-untyped]

from ...common.redact import mask_url
from ..batches import read_batches
from ..manifest import MANIFEST_NAME
from .client import error_code, is_transient

T = TypeVar("T")

PAGE = 1000
"""Keys per LIST: the most S3 returns in one page."""

IN_FLIGHT = 8
"""Chunks resolved at once (within the client's pool of connections)."""

MIN_CHUNK = 100
"""The fewest targets per chunk (below that, a chunk boundary costs more LISTs)."""

SPARSE_TARGETS = 10
"""Targets a page must answer on average for listing to beat one HEAD per target."""

_BUCKET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")  # as :mod:`.store` checks it

_DIRECTORY_BUCKET = "--x-s3"
"""How an S3 Express directory bucket's name ends: it lists keys unsorted, so never seek."""

Target = tuple[str, str]
"""A manifest to look for: ``(bucket, object key)``."""

Orders = frozenset[str]
"""The orders a server may list keys in, as far as its pages tell."""

BYTES, TREE = "bytes", "tree"
"""S3's order (of the keys' bytes), and a tree's (folder by folder, as SeaweedFS lists).

In a tree's order each folder's entries are sorted and a folder's whole content comes
where its name sorts, so ``a/b/c`` comes before ``a/b-c`` (in bytes, after it)."""

BOTH: Orders = frozenset({BYTES, TREE})


class _Store(Protocol):
    """What this module uses of :class:`~.s3.S3ResultStore`."""

    @property
    def url(self) -> str: ...

    def has_manifest(self, location: str) -> bool | None: ...

    def _client(self) -> Any: ...

    def _retried(self, action: Callable[[], T], what: str) -> T: ...

    def _translated(self, doing: str, bucket: str) -> AbstractContextManager[None]: ...


def find_manifests(
    store: _Store, locations: Iterable[str], in_flight: int = IN_FLIGHT
) -> dict[str, bool | None]:
    """Tell for each location whether ``<location>/manifest.json`` exists.

    Parameters
    ----------
    store : S3ResultStore
        Its client, retry policy and error translation are used.
    locations : iterable of str
        Records' locations, in any bucket; repeats are checked once.
    in_flight : int
        Chunks resolved at once.

    Returns
    -------
    dict
        Each location to ``True`` or ``False``, or ``None`` when it is not ``s3://``
        (another kind of store); a bucket name no bucket can have gives ``False``.

    Raises
    ------
    StoreError
        If S3 stays unreachable or refuses what :meth:`has_manifest` would not ignore.
    """
    answers: dict[str, bool | None] = {}
    wanted: dict[Target, list[str]] = {}
    for location in locations:
        parts = urlsplit(location)
        if parts.scheme != "s3":
            answers[location] = None
            continue
        bucket, folder = parts.netloc, parts.path.strip("/")
        if not _BUCKET_NAME.match(bucket):
            answers[location] = False  # no bucket can have that name
            continue
        object_key = f"{folder}/{MANIFEST_NAME}" if folder else MANIFEST_NAME
        wanted.setdefault((bucket, object_key), []).append(location)
    chunks = _chunks(sorted(wanted), in_flight)

    def resolve(chunk: list[Target]) -> list[tuple[Target, bool]]:
        return _resolve_chunk(store, chunk, lambda target: wanted[target][0])

    for target, exists in read_batches(chunks, resolve, in_flight):
        for location in wanted[target]:
            answers[location] = exists
    return answers


def _chunks(targets: list[Target], in_flight: int) -> list[list[Target]]:
    """Contiguous runs of sorted targets, one bucket each, enough to keep a few in flight.

    A run longer than the limit is split where the character after its common prefix
    changes, so each chunk lists under a longer prefix (S3 lists the same keys
    either way; moto's server sorts every key under the prefix at each LIST).
    """
    by_bucket: dict[str, list[str]] = {}
    for bucket, name in targets:
        by_bucket.setdefault(bucket, []).append(name)
    limit = max(MIN_CHUNK, min(PAGE, math.ceil(len(targets) / max(1, in_flight))))
    return [
        [(bucket, name) for name in run]
        for bucket, names in by_bucket.items()
        for run in _split(names, limit)
    ]


def _split(names: list[str], limit: int) -> list[list[str]]:
    """``names`` (sorted, distinct) cut by the character after their common prefix, recursively."""
    if len(names) <= limit:
        return [names]
    depth = len(_common_prefix(names[0], names[-1]))
    runs: list[list[str]] = []
    for _, run in groupby(names, key=lambda name: name[depth : depth + 1]):
        runs += _split(list(run), limit)
    return runs


def _resolve_chunk(
    store: _Store, chunk: list[Target], location_of: Callable[[Target], str]
) -> list[tuple[Target, bool]]:
    """Answer every target of ``chunk`` (one bucket, sorted) by seek listings."""
    bucket = chunk[0][0]
    names = [name for _, name in chunk]
    prefix = _common_prefix(names[0], names[-1])
    doing = f"looking for {len(names)} manifest(s) under {mask_url(f's3://{bucket}/{prefix}')}"
    found: list[bool] = []
    answered = pages = 0
    resume = asked = ""
    orders = BOTH
    with store._translated(doing, bucket):
        while len(found) < len(names) and not bucket.endswith(_DIRECTORY_BUCKET):
            if pages and answered < SPARSE_TARGETS * pages:
                break  # sparse: the pages answered too few targets each
            if pages and max(resume, names[len(found)][:-1]) == asked:
                break  # the same LIST again would answer nothing new
            asked = max(resume, names[len(found)][:-1])
            try:
                keys, truncated = _list_page(store, bucket, prefix, asked)
            except boto_errors.ClientError as exc:
                if is_transient(exc):
                    raise
                if error_code(exc) == "NoSuchBucket":
                    found += [False] * (len(names) - len(found))
                break  # listing refused (no s3:ListBucket, say): as has_manifest does
            orders = _orders_of(asked, keys, orders)
            if not orders:
                break  # listed in no order known: one HEAD each
            before = len(found)
            found += _answered(names[before:], keys, truncated, asked, orders)
            # Seek past what was listed, unless that would pass the next target.
            later = len(found) < len(names) and truncated and keys
            resume = keys[-1] if later and _follows(names[len(found)], keys[-1], orders) else ""
            pages += 1
            answered += len(found) - before
        # One HEAD each for the rest, exactly as has_manifest answers.
        found += [bool(store.has_manifest(location_of(target))) for target in chunk[len(found) :]]
    return list(zip(chunk, found, strict=True))


def _answered(
    names: list[str], keys: list[str], truncated: bool, after: str, orders: Orders
) -> list[bool]:
    """Whether each of the first ``names`` a page covers is in it (the rest: not covered).

    ``keys`` is a page listed after ``after`` (under a prefix every name starts with),
    in each of ``orders`` as far as can be told. It covers the names that follow
    ``after`` up to its last key in every one of them, and every name that follows
    ``after`` when the page ends the listing.
    """
    present = set(keys)
    last = keys[-1] if truncated and keys else None
    covered = 0
    for name in names:
        if not _follows(name, after, orders) or (
            last is not None and not _within(name, last, orders)
        ):
            break
        covered += 1
    return [name in present for name in names[:covered]]


def _orders_of(after: str, keys: list[str], orders: Orders) -> Orders:
    """Those of ``orders`` a page listed after ``after`` can have been listed in."""
    kept = set()
    for order in orders:
        one = frozenset({order})
        if not keys or (
            _follows(keys[0], after, one)
            and all(not _within(key, previous, one) for previous, key in pairwise(keys))
        ):
            kept.add(order)
    return frozenset(kept)


def _follows(name: str, key: str, orders: Orders) -> bool:
    """Whether a listing after ``key`` would hold ``name``, in every one of ``orders``.

    In a tree's order, a listing after ``key`` skips what lies under ``key/``.
    """
    if BYTES in orders and name <= key:
        return False
    return TREE not in orders or (
        name.split("/") > key.split("/") and not name.startswith(key + "/")
    )


def _within(name: str, last: str, orders: Orders) -> bool:
    """Whether ``name`` sorts at or before ``last`` in every one of ``orders``."""
    if BYTES in orders and name > last:
        return False
    return TREE not in orders or name.split("/") <= last.split("/")


def _list_page(store: _Store, bucket: str, prefix: str, start_after: str) -> tuple[list[str], bool]:
    """One LIST: up to :data:`PAGE` keys under ``prefix`` after ``start_after``."""
    reply = store._retried(
        lambda: store._client().list_objects_v2(
            Bucket=bucket, Prefix=prefix, StartAfter=start_after, MaxKeys=PAGE
        ),
        f"listing {mask_url(f's3://{bucket}/{prefix}')}",
    )
    keys = [str(entry["Key"]) for entry in reply.get("Contents", [])]
    return keys, bool(reply.get("IsTruncated"))


def _common_prefix(first: str, last: str) -> str:
    """The longest string both start with (of sorted strings, every one between too)."""
    length = 0
    for a, b in zip(first, last, strict=False):
        if a != b:
            break
        length += 1
    return first[:length]
