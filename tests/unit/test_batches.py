"""read_in_batches: every value read once, in batches, the first alone, a few in flight."""

from __future__ import annotations

import threading
import time

import pytest

from analysis_wrapper.stores.batches import read_batches, read_in_batches


def test_nothing_to_read_makes_no_call() -> None:
    """No values, no batch."""
    calls: list[list[int]] = []
    assert read_in_batches([], lambda batch: calls.append(batch) or [], 50) == []
    assert calls == []


def test_results_come_in_batch_order_and_each_value_is_read_once() -> None:
    """Batches of the given size cover the values once; results keep the batches' order."""
    seen: list[list[int]] = []
    lock = threading.Lock()

    def read(batch: list[int]) -> list[int]:
        time.sleep(0.001 * (batch[0] % 3))  # finish out of order
        with lock:
            seen.append(batch)
        return [value * 10 for value in batch]

    values = list(range(230))
    assert read_in_batches(values, read, 50) == [value * 10 for value in values]
    assert sorted(len(batch) for batch in seen) == [30, 50, 50, 50, 50]
    assert sorted(value for batch in seen for value in batch) == values


def test_the_first_batch_runs_alone_then_a_bounded_number_at_once() -> None:
    """No other batch starts before the first returns; later ones overlap, at most in_flight."""
    first_done = threading.Event()
    running = 0
    most = 0
    lock = threading.Lock()
    started_early: list[list[int]] = []

    def read(batch: list[int]) -> list[int]:
        nonlocal running, most
        if batch[0] == 0:
            time.sleep(0.05)
            first_done.set()
            return batch
        if not first_done.is_set():
            started_early.append(batch)
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return batch

    assert read_in_batches(list(range(100)), read, 10, in_flight=3) == list(range(100))
    assert started_early == []
    assert 1 < most <= 3


def test_a_failing_batch_raises_its_error() -> None:
    """The error of a batch reaches the caller; nothing is returned half done."""

    def read(batch: list[int]) -> list[int]:
        if 70 in batch:
            raise OSError("batch with 70 failed")
        return batch

    with pytest.raises(OSError, match="batch with 70"):
        read_in_batches(list(range(100)), read, 10)


def test_a_failing_first_batch_starts_no_other() -> None:
    """A server that cannot be reached fails the first batch; no thread asks again."""
    calls: list[list[int]] = []

    def read(batch: list[int]) -> list[int]:
        calls.append(batch)
        raise ConnectionError("no server")

    with pytest.raises(ConnectionError):
        read_in_batches(list(range(100)), read, 10)
    assert calls == [list(range(10))]


def test_batches_cut_by_the_caller_are_read_as_given() -> None:
    """read_batches takes batches of any sizes (cut to fit a URL) and keeps their order."""
    batches = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10]]
    seen: list[list[int]] = []
    lock = threading.Lock()

    def read(batch: list[int]) -> list[int]:
        with lock:
            seen.append(batch)
        return [-value for value in batch]

    assert read_batches(batches, read) == [-value for batch in batches for value in batch]
    assert sorted(seen) == sorted(batches)
