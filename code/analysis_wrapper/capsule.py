"""The capsule's entry point: what ``run_capsule.py`` hands itself to.

:func:`run_analysis_jobs` parses the command line, resolves the code identity, opens
the stores, runs every job and exits with a code that tells what happened:

- 0: every job succeeded or was skipped (zero jobs included);
- 1: a job failed, or a store could not be reached;
- 2: a wrong invocation or configuration (unknown flag, missing input directory,
  refused dirty tree, a parameter named like a flag);
- 130: interrupted (Ctrl-C): the jobs under way let their claims go, the report is
  written, and one line says how far the run got; running again resumes.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from pydantic import BaseModel

from .config.command_line import parse_command_line
from .config.project import project_settings
from .config.settings import Capsule, StoreSettings
from .errors import StoreError, UsageError
from .identity.provenance import default_experimenter, resolve_code_identity
from .job.parameters import (
    PARAMETERS_FILE_NAME,
    check_given_parameters,
    load_fixed_parameters,
)
from .run.executors import ExecutorOptions
from .run.runner import Analysis, AnalysisFunction, RunContext, RunSummary, execute_run
from .stores.factory import open_record_store, open_result_store

log = logging.getLogger("analysis_wrapper")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT), as a shell reports a command it interrupted (128 + 2)."""


def configure_logging(level: int = logging.INFO) -> None:
    """Send the package's log lines to stderr; called by entry points, never on import."""
    package_logger = logging.getLogger("analysis_wrapper")
    if not any(getattr(h, "_analysis_wrapper", False) for h in package_logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
        handler._analysis_wrapper = True  # type: ignore[attr-defined]
        package_logger.addHandler(handler)
    package_logger.setLevel(level)
    package_logger.propagate = False


def capsule_of(function: AnalysisFunction) -> Capsule:
    """The capsule whose ``code/`` folder holds the file that defines ``function``."""
    return Capsule(Path(inspect.getfile(function)).resolve().parent.parent)


def main(
    analysis: Analysis,
    argv: Sequence[str] | None = None,
    capsule: Capsule | None = None,
) -> int:
    """Run the capsule once and return its exit code.

    Parameters
    ----------
    analysis : Analysis
        The user's function and models.
    argv : sequence of str, optional
        The command line without the program name; ``sys.argv[1:]`` by default.
    capsule : Capsule, optional
        The capsule folders; found from where ``analysis.function`` is defined.
    """
    capsule = capsule or capsule_of(analysis.function)
    arguments = list(sys.argv[1:] if argv is None else argv)

    def run() -> int:
        try:
            summary = _run(analysis, arguments, capsule)
        except KeyboardInterrupt:  # before the jobs ran (planning) or after (closing)
            summary = RunSummary(dry_run=True, interrupted=True)
        print(summary.one_line())
        if summary.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if summary.failed else EXIT_OK

    return exit_code_of(run)


def exit_code_of(command: Callable[[], int]) -> int:
    """Run ``command``; turn a usage error into exit 2 and a store error into exit 1.

    Either is reported as one line (the messages name the file, flag or store).
    """
    try:
        return command()
    except UsageError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    except StoreError as exc:
        log.error("%s", exc)
        return EXIT_FAILED


def _run(analysis: Analysis, argv: list[str], capsule: Capsule) -> RunSummary:
    options, command_line_parameters = parse_command_line(argv, analysis.parameters_model, capsule)
    fixed_parameters = load_fixed_parameters(options.input_directory)
    # Shared by every job: a mistake here is reported once, before any job (exit 2).
    check_given_parameters(
        analysis.parameters_model,
        fixed_parameters,
        command_line_parameters,
        options.input_directory / PARAMETERS_FILE_NAME,
    )
    settings = StoreSettings()
    code = resolve_code_identity(
        capsule.code_dir,
        posting=options.posting,
        allow_dirty=options.allow_dirty,
        paths=project_settings(capsule.root).code_paths,
        require_pushed=options.require_pushed,
    )
    record_store = open_record_store(settings, capsule, read_only=not options.posting)
    result_store = open_result_store(settings, capsule)
    log.info(
        "code %s @ %s; records: %s; results: %s%s",
        code.url,
        code.version,
        record_store.display_url,
        result_store.url,
        ""
        if options.posting
        else (
            " (plan only)"
            if options.plan
            else f" (dry run: nothing posted; files go to {options.results_directory})"
        ),
    )
    context = RunContext(
        analysis=analysis,
        options=options,
        code=code,
        record_store=record_store,
        result_store=result_store,
        fixed_parameters=fixed_parameters,
        command_line_parameters=command_line_parameters,
        experimenters=(default_experimenter(capsule.code_dir, settings.codeocean_email),),
        code_dir=capsule.code_dir,
    )
    executor = ExecutorOptions(
        kind=options.executor,
        workers=options.workers,
        scheduler_address=options.scheduler_address,
    )
    try:
        summary = execute_run(context, executor)
    finally:
        record_store.close()
    if options.plan:
        print(format_plan_table(summary))
        if summary.explanation:
            print("\n" + "\n".join(summary.explanation))
    return summary


def format_plan_table(summary: RunSummary) -> str:
    """The plan as a plain-text table: job, key (short), action, reason."""
    rows = [("job", "key", "action", "reason")]
    for job in summary.jobs:
        reason = job.reason
        rows.append((Path(job.job_file).name, (job.key or "-")[:12], job.action, reason))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + ("  " + row[3] if row[3] else "")
        for row in rows
    ]
    return "\n".join(lines)


def run_analysis_jobs(
    run_analysis: AnalysisFunction,
    *,
    parameters_model: type[BaseModel],
    outputs_model: type[BaseModel] | None = None,
) -> NoReturn:
    """Run ``run_analysis`` over every job of the capsule, then exit.

    Call it at the end of ``code/run_capsule.py``; see that file for an example.

    Parameters
    ----------
    run_analysis : callable
        ``run_analysis(job, parameters, results_dir)``, returning an instance of
        ``outputs_model``, a dict, or ``None``.
    parameters_model : type of BaseModel
        The analysis's parameters (usually an ``AnalysisParameters`` subclass).
    outputs_model : type of BaseModel, optional
        The analysis's outputs (usually an ``AnalysisOutputs`` subclass).
    """
    configure_logging()
    analysis = Analysis(run_analysis, parameters_model, outputs_model)
    sys.exit(main(analysis))
