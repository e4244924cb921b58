"""Reading many keys from a document store: in batches, several batches in flight.

A plan looks up every job's record, claim and input URLs. One query per key pays one
round trip per key; a batch of keys (``$in``) pays one per batch; and since a round
trip to a remote server is mostly waiting, a few batches in flight at once divide
what is left by their number (BENCHMARKS.md measures both through a link with added
latency). The first batch runs alone: it opens the client and its connection, and a
server that cannot be reached fails once, with its retries, rather than once per
thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

BATCH_SIZE = 50
"""Values per ``$in`` query on MongoDB and DocumentDB (keys of records and claims, input URLs).

On MongoDB and DocumentDB, where the round trip is most of a small query's cost, fifty
keys make one round trip instead of fifty, and :func:`read_in_batches` keeps
a few batches in flight at once. Fifty is also the quickest size measured on
SecantusDB (the test server), which checks each document it finds against the whole
``$in`` list, so its cost per key grows with the batch: 0.06 ms at 50, 0.26 ms at 500
and 4.4 ms at 10,000, against 0.5 ms for one query per key (BENCHMARKS.md).
"""

IN_FLIGHT = 4
"""Batches read at once after the first (within pymongo's pool of 100 connections and
requests' 10 per host)."""


def read_in_batches(
    values: Sequence[T],
    read: Callable[[list[T]], list[R]],
    size: int,
    in_flight: int = IN_FLIGHT,
) -> list[R]:
    """Everything ``read`` returns for ``values`` cut into batches of ``size``.

    See :func:`read_batches`.
    """
    batches = [list(values[start : start + size]) for start in range(0, len(values), size)]
    return read_batches(batches, read, in_flight)


def read_batches(
    batches: Sequence[list[T]],
    read: Callable[[list[T]], list[R]],
    in_flight: int = IN_FLIGHT,
) -> list[R]:
    """Everything ``read`` returns for each of ``batches``: the first alone, then a few at once.

    Parameters
    ----------
    batches : sequence of lists
        What to look up (keys, URLs), cut into batches by the caller (by count, or to
        fit in a URL).
    read : callable
        Reads one batch (and retries it by itself); must be safe to call from
        several threads at once, as a pymongo collection or a requests session is.
    in_flight : int
        Batches read at once after the first.

    Returns
    -------
    list
        The results of every batch, in the order of the batches.

    Raises
    ------
    Exception
        What ``read`` raised for the first batch that failed (the batches already
        in flight finish first).
    """
    if not batches:
        return []
    results = read(batches[0])
    if len(batches) == 1:
        return results
    workers = min(in_flight, len(batches) - 1)
    with ThreadPoolExecutor(workers, thread_name_prefix="aw-batch-read") as pool:
        for batch_results in pool.map(read, batches[1:]):
            results.extend(batch_results)
    return results
