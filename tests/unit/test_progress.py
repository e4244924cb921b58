"""Progress over jobs: log lines without a terminal, a bar on one."""

from __future__ import annotations

import io
import logging

import pytest

from analysis_wrapper.progress import JobProgress


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]


def test_without_terminal_a_line_per_interval_and_one_at_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Lines come at most once per interval, with counts and time left, and once at the end."""
    clock = Clock()
    caplog.set_level(logging.INFO, logger="analysis_wrapper")
    stream = io.StringIO()
    with JobProgress(4, stream=stream, interval_s=10, clock=clock) as progress:
        progress.update(True)  # at 0 s: too early for a line
        clock.now += 11
        progress.update(False)  # 11 s: a line
        clock.now += 1
        progress.update(True)  # 12 s: too early again
        clock.now += 10
        progress.update(True)  # the last job: the closing line says it
    lines = progress_lines(caplog)
    assert lines == [
        "progress: 2/4 job(s) done (1 failed), 11 s elapsed, about 11 s left",
        "progress: 4/4 job(s) done (1 failed), 22 s elapsed",
    ]
    assert stream.getvalue() == ""  # no bar drawn into a log


def test_on_a_terminal_a_bar_counts_the_jobs(caplog: pytest.LogCaptureFixture) -> None:
    """On a terminal the bar shows n/total and no progress lines are logged."""
    caplog.set_level(logging.INFO, logger="analysis_wrapper")
    terminal = Terminal()
    with JobProgress(3, stream=terminal) as progress:
        for _ in range(3):
            progress.update(True)
    assert "3/3" in terminal.getvalue()
    assert progress_lines(caplog) == []


def test_no_jobs_no_output(caplog: pytest.LogCaptureFixture) -> None:
    """A run with nothing to run draws and logs nothing."""
    caplog.set_level(logging.INFO, logger="analysis_wrapper")
    terminal = Terminal()
    with JobProgress(0, stream=terminal):
        pass
    assert terminal.getvalue() == ""
    assert progress_lines(caplog) == []
