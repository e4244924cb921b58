"""Planning: prepare every job (parameters, key), then decide each in a few batched reads.

Per job, locally: job file -> Job -> parameters merged and validated -> key (pure).
Then, for all keys at once: the records with those keys, the claims on them (a job
another worker holds, or one that failed, does not run), and field-level reasons for
the jobs that run for want of a record.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import time
from collections.abc import Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..errors import JobInputError, KeyComputationError, StoreError
from ..identity.key import (
    CodeIdentity,
    canonical_json,
    compute_key,
    key_preimage,
    normal_unicode,
    scheme_1_key,
)
from ..identity.provenance import tree_of_commit
from ..inputs.versions import InputVersions
from ..job.job_file import bind_inputs, find_job_files, load_job
from ..job.parameters import job_layers, merge_job_parameters, merge_layers, validate_parameters
from ..record.changes import change_reasons, find_siblings
from ..record.fields import record_code_tree
from ..record.upstream import UPSTREAM, done_by_upstream
from ..stores.base import input_set_key, record_code
from ..stores.claims import Claim, owner_is_gone
from .context import PlannedJob, RunContext
from .decision import Action, Decision, decide

log = logging.getLogger(__name__)

ValidatedCache = dict[Hashable, tuple[BaseModel, dict[str, Any], str]]
"""Validated parameters, their JSON dump and its canonical text, by the merged values
(see :func:`_cache_key`)."""

_JSON_KEY = json.JSONEncoder(sort_keys=True, default=repr)
_EXACT_SCALARS = frozenset({str, int, bool, type(None)})
_UNDECIDED = Decision(Action.RUN, "not decided yet")


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
        bind_inputs(
            job,
            options.input_directory,
            settings=versions.settings if versions is not None else None,
        )
        fixed, command_line = context.fixed_parameters, context.command_line_parameters
        merged = merge_job_parameters(fixed, job, command_line)
        cache_key = _cache_key(merged)
        if validated is not None and cache_key in validated:
            parameters, dumped, dumped_json = validated[cache_key]
        else:
            _, sources = merge_layers(job_layers(fixed, job, command_line))
            parameters = validate_parameters(
                context.analysis.parameters_model, merged, sources, str(path)
            )
            dumped = parameters.model_dump(mode="json")
            dumped_json = canonical_json(dumped).decode("utf-8")
            if validated is not None:
                validated[cache_key] = (parameters, dumped, dumped_json)
        preimage = key_preimage(
            context.code,
            job.s3_location,
            job.file_location or [],
            dumped,
            versions(job) if versions is not None else None,
        )
        # What the jobs share is encoded once, not once per job.
        key = compute_key(preimage, {"code": _code_json(context.code), "parameters": dumped_json})
    except (JobInputError, KeyComputationError, StoreError) as exc:
        message = str(exc) if isinstance(exc, JobInputError | StoreError) else f"{path}: {exc}"
        return PlannedJob(path, Decision(Action.INVALID, message), error=message)
    return PlannedJob(
        path,
        _UNDECIDED,
        job=job,
        parameters=parameters,
        preimage=preimage,
        key=key,
    )


@functools.lru_cache(maxsize=8)
def _code_json(code: CodeIdentity) -> str:
    """The canonical text of the ``code`` field of the pre-images of ``code``."""
    return canonical_json(key_preimage(code, [], [], {})["code"]).decode("utf-8")


def _cache_key(merged: Mapping[str, Any]) -> Hashable:
    """A key equal for two merged parameter sets only if they are the same values.

    Plain values key by name, type and value: ``1``, ``1.0`` and ``True`` differ, and a
    float by its ``repr``, so ``0.0`` and ``-0.0`` differ too. Any other set (one
    holding a list or an object) keys by its JSON text. A tuple is about twice as
    quick to build as the text, and a plan makes one per job.
    """
    items: list[tuple[Any, ...]] = []
    for name, value in merged.items():
        kind = value.__class__
        if kind is float:
            items.append((name, repr(value)))
        elif kind in _EXACT_SCALARS:
            items.append((name, kind, value))
        else:
            return _JSON_KEY.encode(merged)
    items.sort()
    return tuple(items)


def plan_run(context: RunContext) -> list[PlannedJob]:
    """Prepare every job and decide each, looking all keys up in one batch.

    A job that runs for want of a record with its key gets a field-level reason when
    a record with the same input data exists (one more batched, indexed lookup).
    """
    with _collection_paused():
        return _plan(context)


def _plan(context: RunContext) -> list[PlannedJob]:
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
    manifests = _manifests_found(existing, context)
    now = time.time()
    first_with_key: dict[str, Path] = {}
    new: list[PlannedJob] = []
    for job in planned:
        if job.key is None:
            continue
        earlier = first_with_key.setdefault(job.key, job.job_file)
        record = existing.get(job.key)
        claim = claims.get(job.key)
        job.decision = decide(
            record,
            force=context.options.force,
            # Each job file is listed once, so another file is another Path object.
            earlier_job=str(earlier) if earlier is not job.job_file else None,
            manifest_found=manifests.get(job.key) if record else None,
            claim=claim,
            now=now,
            retry_failed=context.options.retry_failed,
            claim_owner_gone=claim is not None and owner_is_gone(claim),
        )
        job.replace = record is not None
        if (
            record is None
            and job.key not in claims  # a takeover or a retry keeps its own reason
            and job.decision.action is Action.RUN
            and job.preimage is not None
        ):
            new.append(job)
    found = find_siblings([job.preimage or {} for job in new], context.record_store)
    if found is None:
        return planned
    if not context.options.force:
        for job in new:
            _skip_if_done_by_upstream(job, found, context)
        _skip_if_done_under_scheme_1(
            [job for job in new if job.decision.action is Action.RUN], found, context
        )
    new = [job for job in new if job.decision.action is Action.RUN]
    reasons = change_reasons([job.preimage or {} for job in new], context.record_store, found)
    for job, reason in zip(new, reasons, strict=True):
        if reason is not None:
            job.decision = Decision(Action.RUN, reason)
    return planned


def _skip_if_done_by_upstream(
    job: PlannedJob, found: Mapping[tuple[str, ...], list[Any]], context: RunContext
) -> None:
    """Skip ``job`` when analysis-pipeline-utils' wrapper recorded it already."""
    preimage = job.preimage or {}
    upstream = done_by_upstream(
        preimage,
        found.get(input_set_key(preimage.get("input_data") or []), []),
        functools.partial(_same_parameters, preimage, context),
        functools.partial(_is_todays_code, context=context),
    )
    if upstream is not None:
        job.decision = Decision(Action.SKIP, f"done by {UPSTREAM}, record {upstream.get('_id')}")


def _skip_if_done_under_scheme_1(
    jobs: list[PlannedJob], found: Mapping[tuple[str, ...], list[Any]], context: RunContext
) -> None:
    """Skip the jobs a record made under key scheme 1 holds, for today's code.

    Scheme 1 keyed the commit; a record is a job's when its ``_id`` is the job's
    scheme-1 key at the commit it names, and that commit is today's code when its code
    tree is today's (or, for a release-pinned capsule, when it is today's release). As
    for a record found by its key, its manifest must exist (one batched check).
    """
    matches: dict[str, tuple[PlannedJob, Any, str]] = {}
    for job in jobs:
        preimage = job.preimage or {}
        for record in found.get(input_set_key(preimage.get("input_data") or []), []):
            version = record_code(dict(record)).get("version")
            location = record.get("location")
            if (
                isinstance(version, str)
                and isinstance(location, str)
                and record_code_tree(record) is None
                and record.get("_id") == scheme_1_key(preimage, version)
                and _is_todays_code(version, context)
            ):
                matches[location] = (job, record["_id"], version)
                break
    if not matches:
        return
    manifests = context.result_store.has_manifests(matches)
    for location, (job, record_id, version) in matches.items():
        if manifests.get(location):
            job.decision = Decision(
                Action.SKIP,
                f"done under key scheme 1, record {str(record_id)[:12]} "
                f"(its commit {version[:12]} has today's code)",
            )


def _is_todays_code(version: str, context: RunContext) -> bool:
    """Whether the code a scheme-1 record names (``version``) is the code that runs now."""
    code = context.code
    if code.tree is None:
        return version == code.version
    if context.code_dir is None or "+" in version:  # a +dirty version names no tree
        return False
    return code.tree == tree_of_commit(context.code_dir, code.paths, version)


def _same_parameters(
    preimage: Mapping[str, Any], context: RunContext, stored: Mapping[str, Any]
) -> bool:
    """Whether ``stored`` parameters, validated with the job's model, are the job's."""
    try:
        validated = context.analysis.parameters_model.model_validate(dict(stored))
    except ValueError:  # pydantic's ValidationError: not this job's parameters
        return False
    # In the form the pre-image holds them (JSON mode, text in NFC).
    return bool(normal_unicode(validated.model_dump(mode="json")) == preimage.get("parameters"))


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the length of a plan.

    A plan allocates about twenty container objects per job and keeps them (the job,
    its inputs, its pre-image, its decision) for the whole run. The collector kept
    walking them, to free nothing: with 10,000 jobs that was a fifth of the planning
    time. Afterwards the survivors go straight to the oldest generation, where they
    belong (``gc.freeze`` then ``gc.unfreeze``), rather than through one more pass of
    the young one, which cost another tenth; this is skipped if the program froze
    objects itself, which unfreezing would undo. The collector is then on again if it
    was, and a cycle made meanwhile is freed by its next full collection.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        if was_enabled:
            gc.enable()


def _claims_on(keys: list[str], context: RunContext) -> dict[str, Claim]:
    """The claims on ``keys``, in one batch."""
    return context.record_store.get_claims(keys) if keys else {}


def _manifests_found(
    records: Mapping[str, Mapping[str, Any]], context: RunContext
) -> dict[str, bool | None]:
    """Whether the manifest each record's location should hold exists, by key.

    One batched check for all records (a remote store lists many at once); nothing
    with ``--force``, since every job runs again anyway. A record without a location
    has no manifest.
    """
    if context.options.force:
        return {}
    locations = {key: record.get("location") for key, record in records.items()}
    found = context.result_store.has_manifests(
        location for location in locations.values() if isinstance(location, str)
    )
    return {
        key: found[location] if isinstance(location, str) else False
        for key, location in locations.items()
    }


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
