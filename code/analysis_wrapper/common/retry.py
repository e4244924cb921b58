"""Retries with exponential backoff and full jitter, for transient store errors.

Each backend says what is transient (a reset connection, a 5xx, throttling) with a
predicate; everything else fails at once. The number of attempts is bounded, so a
store that stays down fails the job with its last error.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    Parameters
    ----------
    attempts : int
        Total tries, the first included.
    base_delay_s : float
        The cap of the first wait; each further wait's cap doubles.
    max_delay_s : float
        No single wait is longer than this.
    """

    attempts: int = 5
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def delay(self, retry: int) -> float:
        """A random wait before retry number ``retry`` (1-based), "full jitter" style."""
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1))
        return random.uniform(0, cap)


DEFAULT_POLICY = RetryPolicy()


def with_retries(
    action: Callable[[], T],
    *,
    is_transient: Callable[[BaseException], bool],
    what: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``action``, retrying it while it fails with a transient error.

    Parameters
    ----------
    action : callable
        What to do; called up to ``policy.attempts`` times.
    is_transient : callable
        Tells whether an exception is worth another try.
    what : str
        Names the operation in log lines (must hold no secret).
    policy : RetryPolicy
        Attempts and delays.
    sleep : callable
        Waits; replaceable so tests need not wait.

    Raises
    ------
    Exception
        The last error, once attempts are used up or at once when not transient.
    """
    retry = 0
    while True:
        try:
            return action()
        except Exception as exc:
            retry += 1
            if retry >= policy.attempts or not is_transient(exc):
                raise
            wait = policy.delay(retry)
            log.warning(
                "%s failed (%s); retry %d of %d in %.2f s",
                what,
                type(exc).__name__,
                retry,
                policy.attempts - 1,
                wait,
            )
            sleep(wait)
