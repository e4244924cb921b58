"""Progress over the jobs of a run, and over the bytes of an upload.

A bar on a terminal, plain log lines elsewhere: in Code Ocean, in a pipeline or under a
scheduler, stderr is a log file, where a bar would be noise; there a line says how far
things are every ``interval_s`` seconds, and once at the end. tqdm is imported only
when a bar is drawn.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType
from typing import Any, TextIO

log = logging.getLogger(__name__)

PACKAGE_LOGGER = "analysis_wrapper"


class JobProgress:
    """Count finished jobs (or other items) and show how far the run is.

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
    unit : str
        What is counted, in the bar and the lines (``record`` for ``results verify``).
    done_word, failed_word : str
        What a finished item and a failed one are called in the lines and the bar.
    """

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        unit: str = "job",
        done_word: str = "done",
        failed_word: str = "failed",
    ) -> None:
        self.total = total
        self.unit = unit
        self.done_word = done_word
        self.failed_word = failed_word
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
                tqdm(total=self.total, unit=self.unit, file=self.stream, dynamic_ncols=True)
            )
        return self

    def update(self, succeeded: bool) -> None:
        """Count one finished job."""
        self.done += 1
        self.failed += 0 if succeeded else 1
        if self._bar is not None:
            self._bar.update(1)
            if self.failed:
                self._bar.set_postfix({self.failed_word: self.failed}, refresh=False)
            return
        now = self.clock()
        if now - self._last_line >= self.interval_s and self.done < self.total:
            self._last_line = now
            log.info("%s", self.line())

    def line(self) -> str:
        """How far the run is, in words."""
        elapsed = self.clock() - self.started
        text = f"progress: {self.done}/{self.total} {self.unit}(s) {self.done_word}"
        if self.failed:
            text += f" ({self.failed} {self.failed_word})"
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
        # Interrupted (Ctrl-C): the run's one line says how far it got.
        interrupted = kind is not None and issubclass(kind, KeyboardInterrupt)
        if self._bar is None and self.total and not interrupted:
            log.info("%s", self.line())


def per_job_level(verbose: bool, stream: TextIO | None = None) -> int:
    """The level of a run's per-job lines: hidden behind a bar unless ``verbose``.

    On a terminal the bar says how far the run is, and a line per job would scroll it
    away (hundreds of jobs, hundreds of lines); they are logged at DEBUG there, which
    the capsule does not show, unless ``-v``. Elsewhere (a log file) every job keeps its
    line. Failures are logged at their own level either way.
    """
    if verbose or not _is_terminal(stream or sys.stderr):
        return logging.INFO
    return logging.DEBUG


MiB = 1024 * 1024
BAR_MIN_BYTES = 64 * MiB
"""Uploads smaller than this get no bar on a terminal: a result of a few files would
flash one bar per job."""


class ByteProgress:
    """Count the bytes of one upload and show how far it is.

    On a terminal an upload of at least ``bar_min_bytes`` gets a bar over bytes;
    otherwise a line says how far it is at most every ``interval_s`` seconds (so a quick
    upload says nothing), and, if any was said, once more at the end with the total.
    :meth:`update` may be called from many threads at once, with negative counts when a
    transfer rewinds.

    Parameters
    ----------
    total : int
        The bytes the upload sends.
    label : str
        What is uploaded, or where to; named in the bar and the lines.
    stream : text stream, optional
        Where the bar goes; ``sys.stderr`` by default.
    interval_s : float
        Seconds between log lines when there is no bar.
    bar_min_bytes : int
        The smallest upload that gets a bar.
    clock : callable
        A monotonic clock, replaceable in tests.
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        stream: TextIO | None = None,
        interval_s: float = 10.0,
        bar_min_bytes: int = BAR_MIN_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.bar_min_bytes = bar_min_bytes
        self.clock = clock
        self.started = clock()
        self._last_line = self.started
        self._said: int | None = None  # the count in the last line logged
        self._lock = threading.Lock()
        self._bar: Any = None

    def __enter__(self) -> ByteProgress:
        if self.total >= self.bar_min_bytes and self.total and _is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total,
                desc=self.label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=self.stream,
                leave=False,  # the job's own line (and bar) stay; this one goes
                dynamic_ncols=True,
            )
        return self

    def update(self, count: int) -> None:
        """Count ``count`` more bytes sent (fewer, when negative)."""
        with self._lock:
            self.done += count
            if self._bar is not None:
                self._bar.update(count)
                return
            now = self.clock()
            if now - self._last_line >= self.interval_s:
                self._last_line = now
                self._say()

    def line(self) -> str:
        """How far the upload is, in words: bytes done of the total, and the rate."""
        elapsed = self.clock() - self.started
        percent = 100 * self.done / self.total if self.total else 100.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return (
            f"uploading {self.label}: {_size(self.done)} of {_size(self.total)} "
            f"({percent:.0f}%), {_size(rate)}/s"
        )

    def _say(self) -> None:
        self._said = self.done
        log.info("%s", self.line())

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
        elif kind is None and self._said is not None and self._said != self.done:
            self._say()  # lines were logged: the last one says it is all there


def _size(count: float) -> str:
    """Bytes in the largest binary unit below them: ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    if abs(count) < 1024:
        return f"{count:.0f} B"
    count /= 1024
    units = ["KiB", "MiB", "GiB"]
    while abs(count) >= 1024 and len(units) > 1:
        count /= 1024
        units.pop(0)
    return f"{count:.1f} {units[0]}"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False
