"""A one-page HTML report of a run: ``report-<time>.html`` in the results folder.

Every run but ``--plan 1`` writes its own ``report-<UTC time>.html``; ``report.html`` is
a copy of the latest one that ran anything (or the first report), so a run that only
skips does not replace the page that has the figures. An interrupted run writes its
report too, saying so.

One table row per job, failures first: its job file, its varied parameters (those
whose values differ between the run's jobs; the shared ones are listed once above the
table), its key (linked to its result folder), action, status, duration, the reason for
its action or its error, and its figures. A job that ran shows the figures (``*.png``)
it wrote into ``<key>/``; a skipped one shows those of its stored result (see
:mod:`.figures`). The table sorts by any column (click its header) and filters by text
and by status in the page itself: inline script, no server, nothing fetched.

Figures are embedded as ``data:`` URIs when all of them together fit in
:data:`EMBED_BUDGET_BYTES`, so a small run's page renders wherever it is opened, even
copied alone. Past that they are all linked by path relative to the page and loaded
lazily, so a page of hundreds of jobs stays small (the results folder must then stay
together, as it does in Code Ocean).

The report is built from the run's summary, the jobs' parameters and the records'
locations: no setting, credential or store address beyond those goes into it, and URLs
in messages are masked as in the log.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..common.atomic_write import write_atomic
from ..common.redact import mask_url
from .figures import JobFigures, local_figures, stored_figures

if TYPE_CHECKING:  # runner imports this module
    from ..run.context import JobResult, PlannedJob, RunContext, RunSummary

log = logging.getLogger(__name__)

REPORT_FILE_NAME = "report.html"
EMBED_BUDGET_BYTES = 1024 * 1024
"""Figures are embedded when all of them together are at most this many bytes."""

_STATUS_ORDER = {"failed": 0, "succeeded": 1, "skipped": 2}
"""Rows are listed failures first, then jobs that ran, then skipped ones."""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: 0.35em 0.5em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; white-space: nowrap; }
tr.succeeded td.status { color: #176b1b; }
tr.skipped td.status { color: #555; }
tr.failed td.status { color: #b00020; font-weight: bold; }
tr.failed { background: #fff4f4; }
code { font-size: 0.9em; }
img { max-width: 280px; max-height: 210px; height: auto; display: block; margin-bottom: 0.3em; }
.message { white-space: pre-wrap; max-width: 28em; overflow-wrap: anywhere; }
.params { white-space: nowrap; font-family: monospace; font-size: 0.9em; }
.location { font-size: 0.8em; color: #555; word-break: break-all; }
#controls { margin: 0.8em 0; }
#controls input { width: 24em; }
"""

# Sorts by a cell's data-sort (numbers) or its text; filters by text and status. Kept
# inline so the page needs nothing but itself.
_SCRIPT = """
(function () {
  const table = document.getElementById("jobs");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const text = document.getElementById("filter");
  const status = document.getElementById("status");
  const shown = document.getElementById("shown");
  function apply() {
    const needle = text.value.trim().toLowerCase();
    let count = 0;
    for (const row of rows) {
      const visible = (!status.value || row.classList.contains(status.value)) &&
        (!needle || row.textContent.toLowerCase().includes(needle));
      row.hidden = !visible;
      count += visible ? 1 : 0;
    }
    shown.textContent = count + " of " + rows.length + " job(s) shown";
  }
  function value(row, column) {
    const cell = row.cells[column];
    const sort = cell.dataset.sort;
    return sort !== undefined ? Number(sort) : cell.textContent.trim().toLowerCase();
  }
  Array.from(table.tHead.rows[0].cells).forEach((header, column) => {
    header.addEventListener("click", () => {
      const ascending = header.getAttribute("aria-sort") !== "ascending";
      for (const other of table.tHead.rows[0].cells) other.removeAttribute("aria-sort");
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const sorted = Array.from(body.rows).sort((a, b) => {
        const x = value(a, column), y = value(b, column);
        return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
      });
      for (const row of sorted) body.appendChild(row);
    });
  });
  text.addEventListener("input", apply);
  status.addEventListener("change", apply);
  apply();
})();
"""


def write_run_report(
    context: RunContext,
    planned: Sequence[PlannedJob],
    summary: RunSummary,
) -> Path | None:
    """Write the run's report, with its jobs' parameters and skipped jobs' stored figures.

    Never raises for a store or a write that fails (logged): a report is not worth a run.

    Returns
    -------
    Path or None
        The run's ``report-<time>.html``, or ``None`` if it could not be written.
    """
    results_directory = context.options.results_directory
    reasons = {str(job.job_file): job.decision.reason for job in planned}
    reasons.update({job.job_file: job.reason for job in summary.jobs if job.reason})
    parameters = {
        str(job.job_file): job.parameters.model_dump(mode="json")
        for job in planned
        if job.parameters is not None
    }
    skipped = [job.key for job in summary.jobs if job.status.value == "skipped" and job.key]
    stored = stored_figures(results_directory, skipped, context.record_store, context.result_store)
    return write_report(results_directory, summary, reasons, parameters, stored)


def write_report(
    results_directory: Path,
    summary: RunSummary,
    reasons: Mapping[str, str] | None = None,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
    stored: Mapping[str, JobFigures] | None = None,
) -> Path | None:
    """Write ``report-<time>.html`` whole, and ``report.html`` if this run ran anything.

    ``report.html`` is also written when there is none yet.

    Parameters
    ----------
    results_directory : Path
        The run's results folder; each job that ran wrote its files in ``<key>/``.
    summary : RunSummary
        The run's outcome.
    reasons : mapping of str to str, optional
        Each job file's reason for its action, when its result does not carry one.
    parameters : mapping, optional
        Each job file's validated parameters.
    stored : mapping of str to JobFigures, optional
        Skipped jobs' stored locations and copied figures, by key.

    Returns
    -------
    Path or None
        The run's report, or ``None`` if it could not be written (logged).
    """
    html = render_report(results_directory, summary, reasons, parameters, stored)
    path = _run_report_path(results_directory)
    try:
        write_atomic(path, html)
        latest = results_directory / REPORT_FILE_NAME
        ran = any(job.action == "run" and job.status.value != "skipped" for job in summary.jobs)
        if ran or not latest.exists():
            write_atomic(latest, html)
    except OSError as exc:
        log.warning("could not write %s: %s", path, exc)
        return None
    return path


def _run_report_path(results_directory: Path) -> Path:
    """``report-<UTC time>.html``, with ``-2``, ``-3``... for runs in the same second."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = results_directory / f"report-{stamp}.html"
    number = 2
    while path.exists():
        path = results_directory / f"report-{stamp}-{number}.html"
        number += 1
    return path


def render_report(
    results_directory: Path,
    summary: RunSummary,
    reasons: Mapping[str, str] | None = None,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
    stored: Mapping[str, JobFigures] | None = None,
) -> str:
    """Return the report's HTML (see :func:`write_report`)."""
    parameters = parameters or {}
    varied, shared = _split_parameters(parameters)
    numbered = list(enumerate(summary.jobs, start=1))
    numbered.sort(key=lambda item: _STATUS_ORDER.get(item[1].status.value, 3))
    figures = {
        job.job_file: _figures_of(results_directory, job, stored or {}, posted=not summary.dry_run)
        for _, job in numbered
    }
    embed = _embedding(results_directory, figures.values())
    rows = "\n".join(
        _job_row(
            number,
            job,
            (reasons or {}).get(job.job_file, ""),
            {name: parameters.get(job.job_file, {}).get(name) for name in varied},
            figures[job.job_file],
            results_directory if embed else None,
        )
        for number, job in numbered
    )
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    headline = summary.one_line()
    shared_text = ", ".join(f"{name}={_value(value)}" for name, value in shared.items())
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Analysis run report</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Analysis run report</h1>
<p id="summary">{escape(headline)}</p>
<p>Written {escape(created)}. Failures first; click a column's header to sort by it.
Skipped jobs show the figures of their stored result.</p>
<p id="shared">{escape("Parameters every job shares: " + shared_text if shared_text else "")}</p>
<div id="controls">
<input id="filter" type="search" placeholder="filter: job, parameter, key, reason...">
<select id="status"><option value="">every status</option><option>failed</option>
<option>succeeded</option><option>skipped</option></select>
<span id="shown"></span>
</div>
<table id="jobs">
<thead><tr><th>#</th><th>Job file</th><th>Parameters</th><th>Key</th><th>Action</th>
<th>Status</th><th>Seconds</th><th>Reason or error</th><th>Figures</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def _split_parameters(
    parameters: Mapping[str, Mapping[str, Any]],
) -> tuple[list[str], dict[str, Any]]:
    """The names whose values differ between jobs, and the values every job shares."""
    names: dict[str, None] = {}
    for values in parameters.values():
        names.update(dict.fromkeys(values))
    varied, shared = [], {}
    for name in names:
        seen = {_canonical(values.get(name)) for values in parameters.values()}
        if len(seen) > 1 or any(name not in values for values in parameters.values()):
            varied.append(name)
        else:
            shared[name] = next(iter(parameters.values()))[name]
    return varied, shared


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _figures_of(
    results_directory: Path, job: JobResult, stored: Mapping[str, JobFigures], *, posted: bool
) -> JobFigures:
    """A row's folder, stored location and figures (a dry run's location was never made)."""
    if not job.key:
        return JobFigures()
    if job.status.value == "skipped":
        return stored.get(job.key) or local_figures(results_directory, job.key)
    here = local_figures(results_directory, job.key)
    if posted and job.location and job.status.value == "succeeded":
        return JobFigures(here.folder, job.location, here.figures, here.more)
    return here


def _embedding(results_directory: Path, every: Any) -> bool:
    """Whether all the figures together fit in the embedding budget."""
    total = 0
    for figures in every:
        for relative in figures.figures:
            try:
                total += (results_directory / relative).stat().st_size
            except OSError:
                continue
            if total > EMBED_BUDGET_BYTES:
                return False
    return True


def _job_row(
    number: int,
    job: JobResult,
    reason: str,
    varied: Mapping[str, Any],
    figures: JobFigures,
    embed_from: Path | None,
) -> str:
    status = job.status.value
    key = job.key or ""
    message = job.error or job.reason or reason
    parameters = "<br>".join(
        f"{escape(name)}={escape(_value(value))}" for name, value in varied.items()
    )
    cells = [
        f'<td class="num" data-sort="{number}">{number}</td>',
        f"<td>{escape(Path(job.job_file).name)}</td>",
        f'<td class="params">{parameters}</td>',
        f"<td>{_key_cell(key, figures)}</td>",
        f"<td>{escape(job.action)}</td>",
        f'<td class="status">{escape(status)}</td>',
        f'<td class="num" data-sort="{job.seconds:.3f}">{job.seconds:.2f}</td>',
        f'<td class="message">{escape(mask_url(message))}</td>',
        f"<td>{_figure_tags(figures, embed_from)}</td>",
    ]
    return f'<tr class="job {escape(status)}">{"".join(cells)}</tr>'


def _key_cell(key: str, figures: JobFigures) -> str:
    """The short key, linked to the job's local folder; the stored location under it."""
    short = f'<code title="{escape(key)}">{escape(key[:12])}</code>'
    cell = f'<a href="{quote(figures.folder)}/">{short}</a>' if figures.folder else short
    if figures.location:
        location = mask_url(figures.location)
        if location.startswith("file://"):
            where = f'<a href="{escape(location)}">stored result</a>'
        else:  # s3:// is no browser address: shown to copy
            where = f"stored at {escape(location)}"
        cell += f'<div class="location" title="{escape(location)}">{where}</div>'
    return cell


def _figure_tags(figures: JobFigures, embed_from: Path | None) -> str:
    """Each figure linked to its file; embedded when ``embed_from`` (the results folder)."""
    tags = []
    for relative in figures.figures:
        source = quote(relative)
        if embed_from is not None:
            try:
                data = (embed_from / relative).read_bytes()
                source = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            except OSError:  # gone since it was listed: left linked
                pass
        loading = "eager" if embed_from is not None else "lazy"
        tags.append(
            f'<a href="{quote(relative)}"><img src="{escape(source)}" '
            f'alt="{escape(relative)}" loading="{loading}"></a>'
        )
    if figures.more:
        more = f"+{figures.more} more"
        folder = figures.folder
        tags.append(f'<a href="{quote(folder)}/">{more}</a>' if folder else escape(more))
    return "".join(tags)
