"""``analysis-wrapper results verify``: do stored results still hold what their manifests list.

::

    analysis-wrapper results verify [--param K=V ...] [--input LOCATION ...] [--code-version V]
        [--analysis-name N] [--tag T] [--latest] [--deep 0|1]

For each record the filters select (as ``results find`` selects them), its result
folder must hold exactly the files its manifest lists, each with its size; with
``--deep 1``, each with its sha256 too. Prints a row per record and a summary line;
exits 0 when every folder is as its manifest says, 1 when any is not (or a store
failed), 2 on a usage error. The engine is :mod:`analysis_wrapper.stores.verify`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from ..common.redact import mask_url
from ..config.settings import StoreSettings
from ..record.query import locate_capsule
from ..report.progress import JobProgress
from ..stores.factory import open_result_store
from ..stores.verify import ChangedFile, ListedFile, Target, Verdict, verify_folders
from .common import capsule_option, zero_or_one
from .record_filters import add_record_filters, find_filtered

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_INTERRUPTED = 130

_PROGRESS_LOGGER = "analysis_wrapper.report.progress"


def register(actions: Any) -> None:
    """Add ``results verify`` to the ``results`` subcommands."""
    verify = actions.add_parser(
        "verify",
        parents=[capsule_option()],
        help="check that result folders hold exactly their manifests' files",
    )
    add_record_filters(verify)
    verify.add_argument(
        "--deep",
        type=zero_or_one,
        default=False,
        metavar="0|1",
        help="1: also read every file and compare its sha256 (default 0: names and sizes)",
    )
    verify.set_defaults(handler=verify_command)


def verify_command(args: argparse.Namespace) -> int:
    """Check the selected records' folders; print the table; exit 1 on any problem."""
    records = find_filtered(args)
    targets = [Target(str(r.get("_id", "")), str(r.get("location") or "")) for r in records]
    del records  # only the keys and locations are needed from here on
    store = open_result_store(StoreSettings(), locate_capsule(args.capsule))
    progress = JobProgress(len(targets), unit="record", done_word="checked", failed_word="not ok")
    try:
        with _progress_lines(), progress:
            verdicts = verify_folders(
                store, targets, deep=args.deep, on_verdict=lambda v: progress.update(v.ok)
            )
    except KeyboardInterrupt:
        print(
            f"interrupted: {progress.done} of {len(targets)} record(s) checked "
            f"({progress.failed} not ok); nothing was changed",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(format_verdicts(verdicts, deep=args.deep))
    return EXIT_OK if all(verdict.ok for verdict in verdicts) else EXIT_PROBLEMS


@contextlib.contextmanager
def _progress_lines() -> Iterator[None]:
    """Let the progress lines through (the command logs only warnings otherwise).

    Without a terminal (a log file) the progress says how far the check is every
    30 s; on a terminal it is a bar, and no line is logged.
    """
    logger = logging.getLogger(_PROGRESS_LOGGER)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(level)


COLUMNS = ("key", "files", "missing", "changed", "extra", "result")


def format_verdicts(verdicts: Sequence[Verdict], *, deep: bool) -> str:
    """A row per record (key, counts, result), each problem on a line below it, a summary."""
    rows: list[tuple[str, ...]] = [COLUMNS]
    details: list[list[str]] = [[]]
    for verdict in verdicts:
        counts = (
            (str(verdict.files), *(str(len(found)) for found in _problems(verdict)))
            if verdict.problem is None
            else ("-",) * 4
        )
        rows.append((verdict.target.key[:12], *counts, _result(verdict)))
        details.append(_detail_lines(verdict))
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS) - 1)]
    lines = []
    for row, below in zip(rows, details, strict=True):
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:], strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
        lines += below
    lines.append(summary_line(verdicts, deep=deep))
    return "\n".join(lines)


def _problems(verdict: Verdict) -> tuple[tuple[Any, ...], ...]:
    return (verdict.missing, verdict.changed, verdict.extra)


def _result(verdict: Verdict) -> str:
    if verdict.problem is not None:
        return mask_url(verdict.problem)
    found = [word for word, files in zip(COLUMNS[2:5], _problems(verdict), strict=True) if files]
    return ", ".join(found) or "ok"


def _detail_lines(verdict: Verdict) -> list[str]:
    """One line per missing, changed or extra file: its path, size and digests."""
    lines = [f"    missing  {file.path}  ({_described(file)})" for file in verdict.missing]
    lines += [f"    changed  {change.path}  ({_change(change)})" for change in verdict.changed]
    lines += [f"    extra    {file.path}  ({_described(file)})" for file in verdict.extra]
    return lines


def _described(file: ListedFile) -> str:
    digest = f", sha256 {file.sha256[:12]}" if file.sha256 else ""
    return f"{file.size} bytes{digest}"


def _change(change: ChangedFile) -> str:
    found = _described(change.found)
    if change.found.sha256 is None:
        found += ", sha256 not read (--deep 1 reads it)"
    return f"manifest {_described(change.expected)}; stored {found}"


def summary_line(verdicts: Sequence[Verdict], *, deep: bool) -> str:
    """``N record(s) ...: A ok, B not`` with the counts of each kind of problem."""
    how = "by size and sha256" if deep else "by size (--deep 1 also compares sha256)"
    bad = [verdict for verdict in verdicts if not verdict.ok]
    files = sum(verdict.files for verdict in verdicts)
    line = (
        f"{len(verdicts)} record(s), {files} file(s), checked {how}: "
        f"{len(verdicts) - len(bad)} ok, {len(bad)} not"
    )
    if not bad:
        return line
    kinds = [
        (sum(len(verdict.missing) for verdict in bad), "missing"),
        (sum(len(verdict.changed) for verdict in bad), "changed"),
        (sum(len(verdict.extra) for verdict in bad), "extra"),
    ]
    parts = [f"{count} file(s) {word}" for count, word in kinds if count]
    unchecked = sum(verdict.problem is not None for verdict in bad)
    if unchecked:
        parts.append(f"{unchecked} folder(s) not comparable (no readable manifest or location)")
    return f"{line}: {', '.join(parts)}"
