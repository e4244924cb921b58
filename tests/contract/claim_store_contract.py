"""The contract every claim store meets, run unchanged against each backend.

A backend binds it by subclassing :class:`ClaimStoreContract` in a ``test_*.py`` module
and providing one fixture, ``claim_stores``: a callable that opens a new handle on one
fresh, empty store each time it is called (every handle sees the same claims; the
fixture closes them after the test). Separate handles stand for separate workers.

A backend whose takeover is not a true compare-and-set (the AIND DocDB REST API) sets
``atomic_replace = False`` and states what it gives instead in its own tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

import pytest

from analysis_wrapper.errors import FencedOutError, RecordExistsError
from analysis_wrapper.stores.base import RecordQuery, RecordStore
from analysis_wrapper.stores.claims import Claim, Claims, ClaimStore, Failure, Owner
from contract.record_store_contract import key_of, make_record, with_inputs

OpenStore = Callable[[], ClaimStore]


class FakeClock:
    """A clock the test moves by hand, shared by every worker of a test."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def worker(store: ClaimStore, name: str, clock: FakeClock, lease: float = 60.0) -> Claims:
    """A worker named ``name`` (a host that is not this one, so only leases decide)."""
    return Claims(store, Owner(f"host-{name}", 4242, f"run-{name}"), lease, clock)


def records_of(claims: Claims) -> RecordStore:
    """The record store a worker's claims live in (every claim store is one)."""
    return cast(RecordStore, claims.store)


def taken_over(claim_stores: OpenStore, key: str) -> tuple[Claims, Claim, Claims, Claim]:
    """Worker a claims ``key`` (epoch 1) and stalls; b takes it over (epoch 2)."""
    clock = FakeClock()
    a, b = worker(claim_stores(), "a", clock), worker(claim_stores(), "b", clock)
    stalled = a.acquire(key).claim
    clock.advance(120)
    current = b.acquire(key).claim
    assert (stalled.epoch, current.epoch) == (1, 2)
    return a, stalled, b, current


def record_by(key: str, writer: str, **extra: Any) -> dict[str, Any]:
    """The record ``writer`` would write for ``key``."""
    return make_record(key, {"by": writer}, **extra)


def sample_claim(key: str, epoch: int = 1, **changes: object) -> Claim:
    """A claim with every field set to something a round trip could get wrong."""
    claim = Claim(
        key=key,
        owner=Owner("node-7.cluster", 31337, "0f" * 16, "boot:4026531836"),
        epoch=epoch,
        state="running",
        claimed_at=1_800_000_000.25,
        heartbeat=1_800_000_030.5,
        lease_expires=1_800_000_150.5,
        attempts=3,
        failure=None,
        label="job_00ü7.json",
    )
    return replace(claim, **changes)  # type: ignore[arg-type]


class ClaimStoreContract:
    """Claims: insert-if-absent, compare-and-set on the epoch, failure memory."""

    atomic_replace = True
    """False for a backend whose replace is last-writer-wins (see the module docstring)."""

    # --- the four primitives -------------------------------------------------------

    def test_insert_is_insert_if_absent(self, claim_stores: OpenStore) -> None:
        """The first insert wins; a second insert of the key is refused and changes nothing."""
        store = claim_stores()
        key = key_of("insert")
        first = sample_claim(key)
        assert store.insert_claim(first) is True
        assert store.insert_claim(sample_claim(key, epoch=9, label="other")) is False
        assert store.get_claims([key]) == {key: first}

    def test_claim_round_trips_every_field(self, claim_stores: OpenStore) -> None:
        """A claim read back (through another handle) equals the one written, failure too."""
        key = key_of("round trip")
        claim = sample_claim(
            key, state="failed", failure=Failure("ValueError", "bad value: 'ü' " + "x" * 500)
        )
        assert claim_stores().insert_claim(claim)
        assert claim_stores().get_claims([key]) == {key: claim}

    def test_replace_is_compare_and_set_on_epoch(self, claim_stores: OpenStore) -> None:
        """replace_claim writes only when the stored epoch is the expected one."""
        store = claim_stores()
        key = key_of("cas")
        store.insert_claim(sample_claim(key, epoch=1))
        newer = sample_claim(key, epoch=2, label="newer")
        assert store.replace_claim(newer, expected_epoch=1) is True
        assert store.get_claims([key])[key] == newer
        stale = sample_claim(key, epoch=2, label="stale writer")
        assert store.replace_claim(stale, expected_epoch=1) is False
        assert store.get_claims([key])[key] == newer

    def test_replace_of_a_missing_claim_is_refused(self, claim_stores: OpenStore) -> None:
        """replace_claim never creates a claim."""
        store = claim_stores()
        key = key_of("missing")
        assert store.replace_claim(sample_claim(key, epoch=2), expected_epoch=1) is False
        assert store.get_claims([key]) == {}

    def test_get_claims_in_batches(self, claim_stores: OpenStore) -> None:
        """Many keys at once: exactly the existing ones come back, unknown keys are absent."""
        store = claim_stores()
        keys = [key_of(f"batch {n}") for n in range(700)]
        for key in keys[::3]:
            assert store.insert_claim(sample_claim(key))
        asked = [*keys, key_of("never claimed"), keys[0]]
        found = store.get_claims(asked)
        assert sorted(found) == sorted(keys[::3])
        assert all(claim.key == key for key, claim in found.items())

    def test_list_claims(self, claim_stores: OpenStore) -> None:
        """list_claims returns every claim and nothing else."""
        store = claim_stores()
        assert store.list_claims() == []
        keys = {key_of(f"list {n}") for n in range(5)}
        for key in keys:
            store.insert_claim(sample_claim(key))
        assert {claim.key for claim in store.list_claims()} == keys

    def test_claims_and_records_do_not_mix(self, claim_stores: OpenStore) -> None:
        """A claim is not a record and a record is not a claim, under the same key."""
        store = claim_stores()
        key = key_of("both")
        store.insert_claim(sample_claim(key))
        records = store  # every claim store is also the record store of its backend
        assert records.get_many([key]) == {}  # type: ignore[attr-defined]
        records.put(make_record(key_of("record only")))  # type: ignore[attr-defined]
        assert store.get_claims([key_of("record only")]) == {}
        assert [claim.key for claim in store.list_claims()] == [key]

    # --- the rules, through Claims -------------------------------------------------

    def test_live_claim_is_refused_and_expired_one_taken_over(
        self, claim_stores: OpenStore
    ) -> None:
        """A live claim stops others; once its lease expires, a takeover raises the epoch."""
        clock = FakeClock()
        a, b = worker(claim_stores(), "a", clock), worker(claim_stores(), "b", clock)
        key = key_of("lease")
        mine = a.acquire(key, label="job.json")
        assert mine.acquired and mine.claim.epoch == 1
        refused = b.acquire(key)
        assert not refused.acquired
        assert "host-a" in refused.reason and "in progress elsewhere" in refused.reason
        clock.advance(61)
        taken = b.acquire(key)
        assert taken.acquired and taken.claim.epoch == 2 and taken.claim.attempts == 2
        assert "taking over from host-a" in taken.reason
        assert b.store.get_claims([key])[key].owner.run_id == "run-b"

    def test_renewal_keeps_a_claim_alive(self, claim_stores: OpenStore) -> None:
        """A worker that renews keeps its key past the first lease."""
        clock = FakeClock()
        a, b = worker(claim_stores(), "a", clock), worker(claim_stores(), "b", clock)
        key = key_of("renew")
        claim = a.acquire(key).claim
        for _ in range(4):
            clock.advance(40)
            renewed = a.renew(claim)
            assert renewed is not None and renewed.lease_expires == clock.now + 60
            claim = renewed
            assert not b.acquire(key).acquired

    def test_fencing_stops_a_worker_whose_claim_was_taken(self, claim_stores: OpenStore) -> None:
        """After a takeover the old owner can neither renew, finish nor fail its claim."""
        clock = FakeClock()
        a, b = worker(claim_stores(), "a", clock), worker(claim_stores(), "b", clock)
        key = key_of("fence")
        stalled = a.acquire(key).claim
        clock.advance(120)
        current = b.acquire(key).claim
        assert a.renew(stalled) is None
        assert a.finish(stalled) is False
        assert a.fail(stalled, Failure("RuntimeError", "late")) is False
        assert b.store.get_claims([key])[key] == current
        assert b.finish(current) is True
        assert b.store.get_claims([key])[key].state == "done"

    def test_failure_is_remembered_until_retry_failed(self, claim_stores: OpenStore) -> None:
        """A failed claim keeps class, message and attempts; only retry_failed takes it."""
        clock = FakeClock()
        a, b = worker(claim_stores(), "a", clock), worker(claim_stores(), "b", clock)
        key = key_of("failure")
        claim = a.acquire(key).claim
        counted = a.still_attempting(claim)
        assert counted is not None and counted.attempts == 2
        assert a.fail(counted, Failure("OSError", "disk full"))
        stored = b.store.get_claims([key])[key]
        assert stored.state == "failed" and stored.attempts == 2
        assert stored.failure == Failure("OSError", "disk full")
        clock.advance(10_000)  # an old failure is still a failure
        refused = b.acquire(key)
        assert not refused.acquired and "OSError: disk full" in refused.reason
        retried = b.acquire(key, retry_failed=True)
        assert retried.acquired and retried.claim.attempts == 3
        assert retried.claim.failure is None and retried.claim.epoch == 2

    def test_done_and_released_claims_may_be_taken(self, claim_stores: OpenStore) -> None:
        """A finished or released claim does not block the next worker."""
        clock = FakeClock()
        a, b = worker(claim_stores(), "a", clock), worker(claim_stores(), "b", clock)
        done, released = key_of("done"), key_of("released")
        assert a.finish(a.acquire(done).claim)
        assert a.release(a.acquire(released).claim)
        assert b.acquire(done).acquired
        assert b.acquire(released).acquired

    def test_racing_workers_each_key_won_once(self, claim_stores: OpenStore) -> None:
        """Eight workers race for the same keys, fresh and expired.

        Fresh keys: one winner each, on every backend (insert-if-absent). Expired keys:
        one winner each where replace is a compare-and-set; elsewhere (check, write,
        verify) more than one may believe it won, but exactly one holds the key
        afterwards and every other "winner" fails its next renewal (the fence).
        """
        clock = FakeClock()
        fresh = [key_of(f"race {n}") for n in range(15)]
        expired = [key_of(f"expired {n}") for n in range(15)]
        old = worker(claim_stores(), "old", clock)
        for key in expired:
            assert old.acquire(key).acquired
        clock.advance(3600)
        workers = [worker(claim_stores(), f"w{n}", clock) for n in range(8)]
        won: dict[str, list[tuple[Claims, Claim]]] = {key: [] for key in [*fresh, *expired]}
        lock = threading.Lock()
        start = threading.Barrier(len(workers))

        def race(claims: Claims) -> None:
            start.wait()
            for key in [*fresh, *expired]:
                outcome = claims.acquire(key)
                if outcome.acquired:
                    with lock:
                        won[key].append((claims, outcome.claim))

        threads = [threading.Thread(target=race, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert {key: len(won[key]) for key in fresh} == dict.fromkeys(fresh, 1)
        stored = workers[0].store.get_claims(expired)
        if self.atomic_replace:
            assert {key: len(won[key]) for key in expired} == dict.fromkeys(expired, 1)
            assert {claim.epoch for claim in stored.values()} == {2}
            return
        for key in expired:
            assert won[key], f"nobody took over {key[:12]}"
            holders = [claims for claims, claim in won[key] if claims.renew(claim) is not None]
            assert len(holders) == 1, f"{len(holders)} workers still hold {key[:12]}"
            assert stored[key].owner == holders[0].owner

    # --- the record write, fenced by the claim epoch ---------------------------------

    @pytest.mark.parametrize("replace_record", [False, True])
    def test_fenced_put_of_a_stalled_writer_is_refused(
        self, claim_stores: OpenStore, replace_record: bool
    ) -> None:
        """Taken over before its put, the old owner's fenced write changes nothing.

        Without a record yet, and with the newer owner's record stored: FencedOutError
        naming the key and both epochs, with ``replace`` or without.
        """
        key = key_of(f"stalled {replace_record}")
        a, stalled, b, current = taken_over(claim_stores, key)
        with pytest.raises(FencedOutError) as raised:
            records_of(a).put(record_by(key, "a"), replace=replace_record, epoch=stalled.epoch)
        error = raised.value
        assert (error.key, error.epoch, error.current_epoch) == (key, 1, 2)
        assert error.written is False and error.transient is False
        assert key[:12] in str(error) and "epoch 1" in str(error) and "epoch 2" in str(error)
        assert "not written" in str(error)
        assert records_of(b).get(key) is None
        records_of(b).put(record_by(key, "b"), epoch=current.epoch)
        with pytest.raises(FencedOutError):
            records_of(a).put(record_by(key, "a"), replace=replace_record, epoch=stalled.epoch)
        assert records_of(a).get(key) == record_by(key, "b")
        assert b.finish(current)

    def test_fenced_put_needs_the_claim_running_at_that_epoch(
        self, claim_stores: OpenStore
    ) -> None:
        """No claim, a later epoch, or a claim ended (done, released, failed): refused."""
        clock = FakeClock()
        a = worker(claim_stores(), "a", clock)
        store = records_of(a)
        unclaimed = key_of("never claimed")
        with pytest.raises(FencedOutError, match="no claim") as raised:
            store.put(record_by(unclaimed, "a"), epoch=1)
        assert raised.value.current_epoch is None
        mine = a.acquire(key_of("mine")).claim
        with pytest.raises(FencedOutError):
            store.put(record_by(mine.key, "a"), epoch=mine.epoch + 1)
        ends = (a.finish, a.release, lambda claim: a.fail(claim, Failure("E", "m")))
        for number, end in enumerate(ends):
            claim = a.acquire(key_of(f"ended {number}")).claim
            assert end(claim)
            with pytest.raises(FencedOutError):
                store.put(record_by(claim.key, "a"), replace=True, epoch=claim.epoch)
            assert store.get(claim.key) is None
        assert store.get_many([unclaimed, mine.key]) == {}
        store.put(record_by(unclaimed, "unfenced"))  # epoch=None: as before, no claim needed
        assert store.get(unclaimed) == record_by(unclaimed, "unfenced")

    def test_fenced_put_by_the_current_owner_writes(self, claim_stores: OpenStore) -> None:
        """The owner at the current epoch inserts, and replaces an older owner's record."""
        key = key_of("current owner")
        clock = FakeClock()
        a, b = worker(claim_stores(), "a", clock), worker(claim_stores(), "b", clock)
        first = a.acquire(key).claim
        records_of(a).put(record_by(key, "a"), epoch=first.epoch)
        assert records_of(b).get(key) == record_by(key, "a")
        assert a.finish(first)  # done, yet b may take it over (say the record was orphaned)
        second = b.acquire(key).claim
        assert second.epoch == 2
        with pytest.raises(RecordExistsError):
            records_of(b).put(record_by(key, "b"), epoch=second.epoch)
        records_of(b).put(record_by(key, "b"), replace=True, epoch=second.epoch)
        assert records_of(a).get(key) == record_by(key, "b")
        with pytest.raises(FencedOutError):  # the older owner cannot take it back
            records_of(a).put(record_by(key, "a"), replace=True, epoch=first.epoch)
        assert records_of(a).get(key) == record_by(key, "b")

    def test_fenced_put_retried_at_the_same_epoch_is_accepted(
        self, claim_stores: OpenStore
    ) -> None:
        """A fenced replace tried again at the same epoch (its reply lost) is accepted."""
        key = key_of("retried")
        clock = FakeClock()
        a = worker(claim_stores(), "a", clock)
        claim = a.acquire(key).claim
        records_of(a).put(record_by(key, "a", name="first try"), replace=True, epoch=1)
        records_of(a).put(record_by(key, "a"), replace=True, epoch=1)
        assert records_of(a).get(key) == record_by(key, "a")
        renewed = a.renew(claim)  # renewals keep the epoch: the fence still holds
        assert renewed is not None
        records_of(a).put(record_by(key, "a", name="after renewal"), replace=True, epoch=1)
        assert records_of(a).get(key) == record_by(key, "a", name="after renewal")

    def test_fenced_records_read_back_exactly_as_put(self, claim_stores: OpenStore) -> None:
        """get, get_many, find and find_by_inputs show no trace of the epoch."""
        key = key_of("read back")
        a = worker(claim_stores(), "a", FakeClock())
        claim = a.acquire(key).claim
        record = with_inputs(record_by(key, "a"), ["s3://bucket/in"])
        records_of(a).put(record, epoch=claim.epoch)
        store = records_of(a)
        assert store.get(key) == record
        assert store.get_many([key]) == {key: record}
        assert store.find(RecordQuery(parameters={"by": "a"})) == [record]
        assert store.find_by_inputs([["s3://bucket/in"]]) == {("s3://bucket/in",): [record]}
