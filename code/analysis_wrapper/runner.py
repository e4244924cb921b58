"""One run: prepare every job, decide, run, publish, record (last).

The runner sees the store interfaces and a :class:`CodeIdentity`, never a database or
cloud client. Per job::

    job file -> Job -> parameters merged + validated -> key (pure)
    record store: record with _id == key?  -> skip (names the record)
    run_analysis(job, parameters, <results_directory>/<key>/) -> outputs
    metadata.nd.json + key.json -> results store (manifest last) -> record (last)

A job that fails is reported and posts nothing; the others go on.
"""

from __future__ import annotations

import enum
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .changes import change_reasons
from .codeocean import CodeOceanIdentity
from .errors import JobInputError, KeyComputationError, RecordExistsError, WrapperError
from .identity import CodeIdentity, canonical_json, compute_key, key_preimage
from .jobs import Job, find_job_files, load_job, validation_error_to_input_error
from .manifest import build_manifest
from .parameters import job_layers, merge_layers, validate_parameters
from .plan import Action, Decision, decide
from .progress import JobProgress
from .records import RecordInputs, build_record
from .report import write_report
from .settings import RunOptions
from .stores.base import RecordStore, ResultStore

log = logging.getLogger(__name__)

METADATA_FILE_NAME = "metadata.nd.json"
KEY_FILE_NAME = "key.json"
PLAN_FILE_NAME = "plan.json"
SUMMARY_FILE_NAME = "run_summary.json"
NO_JOBS_FILE_NAME = "no_jobs.txt"

AnalysisFunction = Callable[[Job, Any, Path], Any]


class Status(str, enum.Enum):
    """How a job ended in a run."""

    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class Analysis:
    """The user's side of the contract.

    Parameters
    ----------
    function : callable
        ``run_analysis(job, parameters, results_dir) -> outputs | dict | None``.
    parameters_model : type of BaseModel
        Validates the merged parameters.
    outputs_model : type of BaseModel or None
        Validates a returned dict; ``None`` accepts any JSON-ready dict.
    """

    function: AnalysisFunction
    parameters_model: type[BaseModel]
    outputs_model: type[BaseModel] | None = None


@dataclass(frozen=True)
class RunContext:
    """Everything a run needs besides its jobs; built once, shared by every job."""

    analysis: Analysis
    options: RunOptions
    code: CodeIdentity
    record_store: RecordStore
    result_store: ResultStore
    fixed_parameters: Mapping[str, Any]
    command_line_parameters: Mapping[str, Any]
    experimenters: tuple[str, ...]
    code_dir: Path | None = None
    """The capsule's code/ folder, for executors that ship it to remote workers."""


@dataclass
class PlannedJob:
    """A job file after preparation and decision."""

    job_file: Path
    decision: Decision
    job: Job | None = None
    parameters: BaseModel | None = None
    preimage: dict[str, Any] | None = None
    key: str | None = None
    error: str | None = None
    replace: bool = False
    """A record with this key exists (forced or orphaned): the new one replaces it."""

    def plan_entry(self) -> dict[str, Any]:
        """The job's object in ``plan.json``."""
        return {
            "job_file": str(self.job_file),
            "key": self.key,
            "action": self.decision.action.value,
            "reason": self.decision.reason,
        }


@dataclass
class JobResult:
    """How one job ended, as listed in ``run_summary.json``."""

    job_file: str
    key: str | None
    action: str
    status: Status
    seconds: float = 0.0
    error: str | None = None
    location: str | None = None
    reason: str = ""

    def summary_entry(self) -> dict[str, Any]:
        """The job's object in ``run_summary.json``."""
        return {
            "job_file": self.job_file,
            "key": self.key,
            "action": self.action,
            "status": self.status.value,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


@dataclass
class RunSummary:
    """The outcome of a run."""

    dry_run: bool
    jobs: list[JobResult] = field(default_factory=list)
    plan: bool = False

    def count(self, status: Status) -> int:
        """How many jobs ended with ``status``."""
        return sum(1 for job in self.jobs if job.status is status)

    @property
    def failed(self) -> int:
        """How many jobs failed."""
        return self.count(Status.FAILED)

    def as_json(self) -> dict[str, Any]:
        """The content of ``run_summary.json``."""
        return {
            "ran": self.count(Status.SUCCEEDED),
            "skipped": self.count(Status.SKIPPED),
            "failed": self.failed,
            "dry_run": self.dry_run,
            "jobs": [job.summary_entry() for job in self.jobs],
        }

    def one_line(self) -> str:
        """A one-line summary for the end of the log."""
        if self.plan:
            counts = {a.value: sum(1 for j in self.jobs if j.action == a.value) for a in Action}
            listed = ", ".join(f"{n} {action}" for action, n in counts.items())
            return f"plan for {len(self.jobs)} job(s): {listed} (nothing ran)"
        mode = "dry run" if self.dry_run else "posted"
        return (
            f"{len(self.jobs)} job(s): {self.count(Status.SUCCEEDED)} ran, "
            f"{self.count(Status.SKIPPED)} skipped, {self.failed} failed ({mode})"
        )


ValidatedCache = dict[str, tuple[BaseModel, dict[str, Any]]]
"""Validated parameters (and their JSON dump) by the canonical text of the merged values."""


def prepare_job(
    path: Path, context: RunContext, validated: ValidatedCache | None = None
) -> PlannedJob:
    """Load a job, merge and validate its parameters, and compute its key.

    Never raises for bad input: a job that cannot be prepared comes back with
    action ``invalid`` and its error in one line.

    Parameters
    ----------
    path : Path
        The job file.
    context : RunContext
        The run.
    validated : dict, optional
        Shared by the jobs of one plan: a grid of thousands of jobs has few distinct
        parameter sets, each validated once. Jobs then share one parameters object;
        :func:`run_job` hands each analysis its own copy.
    """
    options = context.options
    try:
        job = load_job(path, options.input_directory)
        merged, sources = merge_layers(
            job_layers(context.fixed_parameters, job, context.command_line_parameters)
        )
        cache_key = json.dumps(merged, sort_keys=True, default=repr)
        if validated is not None and cache_key in validated:
            parameters, dumped = validated[cache_key]
        else:
            parameters = validate_parameters(
                context.analysis.parameters_model, merged, sources, str(path)
            )
            dumped = parameters.model_dump(mode="json")
            if validated is not None:
                validated[cache_key] = (parameters, dumped)
        preimage = key_preimage(
            context.code,
            job.s3_location,
            job.file_location or [],
            dumped,
        )
        key = compute_key(preimage)
    except (JobInputError, KeyComputationError) as exc:
        message = str(exc) if isinstance(exc, JobInputError) else f"{path}: {exc}"
        return PlannedJob(path, Decision(Action.INVALID, message), error=message)
    return PlannedJob(
        path,
        Decision(Action.RUN, "not decided yet"),
        job=job,
        parameters=parameters,
        preimage=preimage,
        key=key,
    )


def plan_run(context: RunContext) -> list[PlannedJob]:
    """Prepare every job and decide each, looking all keys up in one batch.

    A job that runs for want of a record with its key gets a field-level reason when
    a record with the same input data exists (one more batched, indexed lookup).
    """
    validated: ValidatedCache = {}
    planned = [
        prepare_job(path, context, validated)
        for path in find_job_files(context.options.input_directory)
    ]
    _warn_overridden_command_line(planned, context.command_line_parameters)
    keys = [job.key for job in planned if job.key is not None]
    existing = context.record_store.get_many(keys) if keys else {}
    first_with_key: dict[str, Path] = {}
    new: list[PlannedJob] = []
    for job in planned:
        if job.key is None:
            continue
        earlier = first_with_key.setdefault(job.key, job.job_file)
        record = existing.get(job.key)
        job.decision = decide(
            record,
            force=context.options.force,
            earlier_job=str(earlier) if earlier != job.job_file else None,
            manifest_found=_manifest_found(record, context) if record else None,
        )
        job.replace = record is not None
        if record is None and job.decision.action is Action.RUN and job.preimage is not None:
            new.append(job)
    reasons = change_reasons([job.preimage or {} for job in new], context.record_store)
    for job, reason in zip(new, reasons, strict=True):
        if reason is not None:
            job.decision = Decision(Action.RUN, reason)
    return planned


def _manifest_found(record: Mapping[str, Any], context: RunContext) -> bool | None:
    """One cheap look for the manifest a record's location should hold."""
    if context.options.force:
        return None  # it runs again anyway
    location = record.get("location")
    return context.result_store.has_manifest(location) if isinstance(location, str) else False


def _warn_overridden_command_line(
    planned: list[PlannedJob], command_line: Mapping[str, Any]
) -> None:
    """Say when a job's distributed_parameters override a value given on the command line."""
    for name in command_line:
        count = sum(
            1 for job in planned if job.job and name in (job.job.distributed_parameters or {})
        )
        if count:
            log.warning(
                "--%s from the command line is overridden by distributed_parameters in %d "
                "job(s): a job's own parameters take precedence",
                name,
                count,
            )


def run_job(planned: PlannedJob, context: RunContext) -> JobResult:
    """Run one planned job and, unless dry run, publish its files then its record."""
    name = str(planned.job_file)
    action = planned.decision.action
    if action is Action.INVALID:
        return JobResult(name, None, action.value, Status.FAILED, error=planned.error)
    if action is Action.SKIP:
        return JobResult(name, planned.key, action.value, Status.SKIPPED)
    assert planned.job and planned.parameters and planned.key and planned.preimage
    started = time.perf_counter()
    try:
        location = _run_and_publish(planned, context)
    except Exception as exc:  # any failure of one job must not stop the others
        message = _describe_failure(planned, exc)
        return JobResult(
            name, planned.key, action.value, Status.FAILED, time.perf_counter() - started, message
        )
    return JobResult(
        name,
        planned.key,
        action.value,
        Status.SUCCEEDED,
        time.perf_counter() - started,
        location=location,
    )


def _run_and_publish(planned: PlannedJob, context: RunContext) -> str:
    assert planned.job and planned.parameters and planned.key and planned.preimage
    key = planned.key
    results_dir = context.options.results_directory / key
    if results_dir.exists():
        shutil.rmtree(results_dir)  # a fresh folder: nothing of an earlier attempt mixes in
    results_dir.mkdir(parents=True)
    start = datetime.now(timezone.utc)
    # Jobs of one plan share validated parameters: each analysis gets its own copy, so
    # one that changes its parameters cannot change another job's (upstream D6).
    parameters = planned.parameters.model_copy(deep=True)
    returned = context.analysis.function(planned.job, parameters, results_dir)
    end = datetime.now(timezone.utc)
    outputs = outputs_to_json(returned, context.analysis.outputs_model, str(planned.job_file))
    location = context.result_store.location(key)
    record = build_record(
        RecordInputs(
            key=key,
            location=location,
            code=context.code,
            input_data=planned.preimage["input_data"],
            asset_names=dict(zip(planned.job.s3_location, planned.job.asset_name, strict=False)),
            file_location=planned.preimage["file_location"],
            parameters=planned.preimage["parameters"],
            outputs=outputs,
            experimenters=context.experimenters,
            start=start,
            end=end,
            query=_query_text(planned.job.query),
            codeocean=context.code.codeocean
            if isinstance(context.code, CodeOceanIdentity)
            else None,
        )
    )
    metadata = {name: value for name, value in record.items() if name != "_id"}
    _write_json(results_dir / METADATA_FILE_NAME, metadata)
    _write_json(results_dir / KEY_FILE_NAME, {"key": key, "preimage": planned.preimage})
    if not context.options.posting:
        return location
    manifest = build_manifest(key, results_dir)
    published = context.result_store.publish(key, results_dir, manifest)
    context.record_store.put(record, replace=planned.replace)  # last: means done
    return published


def outputs_to_json(returned: Any, model: type[BaseModel] | None, job_file: str) -> dict[str, Any]:
    """Turn what ``run_analysis`` returned into the record's ``output_parameters``.

    An outputs model instance is dumped, a dict is validated with the outputs model
    (when there is one), and ``None`` means no outputs.

    Raises
    ------
    JobInputError
        If the outputs do not validate or hold a value with no JSON form.
    """
    if returned is None:
        return {}
    try:
        if isinstance(returned, BaseModel):
            value = returned.model_dump(mode="json")
        elif isinstance(returned, Mapping) and model is not None:
            value = model.model_validate(dict(returned)).model_dump(mode="json")
        elif isinstance(returned, Mapping):
            value = dict(returned)
        else:
            raise JobInputError(
                job_file,
                "outputs",
                f"run_analysis returned a {type(returned).__name__}; return the outputs "
                "model, a dict, or None",
            )
    except ValidationError as exc:
        raise validation_error_to_input_error(job_file, exc, prefix="outputs.") from None
    try:
        canonical_json(value)
    except KeyComputationError as exc:
        raise JobInputError(job_file, "outputs", str(exc)) from None
    return value


def _query_text(query: str | dict[str, Any] | None) -> str | None:
    if query is None or isinstance(query, str):
        return query
    return json.dumps(query, sort_keys=True)


def _describe_failure(planned: PlannedJob, exc: Exception) -> str:
    if isinstance(exc, JobInputError):
        log.error("%s", exc)
        return str(exc)
    if isinstance(exc, RecordExistsError):
        message = f"{planned.job_file}: {exc}; another worker finished this key meanwhile"
        log.error("%s", message)
        return message
    if isinstance(exc, WrapperError):
        message = f"{planned.job_file}: {exc}"
        log.error("%s", message)
        return message
    # An exception from the analysis itself: its traceback is what the scientist needs.
    message = f"{planned.job_file}: run_analysis raised {type(exc).__name__}: {exc}"
    log.error("%s", message, exc_info=exc)
    return message


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


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


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
        Where the jobs that run are run (see :mod:`analysis_wrapper.executors`);
        one after another in this process by default.
    """
    options = context.options
    planned = plan_run(context)
    options.results_directory.mkdir(parents=True, exist_ok=True)
    if not planned:
        log.info("no job files in %s: nothing to do", options.input_directory / "job_dict")
        _write_no_jobs_placeholder(options)
    if options.plan:
        _write_json(
            options.results_directory / PLAN_FILE_NAME, [job.plan_entry() for job in planned]
        )
        summary = RunSummary(dry_run=True, plan=True)
        for job in planned:
            status = Status.FAILED if job.decision.action is Action.INVALID else Status.SKIPPED
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
        return summary
    summary = RunSummary(dry_run=options.dry_run)
    results: list[JobResult | None] = [None] * len(planned)
    to_run: list[int] = []
    for index, job in enumerate(planned):
        log.log(
            logging.ERROR if job.decision.action is Action.INVALID else logging.INFO,
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
            log.info(
                "[%d/%d] %s: succeeded in %.2f s -> %s",
                finished,
                len(to_run),
                Path(result.job_file).name,
                result.seconds,
                result.location,
            )
        else:
            log.info("[%d/%d] %s: failed", finished, len(to_run), Path(result.job_file).name)
        progress.update(result.status is Status.SUCCEEDED)

    with JobProgress(len(to_run)) as progress:
        (executor or run_serially)([planned[index] for index in to_run], context, done)
    summary.jobs = [result for result in results if result is not None]
    _write_json(options.results_directory / SUMMARY_FILE_NAME, summary.as_json())
    write_report(
        options.results_directory, summary, {str(j.job_file): j.decision.reason for j in planned}
    )
    return summary
