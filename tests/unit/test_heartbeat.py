"""The heartbeat: background renewals, loss detection, and a clean stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from analysis_wrapper.run.heartbeat import Heartbeat, RenewalPendingError
from analysis_wrapper.stores.claims import Claim, Claims, Owner
from analysis_wrapper.stores.sqlite import SqliteRecordStore

KEY = "ab" * 32


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def workers(tmp_path: Path, lease: float) -> tuple[Claims, Claims]:
    path = tmp_path / "records.sqlite"
    mine = Claims(SqliteRecordStore(path, "t"), Owner("here", 1, "mine"), lease)
    theirs = Claims(SqliteRecordStore(path, "t"), Owner("there", 2, "theirs"), lease)
    return mine, theirs


def test_heartbeat_renews_in_the_background(tmp_path: Path) -> None:
    """While a job runs, the stored lease keeps moving forward."""
    mine, _ = workers(tmp_path, lease=60)
    claim = mine.acquire(KEY).claim
    with Heartbeat(mine, claim, interval=0.02) as beat:
        wait_until(lambda: mine.store.get_claims([KEY])[KEY].heartbeat > claim.heartbeat)
        assert not beat.lost
    assert beat.claim.lease_expires > claim.lease_expires


def test_heartbeat_notices_a_takeover(tmp_path: Path) -> None:
    """Once another worker took the key, the next beat marks the claim lost; fence fails."""
    mine, theirs = workers(tmp_path, lease=60)
    claim = mine.acquire(KEY).claim
    expired = Claims(theirs.store, theirs.owner, 60, clock=lambda: time.time() + 3600)
    with Heartbeat(mine, claim, interval=0.02) as beat:
        assert expired.acquire(KEY).acquired
        wait_until(lambda: beat.lost)
        assert beat.fence() is None
    assert mine.store.get_claims([KEY])[KEY].owner.run_id == "theirs"


def test_no_renewal_after_exit_overwrites_the_final_state(tmp_path: Path) -> None:
    """A claim marked done right after the heartbeat stops stays done."""
    mine, _ = workers(tmp_path, lease=60)
    for round_ in range(20):
        key = f"{round_:02d}" * 32
        claim = mine.acquire(key).claim
        with Heartbeat(mine, claim, interval=0.001) as beat:
            time.sleep(0.005)
        assert mine.finish(beat.claim)
        time.sleep(0.005)
        assert mine.store.get_claims([key])[key].state == "done"


def test_many_heartbeats_share_a_few_threads(tmp_path: Path) -> None:
    """Twenty running jobs are renewed by one scheduling thread and a bounded pool."""
    mine, _ = workers(tmp_path, lease=60)
    claims = [mine.acquire(f"{n:02d}" * 32).claim for n in range(20)]
    Heartbeat(mine, claims[0]).__enter__().__exit__(None, None, None)  # threads started
    before = threading.active_count()
    beats = [Heartbeat(mine, claim, interval=0.02) for claim in claims]
    for beat in beats:
        beat.__enter__()
    try:
        assert threading.active_count() == before
        for claim in claims:
            wait_until(
                lambda c=claim: mine.store.get_claims([c.key])[c.key].heartbeat > c.heartbeat
            )
    finally:
        for beat in beats:
            beat.__exit__(None, None, None)


class HangingStore(SqliteRecordStore):
    """The real SQLite store, whose renewals of the keys in ``hung`` wait for ``unblock``."""

    def __init__(self, path: Path, table: str, hung: set[str]) -> None:
        super().__init__(path, table)
        self.hung = hung
        self.unblock = threading.Event()

    def replace_claim(self, claim: Claim, *, expected_epoch: int) -> bool:
        renewal = claim.state == "running" and claim.epoch == expected_epoch
        if renewal and claim.key in self.hung:
            self.unblock.wait(60)
        return super().replace_claim(claim, expected_epoch=expected_epoch)


def test_a_hung_renewal_delays_no_other_job(tmp_path: Path) -> None:
    """One job's store call hangs past its lease: it is lost; the other keeps renewing."""
    hung, healthy = "aa" * 32, "bb" * 32
    store = HangingStore(tmp_path / "records.sqlite", "t", {hung})
    claims = Claims(store, Owner("here", 1, "mine"), lease_seconds=1.5)
    stuck, fine = claims.acquire(hung).claim, claims.acquire(healthy).claim
    try:
        with Heartbeat(claims, stuck) as stuck_beat, Heartbeat(claims, fine) as fine_beat:
            wait_until(lambda: stuck_beat.lost, timeout=10)
            # The stuck renewal still hangs; the other job's renewals go on regardless.
            wait_until(
                lambda: (
                    store.get_claims([healthy])[healthy].lease_expires > fine.lease_expires + 0.5
                ),
                timeout=10,
            )
            assert not fine_beat.lost
            assert stuck_beat.fence() is None  # lost: it must not publish
            assert fine_beat.fence() is not None
    finally:
        store.unblock.set()


def test_a_fence_waits_at_most_its_deadline(tmp_path: Path) -> None:
    """The store does not answer a fence: within the lease that is a transient failure."""
    key = "cc" * 32
    store = HangingStore(tmp_path / "records.sqlite", "t", {key})
    claims = Claims(store, Owner("here", 1, "mine"), lease_seconds=60)
    beat = Heartbeat(claims, claims.acquire(key).claim, deadline=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(RenewalPendingError, match="did not confirm the claim"):
            beat.fence()
        assert time.monotonic() - started < 30  # it came back (a hang would block forever)
        assert not beat.lost  # the lease still runs: another try may succeed
    finally:
        store.unblock.set()
