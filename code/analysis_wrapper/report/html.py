"""A one-page HTML report of a run: ``<results_directory>/report.html``.

One table row per job: its job file, key, action, status, duration, the reason for
its action or its error, and the figures (``*.png``) it wrote into
``<results_directory>/<key>/`` in this run. The figures are embedded as ``data:``
URIs, so the page renders wherever it is opened: from the results folder, from a
Code Ocean results viewer, or copied alone. Past :data:`EMBED_BUDGET_BYTES` of
figures, further ones are referenced by their path relative to the report instead
(the results folder must then stay together).

The report is built from the run's summary only (job files, keys, actions, reasons,
errors): no setting, credential or store address goes into it, and URLs in messages
are masked as in the log.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..common.atomic_write import write_atomic
from ..common.redact import mask_url

if TYPE_CHECKING:  # runner imports this module
    from ..run.context import JobResult, RunSummary

log = logging.getLogger(__name__)

REPORT_FILE_NAME = "report.html"
EMBED_BUDGET_BYTES = 20 * 1024 * 1024
"""Figures are embedded up to this many bytes in all; later ones are linked."""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.35em 0.5em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; white-space: nowrap; }
tr.succeeded td.status { color: #176b1b; }
tr.skipped td.status { color: #555; }
tr.failed td.status { color: #b00020; font-weight: bold; }
code { font-size: 0.9em; }
img { max-width: 480px; height: auto; display: block; margin-bottom: 0.3em; }
.message { white-space: pre-wrap; max-width: 40em; }
"""


def write_report(
    results_directory: Path,
    summary: RunSummary,
    reasons: Mapping[str, str] | None = None,
) -> Path | None:
    """Write ``report.html`` for a finished run, whole or not at all; never raise on a write error.

    Parameters
    ----------
    results_directory : Path
        The run's results folder; each job that ran wrote its files in ``<key>/``.
    summary : RunSummary
        The run's outcome.
    reasons : mapping of str to str, optional
        Each job file's reason for its action, when its result does not carry one.

    Returns
    -------
    Path or None
        The report's path, or ``None`` if it could not be written (logged).
    """
    path = results_directory / REPORT_FILE_NAME
    try:
        write_atomic(path, render_report(results_directory, summary, reasons))
    except OSError as exc:
        log.warning("could not write %s: %s", path, exc)
        return None
    return path


def render_report(
    results_directory: Path,
    summary: RunSummary,
    reasons: Mapping[str, str] | None = None,
) -> str:
    """Return the report's HTML (see :func:`write_report`)."""
    budget = [EMBED_BUDGET_BYTES]
    rows = "\n".join(
        _job_row(number, job, (reasons or {}).get(job.job_file, ""), results_directory, budget)
        for number, job in enumerate(summary.jobs, start=1)
    )
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Analysis run report</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Analysis run report</h1>
<p id="summary">{escape(summary.one_line())}</p>
<p>Written {escape(created)}. Figures are those each job wrote in this run.</p>
<table id="jobs">
<thead><tr><th>#</th><th>Job file</th><th>Key</th><th>Action</th><th>Status</th>
<th>Seconds</th><th>Reason or error</th><th>Figures</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""


def _job_row(
    number: int, job: JobResult, reason: str, results_directory: Path, budget: list[int]
) -> str:
    status = job.status.value
    key = job.key or ""
    message = job.error or job.reason or reason
    figures = _figures(results_directory, key, budget) if key and status != "skipped" else ""
    cells = [
        f'<td class="num">{number}</td>',
        f"<td>{escape(Path(job.job_file).name)}</td>",
        f'<td><code title="{escape(key)}">{escape(key[:12])}</code></td>',
        f"<td>{escape(job.action)}</td>",
        f'<td class="status">{escape(status)}</td>',
        f'<td class="num">{job.seconds:.2f}</td>',
        f'<td class="message">{escape(mask_url(message))}</td>',
        f"<td>{figures}</td>",
    ]
    return f'<tr class="job {escape(status)}">{"".join(cells)}</tr>'


def _figures(results_directory: Path, key: str, budget: list[int]) -> str:
    """The ``<img>`` tags of the PNGs under ``<results_directory>/<key>/``, by path."""
    folder = results_directory / key
    if not folder.is_dir():
        return ""
    tags = []
    for png in sorted(folder.rglob("*.png")):
        relative = png.relative_to(results_directory).as_posix()
        data = png.read_bytes()
        if len(data) <= budget[0]:
            budget[0] -= len(data)
            source = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        else:
            source = quote(relative)  # past the budget: linked, the folder must stay together
        tags.append(f'<img src="{escape(source)}" alt="{escape(relative)}" loading="eager">')
    return "".join(tags)
