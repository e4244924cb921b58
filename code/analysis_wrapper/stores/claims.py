"""Claims: one worker at a time runs a key; a crashed or stalled worker's job is taken over.

Before a job runs, its worker *claims* the key in a claims table or collection beside
the records. A claim names its owner (host, pid, run id), an *epoch*, a lease expiry
and a heartbeat. The rules, the same for every record store:

- **Insert if absent.** The first worker to insert the claim owns it, at epoch 1.
- **Lease.** The owner renews the lease while it works (a heartbeat every third of the
  lease). Another worker sees a live claim and skips the job ("in progress elsewhere").
- **Takeover.** A claim whose lease expired, whose owner process no longer exists on
  this machine, or that was released or finished (its record is missing: the job runs
  again) may be taken over by a compare-and-set on its epoch: the winner writes epoch
  + 1, every other contender's write matches nothing and fails.
- **Fencing.** Before it publishes and before it writes the record, the owner renews
  its claim, again by compare-and-set on its epoch. A worker whose claim was taken
  over while it stalled finds a newer epoch and gives up: it cannot publish.
- **Failure memory.** A job that fails leaves its claim ``failed`` with the error's
  class, its message and the attempt count. It runs again only with
  ``--retry_failed 1``.

A backend provides four primitives (:class:`ClaimStore`); everything else is here, so
the semantics cannot drift between backends. Times are the workers' wall clocks (Unix
seconds): workers must agree on the time to well within a lease.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol, cast, runtime_checkable

log = logging.getLogger(__name__)

ClaimState = Literal["running", "failed", "done", "released"]
CLAIM_STATES: tuple[ClaimState, ...] = ("running", "failed", "done", "released")

DEFAULT_LEASE_SECONDS = 120.0
"""How long a claim lives without a heartbeat; a crashed worker's jobs wait this long."""

MAX_MESSAGE_CHARS = 2000
"""A failure message is cut to this length on the claim."""

Clock = Callable[[], float]


@dataclass(frozen=True)
class Owner:
    """Who holds a claim.

    Parameters
    ----------
    host : str
        The host name, for people.
    pid : int
        The process id.
    run_id : str
        One run of the wrapper (every process of a run shares it).
    process_space : str
        Identifies the kernel boot and pid namespace the pid belongs to; two owners
        with the same ``process_space`` can check each other's pid.
    """

    host: str
    pid: int
    run_id: str
    process_space: str = ""

    @classmethod
    def of_this_process(cls, run_id: str) -> Owner:
        """The owner this process writes into its claims."""
        return cls(socket.gethostname(), os.getpid(), run_id, _process_space())

    def describe(self) -> str:
        """``host pid 123 (run 0a1b2c3d)``."""
        return f"{self.host} pid {self.pid} (run {self.run_id[:8]})"

    def is_gone(self) -> bool:
        """True when this owner's process visibly no longer exists.

        Only answerable from the same kernel boot and pid namespace; anywhere else the
        answer is False and the lease decides.
        """
        if not self.process_space or self.process_space != _process_space():
            return False
        if self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # it exists, under another user
        return False


@dataclass(frozen=True)
class Failure:
    """Why a job failed, as kept on its claim."""

    error_class: str
    message: str


@dataclass(frozen=True)
class Claim:
    """One key's claim, as stored.

    Parameters
    ----------
    key : str
        The job key (the claim's ``_id``).
    owner : Owner
        Who holds (or last held) it.
    epoch : int
        Incremented by every takeover; fencing compares it.
    state : {"running", "failed", "done", "released"}
        ``running`` while a worker holds it; ``done`` once the record is written;
        ``failed`` after a failure; ``released`` when a worker let go unfinished.
    claimed_at, heartbeat, lease_expires : float
        Unix seconds: when this epoch began, its last renewal, when it expires.
    attempts : int
        How many times the job was started under any epoch.
    failure : Failure or None
        The last failure, while ``state`` is ``failed``.
    label : str
        The job file's name, for people reading ``status``.
    """

    key: str
    owner: Owner
    epoch: int
    state: ClaimState
    claimed_at: float
    heartbeat: float
    lease_expires: float
    attempts: int = 1
    failure: Failure | None = None
    label: str = ""

    def is_live(self, now: float) -> bool:
        """True while a worker holds it and its lease has not expired."""
        return self.state == "running" and self.lease_expires > now

    def to_document(self) -> dict[str, Any]:
        """The stored form: a flat JSON object with ``_id``."""
        return {
            "_id": self.key,
            "owner": {
                "host": self.owner.host,
                "pid": self.owner.pid,
                "run_id": self.owner.run_id,
                "process_space": self.owner.process_space,
            },
            "epoch": self.epoch,
            "state": self.state,
            "claimed_at": self.claimed_at,
            "heartbeat": self.heartbeat,
            "lease_expires": self.lease_expires,
            "attempts": self.attempts,
            "failure": None
            if self.failure is None
            else {"error_class": self.failure.error_class, "message": self.failure.message},
            "label": self.label,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Claim:
        """Read the stored form back (unknown fields are ignored)."""
        owner = document.get("owner") or {}
        failure = document.get("failure")
        state = document.get("state")
        return cls(
            key=str(document["_id"]),
            owner=Owner(
                str(owner.get("host", "")),
                int(owner.get("pid", 0)),
                str(owner.get("run_id", "")),
                str(owner.get("process_space", "")),
            ),
            epoch=int(document["epoch"]),
            state=cast(ClaimState, state if state in CLAIM_STATES else "released"),
            claimed_at=float(document.get("claimed_at", 0.0)),
            heartbeat=float(document.get("heartbeat", 0.0)),
            lease_expires=float(document.get("lease_expires", 0.0)),
            attempts=int(document.get("attempts", 1)),
            failure=Failure(str(failure.get("error_class", "")), str(failure.get("message", "")))
            if isinstance(failure, Mapping)
            else None,
            label=str(document.get("label", "")),
        )


@runtime_checkable
class ClaimStore(Protocol):
    """The four primitives a record store provides for claims.

    Claims live beside the records (a table or collection of their own) and never
    mix with them. :meth:`insert_claim` and :meth:`replace_claim` must each be atomic.
    """

    def get_claims(self, keys: Iterable[str]) -> dict[str, Claim]:
        """Return the claims among ``keys`` that exist, by key, in few round trips."""
        ...

    def insert_claim(self, claim: Claim) -> bool:
        """Insert ``claim`` unless one with its key exists; True when inserted."""
        ...

    def replace_claim(self, claim: Claim, *, expected_epoch: int) -> bool:
        """Overwrite the stored claim with ``claim`` if its epoch is ``expected_epoch``.

        Returns
        -------
        bool
            True when it was overwritten; False when the stored epoch differs or no
            claim exists (someone else won).
        """
        ...

    def list_claims(self) -> list[Claim]:
        """Return every claim (for ``status`` and ``gc``)."""
        ...


def takeover_reason(
    existing: Claim,
    now: float,
    *,
    retry_failed: bool,
    owner_gone: bool = False,
    forced: bool = False,
) -> str | None:
    """Say why ``existing`` may be taken over, or return ``None`` when it may not.

    The single rule every backend and the plan use. Pure: whether the owner's process
    is gone (:meth:`Owner.is_gone`, which looks at this machine) is the caller's
    ``owner_gone``. ``forced`` (``--force 1``) only changes the words for a claim that
    is done: its record is being replaced on purpose, not found missing.
    """
    if existing.state == "done":
        if forced:
            return "--force 1: running it again"
        return "its earlier run finished but left no usable record"
    if existing.state == "released":
        return f"{existing.owner.describe()} let it go unfinished"
    if existing.state == "failed":
        return "retrying a failed job (--retry_failed 1)" if retry_failed else None
    if existing.lease_expires <= now:
        ago = now - existing.heartbeat
        return f"taking over from {existing.owner.describe()}: no heartbeat for {ago:.0f} s"
    if owner_gone:
        return f"taking over from {existing.owner.describe()}: that process no longer exists"
    return None


def owner_is_gone(claim: Claim) -> bool:
    """Whether a running claim's owner process visibly no longer exists (looks at /proc)."""
    return claim.state == "running" and claim.owner.is_gone()


def describe_claim(claim: Claim, now: float) -> str:
    """A phrase for the plan and the log: who holds it, or how it failed."""
    if claim.state == "failed" and claim.failure is not None:
        return (
            f"failed {age_text(now - claim.heartbeat)} ago after {claim.attempts} attempt(s) "
            f"on {claim.owner.describe()}: {claim.failure.error_class}: {claim.failure.message}"
        )
    started, beat = age_text(now - claim.claimed_at), age_text(now - claim.heartbeat)
    return (
        f"in progress elsewhere: {claim.owner.describe()}, started {started} ago, "
        f"last heartbeat {beat} ago"
    )


def age_text(seconds: float) -> str:
    """A duration for people: ``42 s``, ``17 min``, ``3.5 h``."""
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Acquired:
    """The outcome of :meth:`Claims.acquire`.

    Parameters
    ----------
    claim : Claim
        Ours when ``acquired``; otherwise the one that stopped us.
    acquired : bool
        Whether this worker now holds the key.
    reason : str
        Why we hold it (new, or the takeover's reason) or why we do not.
    """

    claim: Claim
    acquired: bool
    reason: str


@dataclass
class Claims:
    """Claims taken by one worker process, on one :class:`ClaimStore`.

    Parameters
    ----------
    store : ClaimStore
        Where the claims are.
    owner : Owner
        This worker.
    lease_seconds : float
        How long a claim lives without renewal.
    clock : callable
        Unix time in seconds (tests pass their own).
    """

    store: ClaimStore
    owner: Owner
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    clock: Clock = field(default=time.time)

    def acquire(
        self, key: str, *, label: str = "", retry_failed: bool = False, forced: bool = False
    ) -> Acquired:
        """Claim ``key``: insert, or take over a claim the rules let go.

        Never waits: a live claim held elsewhere comes back as not acquired. ``forced``
        says the job runs with ``--force 1`` (see :func:`takeover_reason`).
        """
        for _ in range(5):  # each loop loses only to a contender that made progress
            now = self.clock()
            fresh = Claim(
                key, self.owner, 1, "running", now, now, now + self.lease_seconds, 1, None, label
            )
            if self.store.insert_claim(fresh):
                return Acquired(fresh, True, "claimed")
            existing = self.store.get_claims([key]).get(key)
            if existing is None:
                continue  # deleted between the two calls: try inserting again
            why = takeover_reason(
                existing,
                now,
                retry_failed=retry_failed,
                owner_gone=owner_is_gone(existing),
                forced=forced,
            )
            if why is None:
                return Acquired(existing, False, describe_claim(existing, now))
            ours = replace(
                fresh, epoch=existing.epoch + 1, attempts=existing.attempts + 1, failure=None
            )
            if self.store.replace_claim(ours, expected_epoch=existing.epoch):
                log.info("%s: %s (epoch %d)", label or key[:12], why, ours.epoch)
                return Acquired(ours, True, why)
        latest = self.store.get_claims([key]).get(key)
        if latest is None:
            raise RuntimeError(f"claim for {key} keeps disappearing; is something deleting claims?")
        return Acquired(latest, False, describe_claim(latest, self.clock()))

    def renew(self, claim: Claim) -> Claim | None:
        """Extend the lease of a claim we hold; ``None`` when it is no longer ours.

        This is also the fence: called before publishing and before writing the
        record, it fails once another worker has taken the key over.
        """
        now = self.clock()
        renewed = replace(claim, heartbeat=now, lease_expires=now + self.lease_seconds)
        return renewed if self.store.replace_claim(renewed, expected_epoch=claim.epoch) else None

    def still_attempting(self, claim: Claim) -> Claim | None:
        """Count one more attempt (a transient failure retried) and renew the lease."""
        return self.renew(replace(claim, attempts=claim.attempts + 1))

    def finish(self, claim: Claim) -> bool:
        """Mark the claim done (after the record is written); False if no longer ours."""
        return self._end(claim, "done", None)

    def fail(self, claim: Claim, failure: Failure) -> bool:
        """Mark the claim failed with ``failure``; False if no longer ours."""
        message = failure.message[:MAX_MESSAGE_CHARS]
        return self._end(claim, "failed", Failure(failure.error_class, message))

    def release(self, claim: Claim) -> bool:
        """Let go of a claim unfinished (interrupted): anyone may take it at once."""
        return self._end(claim, "released", None)

    def release_unfinished(self, keys: Iterable[str]) -> int:
        """Release the claims this run still holds on ``keys``; count this run's released ones.

        For an interrupted run: a job stopped mid-way released its own claim, but one
        whose worker was stopped before it could (a process terminated, a Dask worker
        shut down) still holds its key. Those claims of this run (``owner.run_id``) still
        running are released; the count is every claim of this run on ``keys`` that ends
        up released.
        """
        count = 0
        for claim in self.store.get_claims(list(keys)).values():
            if claim.owner.run_id != self.owner.run_id:
                continue
            released = claim.state == "released"
            if released or (claim.state == "running" and self.release(claim)):
                count += 1
        return count

    def _end(self, claim: Claim, state: ClaimState, failure: Failure | None) -> bool:
        now = self.clock()
        ended = replace(claim, state=state, heartbeat=now, lease_expires=now, failure=failure)
        return self.store.replace_claim(ended, expected_epoch=claim.epoch)


@lru_cache(maxsize=1)
def _process_space() -> str:
    """The kernel boot and pid namespace of this process (Linux), else the host name."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return f"host:{socket.gethostname()}"
    return f"{boot}:{namespace}"
