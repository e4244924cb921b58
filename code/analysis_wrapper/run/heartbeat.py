"""Heartbeats: a running job's claim is renewed in the background until the job ends.

Every third of the lease, the renewals of the jobs running in a process are made
concurrently by a small pool of threads, so one slow store call delays only its own
job's renewal. A renewal is waited for at most a *deadline* (a quarter of the lease);
one that takes longer counts as missed, and the lease leaves room for two misses.

A job knows until when its claim is surely its own: the lease its last successful
renewal wrote. Past that moment, without a renewal, another worker may have taken the
key over, so the job's claim counts as lost: its fence before publishing and before
recording then fails, and it publishes nothing. A renewal that finds the key taken
over marks the claim lost at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from ..errors import TransientError
from ..stores.claims import Claim, Claims, Clock

log = logging.getLogger(__name__)

T = TypeVar("T")

RENEWAL_THREADS = 8
"""Renewals in flight at once in one process (a hung store call holds one thread)."""


class RenewalPendingError(TransientError):
    """A fence could not reach the claim store within its deadline; the lease still runs."""


class Heartbeat:
    """Renews a claim in the background while a job runs.

    Use as a context manager. :attr:`claim` is the latest renewed claim; :attr:`lost`
    becomes True once a renewal finds the key taken over, or once the lease ran out
    with no successful renewal. Publishing is fenced either way (:meth:`fence`).

    Parameters
    ----------
    claims : Claims
        The worker's claims (its store, owner and lease).
    claim : Claim
        The claim just acquired.
    interval : float, optional
        Seconds between renewals; a third of the lease by default.
    deadline : float, optional
        The longest a renewal is waited for; a quarter of the lease by default (it
        must stay below the interval, so a missed renewal is known before the next).
    clock : callable, optional
        Unix seconds, the clock the claims are written with.
    """

    def __init__(
        self,
        claims: Claims,
        claim: Claim,
        interval: float | None = None,
        deadline: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.claims = claims
        self.claim = claim
        self.interval = interval if interval is not None else claims.lease_seconds / 3
        self.deadline = deadline if deadline is not None else claims.lease_seconds / 4
        self.clock = clock or claims.clock
        self.valid_until = claim.lease_expires
        """Until when (Unix seconds) no other worker may take the key over."""
        self.lost = False
        self.due = 0.0
        self._stopped = False
        self._in_flight: Future[Claim | None] | None = None
        self._lock = threading.Lock()  # guards the fields above; never held during a call

    def __enter__(self) -> Heartbeat:
        _renewer().add(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._stopped = True
            in_flight = self._in_flight
        _renewer().remove(self)
        # A renewal still in flight could land after the caller marks the claim done or
        # failed and turn it back to running: wait it out, for at most the deadline.
        if in_flight is not None:
            with contextlib.suppress(Exception):  # its outcome no longer matters
                in_flight.result(timeout=self.deadline)

    def fence(self) -> Claim | None:
        """Renew now, from the job's thread: the check before publishing and recording.

        Returns
        -------
        Claim or None
            The renewed claim, or ``None`` once the claim is lost (taken over, or its
            lease ran out unrenewed).

        Raises
        ------
        RenewalPendingError
            If the store did not answer within the deadline while the lease still runs
            (a transient failure: the step can be tried again).
        Exception
            Whatever the claim store raised.
        """
        return self._renew_now(self.claims.renew)

    def count_attempt(self) -> Claim | None:
        """Record one more attempt (a transient failure being retried) on the claim."""
        return self._renew_now(self.claims.still_attempting)

    def _renew_now(self, write: Callable[[Claim], Claim | None]) -> Claim | None:
        with self._lock:
            if self.lost or self._expired():
                self._mark_lost("its lease ran out before it could be renewed")
                return None
            claim = self.claim
            wait = max(0.0, min(self.deadline, self.valid_until - self.clock()))
        future = _renewer().pool.submit(write, claim)
        try:
            renewed = future.result(timeout=wait)
        except FutureTimeout:
            with self._lock:
                if self._expired():
                    self._mark_lost("its lease ran out while the claim store did not answer")
                    return None
            raise RenewalPendingError(
                f"the claim store did not confirm the claim on {claim.key[:12]} within "
                f"{self.deadline:.1f} s"
            ) from None
        with self._lock:
            return self._apply(renewed)

    def beat(self) -> None:
        """One background renewal (run by the process's renewal threads)."""
        with self._lock:
            if self._stopped or self.lost:
                return
            claim = self.claim
        try:
            renewed = self.claims.renew(claim)
        except Exception as exc:  # a store hiccup: the next beat tries again
            log.warning("could not renew the claim on %s: %s", claim.key[:12], exc)
            return
        with self._lock:
            if not self._stopped:
                self._apply(renewed)

    def check(self) -> None:
        """Mark the claim lost if its lease ran out unrenewed (called at every beat)."""
        with self._lock:
            if not self.lost and not self._stopped and self._expired():
                self._mark_lost("its lease ran out: the claim store did not answer in time")

    def _start_beat(self, pool: _DaemonPool) -> None:
        """Submit a background renewal, unless the last one is still in flight."""
        with self._lock:
            if self._stopped or self.lost:
                return
            if self._in_flight is not None and not self._in_flight.done():
                log.warning(
                    "the claim on %s: a renewal is still waiting for the claim store",
                    self.claim.label or self.claim.key[:12],
                )
                return
            self._in_flight = pool.submit(self._beat_and_return)

    def _beat_and_return(self) -> Claim | None:
        self.beat()
        return self.claim

    def _apply(self, renewed: Claim | None) -> Claim | None:
        """Take a renewal's outcome (with the lock held)."""
        if self.lost:
            return None
        if renewed is None:
            self._mark_lost("the claim was taken over by another worker")
            return None
        if renewed.lease_expires >= self.valid_until:
            self.claim = renewed
            self.valid_until = renewed.lease_expires
        return self.claim

    def _expired(self) -> bool:
        return self.clock() >= self.valid_until

    def _mark_lost(self, why: str) -> None:
        if not self.lost:
            self.lost = True
            log.warning(
                "%s: %s; this attempt will not be published",
                self.claim.label or self.claim.key[:12],
                why,
            )


class _DaemonPool:
    """A few daemon threads that run calls and hand back futures.

    Unlike a ThreadPoolExecutor's, these threads never hold up the interpreter's exit:
    a store call that hangs for good must not keep a finished run from ending.
    """

    def __init__(self, threads: int, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        for number in range(threads):
            threading.Thread(target=self._work, name=f"{name}-{number}", daemon=True).start()

    def submit(self, call: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._calls.put((future, lambda: call(*args)))
        return future

    def _work(self) -> None:
        while True:
            future, call = self._calls.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to whoever waits for it
                future.set_exception(exc)


class _Renewer:
    """The thread of a process that starts its running jobs' renewals when due."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.pool = _DaemonPool(RENEWAL_THREADS, "claim-renewal")
        self._beats: set[Heartbeat] = set()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="claim-renewer", daemon=True)
        self._thread.start()

    def add(self, beat: Heartbeat) -> None:
        with self._changed:
            beat.due = time.monotonic() + beat.interval
            self._beats.add(beat)
            self._changed.notify()

    def remove(self, beat: Heartbeat) -> None:
        with self._changed:
            self._beats.discard(beat)
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._beats:
                    self._changed.wait()
                    continue
                now = time.monotonic()
                wait = min(beat.due for beat in self._beats) - now
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                due = [beat for beat in self._beats if beat.due <= now]
                for beat in due:
                    beat.due = now + beat.interval
            for beat in due:  # outside the condition; the calls run in the pool
                beat.check()
                beat._start_beat(self.pool)


_RENEWER: _Renewer | None = None
_RENEWER_LOCK = threading.Lock()


def _renewer() -> _Renewer:
    """Return the renewer of this process, started on first use (again in a forked child)."""
    global _RENEWER
    with _RENEWER_LOCK:
        if _RENEWER is None or _RENEWER.pid != os.getpid():
            _RENEWER = _Renewer()
        return _RENEWER
