"""One run: plan every job, run the ones to run, and write the run's summary files.

The runner sees the store interfaces and a :class:`CodeIdentity`, never a database or
cloud client. The steps live in their own modules of this folder::

    planning.py      job files -> keys (pure) -> records and claims, in batches
    decision.py      each job's run-or-skip, with its reason (pure)
    job.py           one job: claim its key (or wait out a lost worker's), then its tries
    tries.py         the analysis, then publish (manifest last) and record, each retried
    outputs.py       run_analysis into a folder -> outputs, metadata.nd.json, key.json
    heartbeat.py     a running job's claim renewed in the background, with deadlines
    explain.py       --plan 1 --explain KEY: one job against the closest stored record
    executors.py     where the jobs run: serially, a process pool, Dask
    dask_shipping.py the capsule's code and the run's settings sent to Dask workers
    dask_worker.py   what a Dask worker runs
    runner.py        this module: drives a run, writes plan.json / run_summary.json

Who runs a key (insert-if-absent, takeover by epoch, fencing) is
:mod:`analysis_wrapper.stores.claims`, the same rules on every record store.

A job that fails is reported and posts nothing; the others go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from ..common.atomic_write import write_json as _write_json
from ..common.redact import mask_url
from ..config.settings import RunOptions
from ..report.progress import JobProgress, per_job_level
from ..stores.claims import Claims, Owner
from .context import (
    Analysis,
    AnalysisFunction,
    JobResult,
    PlannedJob,
    RunContext,
    RunSummary,
    Status,
)
from .decision import Action
from .explain import explain_planned
from .job import (
    KEY_FILE_NAME,
    METADATA_FILE_NAME,
    outputs_to_json,
    run_job,
)
from .planning import ValidatedCache, plan_run, prepare_job

__all__ = [
    "KEY_FILE_NAME",
    "METADATA_FILE_NAME",
    "NO_JOBS_FILE_NAME",
    "PLAN_FILE_NAME",
    "SUMMARY_FILE_NAME",
    "Analysis",
    "AnalysisFunction",
    "Executor",
    "JobResult",
    "OnDone",
    "PlannedJob",
    "RunContext",
    "RunSummary",
    "Status",
    "ValidatedCache",
    "execute_run",
    "outputs_to_json",
    "plan_run",
    "prepare_job",
    "run_job",
    "run_serially",
]

log = logging.getLogger(__name__)

PLAN_FILE_NAME = "plan.json"
SUMMARY_FILE_NAME = "run_summary.json"
NO_JOBS_FILE_NAME = "no_jobs.txt"


def _write_no_jobs_placeholder(options: RunOptions) -> None:
    """Say in ``results_directory`` that there was nothing to do.

    A Code Ocean pipeline step whose results folder is empty counts as failed, so a
    step that gets zero jobs leaves this file.
    """
    (options.results_directory / NO_JOBS_FILE_NAME).write_text(
        f"no job files in {options.input_directory / 'job_dict'}: nothing ran, nothing was "
        "posted. This file exists because a Code Ocean pipeline step with no results fails.\n",
        encoding="utf-8",
    )


OnDone = Callable[[int, "JobResult"], None]
Executor = Callable[[Sequence["PlannedJob"], "RunContext", OnDone], None]
"""Runs the jobs to run, calling back with each one's position and result as it ends."""


def run_serially(jobs: Sequence[PlannedJob], context: RunContext, on_done: OnDone) -> None:
    """The default executor: one job after another, in this process."""
    for position, job in enumerate(jobs):
        on_done(position, run_job(job, context))


def execute_run(context: RunContext, executor: Executor | None = None) -> RunSummary:
    """Plan every job, then run, skip or fail each, and write the run's summary files.

    With ``--plan 1`` nothing runs: ``plan.json`` is written and the jobs are
    returned as skipped or failed.

    Parameters
    ----------
    context : RunContext
        The run's settings, stores and code identity.
    executor : callable, optional
        Where the jobs that run are run (see :mod:`analysis_wrapper.run.executors`);
        one after another in this process by default.
    """
    options = context.options
    planned = plan_run(context)
    options.results_directory.mkdir(parents=True, exist_ok=True)
    if not planned:
        log.info("no job files in %s: nothing to do", options.input_directory / "job_dict")
        _write_no_jobs_placeholder(options)
    if options.plan:
        return _plan_only(planned, context)
    summary = RunSummary(dry_run=options.dry_run, folder=str(options.results_directory))
    results: list[JobResult | None] = [None] * len(planned)
    to_run: list[int] = []
    per_job = per_job_level(options.verbose)
    for index, job in enumerate(planned):
        log.log(
            logging.ERROR if job.decision.action is Action.INVALID else per_job,
            "%s: %s (%s)",
            job.job_file.name,
            job.decision.action.value,
            job.decision.reason,
        )
        if job.decision.action is Action.RUN:
            to_run.append(index)
        else:
            results[index] = run_job(job, context)  # a skip or an invalid job: no work

    def done(position: int, result: JobResult) -> None:
        results[to_run[position]] = result
        finished = sum(1 for index in to_run if results[index] is not None)
        if result.status is Status.SUCCEEDED:
            log.log(
                per_job,
                "[%d/%d] %s: succeeded in %.2f s -> %s",
                finished,
                len(to_run),
                Path(result.job_file).name,
                result.seconds,
                # A dry run posts nothing: its files are in the local folder alone.
                result.location
                if options.posting
                else options.results_directory / (result.key or ""),
            )
        elif result.status is Status.SKIPPED:  # another worker has it, or finished it
            log.log(
                per_job,
                "[%d/%d] %s: skipped (%s)",
                finished,
                len(to_run),
                Path(result.job_file).name,
                result.reason,
            )
        else:
            log.info("[%d/%d] %s: failed", finished, len(to_run), Path(result.job_file).name)
        progress.update(result.status is not Status.FAILED)

    try:
        with JobProgress(len(to_run)) as progress:
            (executor or run_serially)([planned[index] for index in to_run], context, done)
    except KeyboardInterrupt:
        # Ctrl-C: the job under way released its claim as it stopped; release any
        # claim a stopped worker could not, then write what is known, as for any run.
        summary.interrupted = True
        if options.posting:
            unfinished = [planned[i].key for i in to_run if results[i] is None]
            summary.released = _release_unfinished(context, [k for k in unfinished if k])
    summary.jobs = [result for result in results if result is not None]
    _write_json(options.results_directory / SUMMARY_FILE_NAME, summary.as_json())
    from ..report.html import write_run_report  # at the end of a run: not on the start-up path

    try:
        write_run_report(context, planned, summary)
    except KeyboardInterrupt:  # Ctrl-C while the report was made: the jobs are as said
        summary.interrupted = True
    return summary


def _plan_only(planned: list[PlannedJob], context: RunContext) -> RunSummary:
    """Write ``plan.json``; the jobs come back as skipped or failed, nothing having run."""
    options = context.options
    _write_json(options.results_directory / PLAN_FILE_NAME, [job.plan_entry() for job in planned])
    summary = RunSummary(dry_run=True, plan=True)
    for job in planned:
        failing = job.decision.action in (Action.INVALID, Action.FAILED)
        status = Status.FAILED if failing else Status.SKIPPED
        summary.jobs.append(
            JobResult(
                str(job.job_file),
                job.key,
                job.decision.action.value,
                status,
                error=job.error,
                reason=job.decision.reason,
            )
        )
    if options.explain is not None:
        summary.explanation = explain_planned(planned, options.explain, context.record_store)
    return summary


def _release_unfinished(context: RunContext, keys: list[str]) -> int:
    """Release this run's claims on ``keys`` still held; how many of them are released."""
    claims = Claims(context.record_store, Owner.of_this_process(context.run_id))
    try:
        return claims.release_unfinished(keys)
    except Exception as exc:  # a store that cannot be reached: the leases end them
        log.warning("could not release the unfinished jobs' claims: %s", mask_url(str(exc)))
        return 0
