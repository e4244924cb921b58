"""Progress over jobs and over upload bytes: log lines without a terminal, a bar on one."""

from __future__ import annotations

import io
import logging
import threading

import pytest

from analysis_wrapper.report.progress import ByteProgress, JobProgress, per_job_level


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


# --- bytes of an upload ------------------------------------------------------------------

MiB = 1024 * 1024


def upload_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("uploading ")]


def test_upload_lines_at_most_once_per_interval_then_the_total(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without a terminal: bytes done of the total and the rate per interval, then the total."""
    clock = Clock()
    caplog.set_level(logging.INFO, logger="analysis_wrapper")
    stream = io.StringIO()
    with ByteProgress(100 * MiB, "s3://b/p/", stream=stream, interval_s=10, clock=clock) as up:
        up.update(10 * MiB)  # at 0 s: too early for a line
        clock.now += 10
        up.update(15 * MiB)  # 10 s: a line
        clock.now += 5
        up.update(75 * MiB)  # 15 s: too early; the closing line says it
    assert upload_lines(caplog) == [
        "uploading s3://b/p/: 25.0 MiB of 100.0 MiB (25%), 2.5 MiB/s",
        "uploading s3://b/p/: 100.0 MiB of 100.0 MiB (100%), 6.7 MiB/s",
    ]
    assert stream.getvalue() == ""


def test_a_quick_upload_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """An upload over before the first interval says nothing (the publish line says it)."""
    clock = Clock()
    caplog.set_level(logging.INFO, logger="analysis_wrapper")
    with ByteProgress(5 * MiB, "s3://b/p/", stream=io.StringIO(), clock=clock) as up:
        clock.now += 9
        up.update(5 * MiB)
    assert upload_lines(caplog) == []


def test_rewound_bytes_are_taken_back(caplog: pytest.LogCaptureFixture) -> None:
    """A negative count (a retried request) lowers the bytes done."""
    clock = Clock()
    caplog.set_level(logging.INFO, logger="analysis_wrapper")
    with ByteProgress(4096, "x", stream=io.StringIO(), interval_s=0, clock=clock) as up:
        up.update(3072)
        up.update(-2048)
        up.update(3072)
    assert upload_lines(caplog) == [
        "uploading x: 3.0 KiB of 4.0 KiB (75%), 0 B/s",
        "uploading x: 1.0 KiB of 4.0 KiB (25%), 0 B/s",
        "uploading x: 4.0 KiB of 4.0 KiB (100%), 0 B/s",
    ]


def test_updates_from_many_threads_add_up() -> None:
    """Transfer threads report at once; no count is lost."""
    up = ByteProgress(8 * 1000 * 512, "x", stream=io.StringIO(), interval_s=3600)

    def send() -> None:
        for _ in range(1000):
            up.update(512)

    threads = [threading.Thread(target=send) for _ in range(8)]
    with up:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert up.done == up.total


def test_a_large_upload_on_a_terminal_gets_a_bar_over_bytes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At or above the size limit, a terminal shows a bar in bytes and no line is logged."""
    caplog.set_level(logging.INFO, logger="analysis_wrapper")
    terminal = Terminal()
    with ByteProgress(64 * MiB, "s3://b/p/", stream=terminal, interval_s=0) as up:
        up.update(64 * MiB)
    shown = terminal.getvalue()
    assert "s3://b/p/" in shown
    assert "64.0M" in shown  # the total, in bytes scaled by 1024
    assert "B/s" in shown
    assert upload_lines(caplog) == []


def test_a_small_upload_on_a_terminal_gets_no_bar(caplog: pytest.LogCaptureFixture) -> None:
    """Below the size limit a terminal gets no bar; lines, if the upload lasts, go to the log."""
    caplog.set_level(logging.INFO, logger="analysis_wrapper")
    terminal = Terminal()
    clock = Clock()
    with ByteProgress(64 * MiB - 1, "s3://b/p/", stream=terminal, interval_s=0, clock=clock) as up:
        clock.now += 2
        up.update(64 * MiB - 1)
    assert terminal.getvalue() == ""
    assert upload_lines(caplog) == ["uploading s3://b/p/: 64.0 MiB of 64.0 MiB (100%), 32.0 MiB/s"]


def test_per_job_lines_hide_behind_a_bar_unless_verbose() -> None:
    """On a terminal a job's line goes to DEBUG (the bar stands for it) unless -v."""
    assert per_job_level(False, Terminal()) == logging.DEBUG
    assert per_job_level(True, Terminal()) == logging.INFO
    assert per_job_level(False, io.StringIO()) == logging.INFO  # a log file keeps them


def test_an_interrupted_run_logs_no_last_progress_line(caplog: pytest.LogCaptureFixture) -> None:
    """Ctrl-C: the run's one line says how far it got; no progress line after it."""
    caplog.set_level(logging.INFO, logger="analysis_wrapper")
    with pytest.raises(KeyboardInterrupt), JobProgress(3, stream=io.StringIO()) as progress:
        progress.update(True)
        raise KeyboardInterrupt
    assert "progress" not in caplog.text
