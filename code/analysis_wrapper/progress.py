"""Progress over the jobs of a run: a bar on a terminal, plain log lines elsewhere.

In Code Ocean, in a pipeline or under a scheduler, stderr is a log file, where a bar
would be noise; there a line says how far the run is every ``interval_s`` seconds, and
once at the end.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType
from typing import Any, TextIO

log = logging.getLogger(__name__)

PACKAGE_LOGGER = "analysis_wrapper"


class JobProgress:
    """Count finished jobs and show how far the run is.

    Parameters
    ----------
    total : int
        The number of jobs that will run.
    stream : text stream, optional
        Where the bar goes; ``sys.stderr`` by default. A bar is drawn only when the
        stream is a terminal.
    interval_s : float
        Seconds between log lines when there is no terminal.
    clock : callable
        A monotonic clock, replaceable in tests.
    """

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.clock = clock
        self.started = clock()
        self._last_line = self.started
        self._bar: Any = None
        self._stack = ExitStack()

    def __enter__(self) -> JobProgress:
        if self.total and _is_terminal(self.stream):
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            # Log lines print above the bar instead of through it.
            self._stack.enter_context(
                logging_redirect_tqdm(loggers=[logging.getLogger(PACKAGE_LOGGER)])
            )
            self._bar = self._stack.enter_context(
                tqdm(total=self.total, unit="job", file=self.stream, dynamic_ncols=True)
            )
        return self

    def update(self, succeeded: bool) -> None:
        """Count one finished job."""
        self.done += 1
        self.failed += 0 if succeeded else 1
        if self._bar is not None:
            self._bar.update(1)
            if self.failed:
                self._bar.set_postfix(failed=self.failed, refresh=False)
            return
        now = self.clock()
        if now - self._last_line >= self.interval_s and self.done < self.total:
            self._last_line = now
            log.info("%s", self.line())

    def line(self) -> str:
        """How far the run is, in words."""
        elapsed = self.clock() - self.started
        text = f"progress: {self.done}/{self.total} job(s) done"
        if self.failed:
            text += f" ({self.failed} failed)"
        text += f", {elapsed:.0f} s elapsed"
        if 0 < self.done < self.total:
            text += f", about {elapsed / self.done * (self.total - self.done):.0f} s left"
        return text

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stack.close()
        if self._bar is None and self.total:
            log.info("%s", self.line())


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False
