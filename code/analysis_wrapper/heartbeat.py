"""Heartbeats: a running job's claim is renewed in the background until the job ends.

Every third of the lease, one thread per process renews the claim of each job running
in it. A renewal that finds the key taken over marks the job's claim lost; the job's
own fence before publishing and recording then stops it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from .claims import Claim, Claims

log = logging.getLogger(__name__)


class Heartbeat:
    """Renews a claim in the background while a job runs.

    Use as a context manager. :attr:`claim` is the latest renewed claim; :attr:`lost`
    becomes True once a renewal finds the key taken over (the job can then stop
    early; publishing is fenced either way). A renewal that fails for a store error
    is retried at the next beat: the lease has room for two misses. The renewals of
    every heartbeat in a process are made by one shared thread (:class:`_Renewer`),
    so a job does not pay for starting a thread.
    """

    def __init__(self, claims: Claims, claim: Claim, interval: float | None = None) -> None:
        self.claims = claims
        self.claim = claim
        self.interval = interval if interval is not None else claims.lease_seconds / 3
        self.lost = False
        self.due = 0.0
        self._stopped = False
        self._lock = threading.Lock()

    def __enter__(self) -> Heartbeat:
        _renewer().add(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Taking the lock waits out a renewal in flight; none starts afterwards, so
        # the caller's next write to the claim (done, failed) cannot be overwritten.
        with self._lock:
            self._stopped = True
        _renewer().remove(self)

    def fence(self) -> Claim | None:
        """Renew now, from the job's thread: the check before publishing and recording.

        Returns the renewed claim, or ``None`` once another worker holds the key.
        """
        return self._update(self.claims.renew)

    def count_attempt(self) -> Claim | None:
        """Record one more attempt (a transient failure being retried) on the claim."""
        return self._update(self.claims.still_attempting)

    def _update(self, write: Callable[[Claim], Claim | None]) -> Claim | None:
        with self._lock:
            if self.lost:
                return None
            renewed = write(self.claim)
            if renewed is None:
                self.lost = True
            else:
                self.claim = renewed
            return renewed

    def beat(self) -> None:
        """One background renewal (called by the shared renewer thread)."""
        with self._lock:
            if self._stopped or self.lost:
                return
            try:
                renewed = self.claims.renew(self.claim)
            except Exception as exc:  # a store hiccup: the next beat tries again
                log.warning("could not renew the claim on %s: %s", self.claim.key[:12], exc)
                return
            if renewed is None:
                self.lost = True
                log.warning(
                    "%s: the claim was taken over by another worker; this attempt "
                    "will not be published",
                    self.claim.label or self.claim.key[:12],
                )
                return
            self.claim = renewed


class _Renewer:
    """The one thread of a process that renews its running jobs' claims when due."""

    def __init__(self) -> None:
        self.pid = os.getpid()
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
            for beat in due:  # outside the condition: a slow store delays only renewals
                beat.beat()


_RENEWER: _Renewer | None = None
_RENEWER_LOCK = threading.Lock()


def _renewer() -> _Renewer:
    """Return the renewer of this process, started on first use (again in a forked child)."""
    global _RENEWER
    with _RENEWER_LOCK:
        if _RENEWER is None or _RENEWER.pid != os.getpid():
            _RENEWER = _Renewer()
        return _RENEWER
