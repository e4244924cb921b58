"""Planning: prepare every job (parameters, key), then decide each in a few batched reads.

Per job, locally: job file -> Job -> parameters merged and validated -> key (pure).
Then, for all keys at once: the records with those keys, the claims on them (a job
another worker holds, or one that failed, does not run), and field-level reasons for
the jobs that run for want of a record.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .changes import change_reasons
from .claims import Claim
from .errors import JobInputError, KeyComputationError, StoreError
from .identity import compute_key, key_preimage
from .input_versions import InputVersions
from .inputs import bind_inputs
from .jobs import find_job_files, load_job
from .parameters import job_layers, merge_layers, validate_parameters
from .plan import Action, Decision, decide
from .run_context import PlannedJob, RunContext

log = logging.getLogger(__name__)

ValidatedCache = dict[str, tuple[BaseModel, dict[str, Any]]]
"""Validated parameters (and their JSON dump) by the canonical text of the merged values."""


def prepare_job(
    path: Path,
    context: RunContext,
    validated: ValidatedCache | None = None,
    versions: InputVersions | None = None,
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
    versions : InputVersions, optional
        The input half of the key (``INPUT_IDENTITY``), made once per plan; locations
        only when not given.
    """
    options = context.options
    try:
        job = load_job(path, options.input_directory)
        # Binding checks each file_location lies inside its asset: a job that cannot
        # work is invalid in the plan, not a failure halfway through a run.
        bind_inputs(job, settings=versions.settings if versions is not None else None)
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
            versions(job) if versions is not None else None,
        )
        key = compute_key(preimage)
    except (JobInputError, KeyComputationError, StoreError) as exc:
        message = str(exc) if isinstance(exc, JobInputError | StoreError) else f"{path}: {exc}"
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
    versions = InputVersions()  # reads INPUT_IDENTITY once per plan
    planned = [
        prepare_job(path, context, validated, versions)
        for path in find_job_files(context.options.input_directory)
    ]
    _warn_overridden_command_line(planned, context.command_line_parameters)
    keys = [job.key for job in planned if job.key is not None]
    existing = context.record_store.get_many(keys) if keys else {}
    claims = _claims_on(keys, context)
    now = time.time()
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
            claim=claims.get(job.key),
            now=now,
            retry_failed=context.options.retry_failed,
        )
        job.replace = record is not None
        if (
            record is None
            and job.key not in claims  # a takeover or a retry keeps its own reason
            and job.decision.action is Action.RUN
            and job.preimage is not None
        ):
            new.append(job)
    reasons = change_reasons([job.preimage or {} for job in new], context.record_store)
    for job, reason in zip(new, reasons, strict=True):
        if reason is not None:
            job.decision = Decision(Action.RUN, reason)
    return planned


def _claims_on(keys: list[str], context: RunContext) -> dict[str, Claim]:
    """The claims on ``keys``, in one batch."""
    return context.record_store.get_claims(keys) if keys else {}


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
