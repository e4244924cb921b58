"""The report's page, rendered from a summary: rows, parameters, figures, size, files."""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

from analysis_wrapper.report.html import (
    EMBED_BUDGET_BYTES,
    REPORT_FILE_NAME,
    render_report,
    write_report,
)
from analysis_wrapper.run.context import JobResult, RunSummary, Status


def png(width: int, height: int, seed: int) -> bytes:
    """A valid RGB PNG of noise (noise does not compress: a realistic size)."""
    rows = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height)) if seed else b""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def many_jobs(results: Path, count: int) -> tuple[RunSummary, dict[str, dict[str, object]]]:
    """``count`` jobs that ran (every tenth failed), each with a ~36 kB figure."""
    summary = RunSummary(dry_run=False)
    parameters: dict[str, dict[str, object]] = {}
    for index in range(count):
        key = f"{index:064x}"
        job_file = f"/data/job_dict/session-{index:03d}.json"
        failed = index % 10 == 9
        if not failed:
            (results / key).mkdir(parents=True)
            (results / key / "units.png").write_bytes(png(110, 110, index + 1))
        summary.jobs.append(
            JobResult(
                job_file,
                key,
                "run",
                Status.FAILED if failed else Status.SUCCEEDED,
                seconds=index / 10,
                error="ValueError: no spikes" if failed else None,
            )
        )
        parameters[job_file] = {"cutoff": index / 100, "min_spikes": 20, "name": "units"}
    return summary, parameters


def test_a_page_of_201_jobs_links_its_figures_and_stays_small(tmp_path: Path) -> None:
    """201 jobs with 7 MB of figures: the page links them (lazy) and weighs under 150 kB."""
    summary, parameters = many_jobs(tmp_path, 201)
    figures = sum(p.stat().st_size for p in tmp_path.rglob("*.png"))
    assert figures > 5 * EMBED_BUDGET_BYTES
    html = render_report(tmp_path, summary, parameters=parameters)
    assert len(html.encode()) < 150_000, len(html.encode())
    assert "data:image" not in html
    assert html.count('loading="lazy"') == 181  # the 20 failed jobs wrote no figure
    assert html.count('<tr class="job') == 201


def test_small_runs_embed_their_figures(tmp_path: Path) -> None:
    """A few figures (under the budget) are embedded: the page works on its own."""
    summary, parameters = many_jobs(tmp_path, 4)
    html = render_report(tmp_path, summary, parameters=parameters)
    assert html.count("data:image/png;base64,") == 4
    assert 'loading="lazy"' not in html


def test_failures_come_first_and_only_varied_parameters_have_a_column(tmp_path: Path) -> None:
    """Failed rows lead (in job order); the column lists what varies, the rest is said once."""
    summary, parameters = many_jobs(tmp_path, 12)
    html = render_report(tmp_path, summary, parameters=parameters)
    rows = re.findall(r'<tr class="job (\w+)">(.*?)</tr>', html, re.S)
    assert [status for status, _ in rows[:1]] == ["failed"]
    assert all(status == "succeeded" for status, _ in rows[1:])
    assert "session-009.json" in rows[0][1]
    assert 'class="params">cutoff=0.09</td>' in rows[0][1]
    assert "min_spikes" not in "".join(row for _, row in rows)
    assert "Parameters every job shares: min_spikes=20, name=units" in html


def test_each_run_writes_its_report_and_report_html_is_the_last_that_ran(tmp_path: Path) -> None:
    """An all-skipped run writes report-<time>.html and leaves report.html as it was."""
    ran, _ = many_jobs(tmp_path, 2)
    first = write_report(tmp_path, ran)
    assert first is not None and first.name.startswith("report-")
    latest = tmp_path / REPORT_FILE_NAME
    assert latest.read_bytes() == first.read_bytes()
    skipped = RunSummary(
        dry_run=False,
        jobs=[JobResult(j.job_file, j.key, "skip", Status.SKIPPED) for j in ran.jobs],
    )
    second = write_report(tmp_path, skipped)
    assert second is not None and second != first
    assert "0 ran, 2 skipped" in second.read_text(encoding="utf-8")
    assert latest.read_bytes() == first.read_bytes()
    assert len(list(tmp_path.glob("report-*.html"))) == 2


def test_only_a_run_that_posted_says_posted() -> None:
    """The one line says "(posted)" only when something was; a dry run says so."""
    done = JobResult("a.json", "k", "run", Status.SUCCEEDED)
    skip = JobResult("b.json", "k", "skip", Status.SKIPPED)
    assert RunSummary(dry_run=False, jobs=[done, skip]).one_line().endswith("(posted)")
    assert RunSummary(dry_run=False, jobs=[skip]).one_line().endswith("(nothing posted)")
    assert RunSummary(dry_run=True, jobs=[done]).one_line().endswith("(dry run)")
    in_folder = RunSummary(dry_run=True, jobs=[done], folder="/results").one_line()
    assert in_folder.endswith("(dry run); files in /results")
    stopped = RunSummary(dry_run=False, jobs=[done], interrupted=True, released=2)
    assert stopped.one_line() == "interrupted: 1 done, 2 released; run again to resume"
