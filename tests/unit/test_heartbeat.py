"""The heartbeat: background renewals, loss detection, and a clean stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from analysis_wrapper.claims import Claims, Owner
from analysis_wrapper.heartbeat import Heartbeat
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


def test_many_heartbeats_share_one_thread(tmp_path: Path) -> None:
    """Ten running jobs are renewed by one thread, each on its own schedule."""
    import threading

    mine, _ = workers(tmp_path, lease=60)
    claims = [mine.acquire(f"{n:02d}" * 32).claim for n in range(10)]
    before = threading.active_count()
    beats = [Heartbeat(mine, claim, interval=0.02) for claim in claims]
    for beat in beats:
        beat.__enter__()
    try:
        assert threading.active_count() <= before + 1
        for claim in claims:
            wait_until(
                lambda c=claim: mine.store.get_claims([c.key])[c.key].heartbeat > c.heartbeat
            )
    finally:
        for beat in beats:
            beat.__exit__(None, None, None)
