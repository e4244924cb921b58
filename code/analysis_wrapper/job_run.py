"""One job, start to end: claim its key, run the analysis, publish, record (last).

::

    claim the key (insert, or take over a stale, released, finished or -- with
        --retry_failed 1 -- failed claim); held elsewhere: skip, "in progress"
    a record appeared meanwhile: skip (another worker finished it)
    a heartbeat thread renews the claim while the job works
    each try, in a fresh attempt folder:
        run_analysis(job, parameters, <work folder>) -> outputs
        metadata.nd.json + key.json
        fence (renew the claim) -> publish to <store>/<key>/<attempt>/, manifest last
        fence -> record, whose location is that attempt's folder
    a transient failure: another try (a bounded number); any other: the claim keeps
        the error, and the plan lists the job as failed until --retry_failed 1
    the claim ends "done" after the record is written

A worker whose claim was taken over while it stalled fails the fence and publishes
nothing; its attempt folder holds only its own files, so nothing mixes. A dry run
takes no claim and posts nothing. Each try works in a hidden folder beside
``<results_directory>/<key>/`` and takes that name when it ends (the folder the
scientist opens), so a retried or taken-over attempt never writes into another's.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import atomic_write
from .claims import Claim, Claims, Failure, Owner
from .codeocean_run import CodeOceanIdentity
from .errors import (
    JobInputError,
    KeyComputationError,
    RecordExistsError,
    StoreError,
    TransientError,
    WrapperError,
)
from .heartbeat import Heartbeat
from .identity import canonical_json
from .jobs import validation_error_to_input_error
from .manifest import build_manifest
from .plan import Action
from .records import RecordInputs, build_record, describe_record
from .retry import RetryPolicy
from .run_context import JobResult, PlannedJob, RunContext, Status

log = logging.getLogger(__name__)

METADATA_FILE_NAME = "metadata.nd.json"
KEY_FILE_NAME = "key.json"

TRANSIENT_RETRY_POLICY = RetryPolicy(attempts=1, base_delay_s=1.0, max_delay_s=30.0)
"""The waits between tries after a transient failure (the count is an option)."""


class ClaimLostError(Exception):
    """Another worker took the key over while this attempt ran: it must not be published."""


def new_attempt_id() -> str:
    """A fresh attempt name: UTC time (sortable) and 6 random hex digits (unique)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def is_transient(exc: BaseException) -> bool:
    """Whether a failed try deserves another: see :class:`TransientError`.

    A store error says so itself: the store that raised it knows whether its backend
    was unreachable or throttled (worth another try) or refused (not).
    """
    if isinstance(exc, StoreError):
        return exc.transient
    return isinstance(exc, TransientError | ConnectionError | TimeoutError)


def run_job(planned: PlannedJob, context: RunContext) -> JobResult:
    """Run one planned job and, unless dry run, publish its files then its record.

    Never raises for a failure of the job itself: the result says what happened.
    """
    name = str(planned.job_file)
    action = planned.decision.action
    if action is Action.INVALID:
        return JobResult(name, None, action.value, Status.FAILED, error=planned.error)
    if action in (Action.SKIP, Action.IN_PROGRESS):
        return _skipped(planned, action, planned.decision.reason)
    if action is Action.FAILED:
        return JobResult(
            name,
            planned.key,
            action.value,
            Status.FAILED,
            error=f"{name}: {planned.decision.reason}",
            reason=planned.decision.reason,
        )
    assert planned.job and planned.parameters and planned.key and planned.preimage
    if not context.options.posting:
        result, _ = _tries(planned, context, None, replace=planned.replace)
        return result
    try:
        return _run_claimed(planned, context)
    except Exception as exc:  # the claim could not be taken or read: this job fails alone
        message = _describe_failure(planned, exc)
        return JobResult(name, planned.key, action.value, Status.FAILED, error=message)


def _run_claimed(planned: PlannedJob, context: RunContext) -> JobResult:
    """Claim the key, run the tries under a heartbeat, and end the claim."""
    assert planned.key is not None
    options = context.options
    claims = Claims(
        context.record_store,
        Owner.of_this_process(context.run_id),
        options.lease_seconds,
    )
    acquired = claims.acquire(
        planned.key, label=planned.job_file.name, retry_failed=options.retry_failed
    )
    if not acquired.acquired:
        if acquired.claim.state == "failed":
            reason = f"{acquired.reason}; --retry_failed 1 runs it again"
            return JobResult(
                str(planned.job_file),
                planned.key,
                Action.FAILED.value,
                Status.FAILED,
                error=f"{planned.job_file}: {reason}",
                reason=reason,
            )
        log.info("%s: skipped, %s", planned.job_file.name, acquired.reason)
        return _skipped(planned, Action.IN_PROGRESS, acquired.reason)
    heartbeat = Heartbeat(claims, acquired.claim)
    try:
        existing = context.record_store.get(planned.key)
        done_by_other = _done_meanwhile(existing, context)
        if done_by_other is not None:
            claims.finish(acquired.claim)
            log.info("%s: skipped, %s", planned.job_file.name, done_by_other)
            return _skipped(planned, Action.SKIP, done_by_other)
        with heartbeat:
            result, failure = _tries(planned, context, heartbeat, replace=existing is not None)
    except BaseException:
        # Interrupted (Ctrl-C, a store that cannot be read): let the next worker take
        # the key at once instead of after the lease.
        _quietly(claims.release, heartbeat.claim)
        raise
    if heartbeat.lost:
        return result
    if result.status is not Status.FAILED:  # recorded, by this worker or another
        if not _quietly(claims.finish, heartbeat.claim):
            log.warning(
                "%s: recorded, but its claim could not be marked done", planned.job_file.name
            )
    elif failure is not None:
        _quietly(claims.fail, heartbeat.claim, failure)
    return result


def _done_meanwhile(existing: Mapping[str, Any] | None, context: RunContext) -> str | None:
    """Say why the job need not run after all: another worker recorded it since the plan."""
    if existing is None or context.options.force:
        return None
    location = existing.get("location")
    if isinstance(location, str) and context.result_store.has_manifest(location) is False:
        return None  # still an orphan: its files are gone, so it runs again
    return f"done meanwhile by another worker: {describe_record(existing)}"


def _tries(
    planned: PlannedJob, context: RunContext, heartbeat: Heartbeat | None, *, replace: bool
) -> tuple[JobResult, Failure | None]:
    """Try the job until it succeeds, fails for good, or its claim is lost."""
    name = str(planned.job_file)
    key = planned.key
    action = planned.decision.action.value
    retries = context.options.transient_retries
    started = time.perf_counter()
    for number in range(1, retries + 2):
        attempt = new_attempt_id()
        try:
            location = _attempt(planned, context, attempt, heartbeat, replace=replace)
        except ClaimLostError as exc:
            log.warning("%s: %s", planned.job_file.name, exc)
            return _skipped(planned, Action.IN_PROGRESS, str(exc)), None
        except RecordExistsError:
            # A worker taken over after its last fence recorded first: its result stands
            # (one record, a complete attempt); this attempt's folder is left for gc.
            reason = "another worker recorded this key first; this attempt was not recorded"
            log.warning("%s: %s", planned.job_file.name, reason)
            return _skipped(planned, Action.SKIP, reason), None
        except Exception as exc:  # any failure of one job must not stop the others
            if is_transient(exc) and number <= retries:
                wait = TRANSIENT_RETRY_POLICY.delay(number)
                log.warning(
                    "%s: try %d of %d failed with %s: %s; trying again in %.1f s",
                    planned.job_file.name,
                    number,
                    retries + 1,
                    type(exc).__name__,
                    exc,
                    wait,
                )
                if heartbeat is not None and _count_attempt(heartbeat) is None:
                    reason = "the claim was taken over while waiting to try again"
                    return _skipped(planned, Action.IN_PROGRESS, reason), None
                time.sleep(wait)
                continue
            message = _describe_failure(planned, exc)
            seconds = time.perf_counter() - started
            failed = JobResult(name, key, action, Status.FAILED, seconds, message)
            return failed, Failure(type(exc).__name__, f"{exc}")
        seconds = time.perf_counter() - started
        return JobResult(name, key, action, Status.SUCCEEDED, seconds, location=location), None
    raise AssertionError("the loop returns on its last try")


def _attempt(
    planned: PlannedJob,
    context: RunContext,
    attempt: str,
    heartbeat: Heartbeat | None,
    *,
    replace: bool,
) -> str:
    """One try, in its own folder; returns the location of the result."""
    assert planned.key is not None
    key = planned.key
    final = context.options.results_directory / key
    work = context.options.results_directory / f".{key}.{attempt}"
    work.mkdir(parents=True)
    keep = True
    try:
        location = context.result_store.location(key, attempt)
        record = _analyse(planned, context, work, location)
        if not context.options.posting:
            return location
        manifest = build_manifest(key, work)
        _fence(heartbeat)
        published = context.result_store.publish(key, attempt, work, manifest)
        if published != location:
            raise StoreError(f"the results store published {key} to {published}, not {location}")
        _fence(heartbeat)
        context.record_store.put(record, replace=replace)  # last: means done
        return published
    except ClaimLostError:
        keep = False  # the key is another worker's now: its folder must not be touched
        raise
    finally:
        if keep:
            _settle(work, final)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _fence(heartbeat: Heartbeat | None) -> None:
    """Renew the claim now; raise if another worker holds the key."""
    if heartbeat is None:
        return
    if heartbeat.fence() is None:
        claim = heartbeat.claims.store.get_claims([heartbeat.claim.key]).get(heartbeat.claim.key)
        holder = claim.owner.describe() if claim is not None else "nobody"
        raise ClaimLostError(
            f"the claim was taken over (now held by {holder}) while this attempt ran; "
            "its files were not published"
        )


def _settle(work: Path, final: Path) -> None:
    """Give the attempt's folder the job's name, replacing an earlier attempt's."""
    try:
        if final.exists():
            retired = final.with_name(f"{work.name}.retired")
            os.replace(final, retired)
            shutil.rmtree(retired, ignore_errors=True)
        os.replace(work, final)
    except OSError as exc:  # the result is published; only the local copy is off
        log.warning("could not move %s to %s: %s", work, final, exc)


def _analyse(planned: PlannedJob, context: RunContext, work: Path, location: str) -> dict[str, Any]:
    """Run the analysis into ``work`` and write its metadata; return the record."""
    assert planned.job and planned.parameters and planned.key and planned.preimage
    key = planned.key
    start = datetime.now(timezone.utc)
    # Jobs of one plan share validated parameters: each analysis gets its own copy, so
    # one that changes its parameters cannot change another job's (upstream D6).
    parameters = planned.parameters.model_copy(deep=True)
    returned = context.analysis.function(planned.job, parameters, work)
    end = datetime.now(timezone.utc)
    outputs = outputs_to_json(returned, context.analysis.outputs_model, str(planned.job_file))
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
    write_json(work / METADATA_FILE_NAME, metadata)
    write_json(work / KEY_FILE_NAME, {"key": key, "preimage": planned.preimage})
    return record


def _skipped(planned: PlannedJob, action: Action, reason: str) -> JobResult:
    return JobResult(
        str(planned.job_file), planned.key, action.value, Status.SKIPPED, reason=reason
    )


def _count_attempt(heartbeat: Heartbeat) -> Claim | None:
    """Count a retry on the claim; a store that cannot be reached leaves it to the fence."""
    try:
        return heartbeat.count_attempt()
    except Exception as exc:
        log.warning("could not count the attempt on the claim: %s", exc)
        return heartbeat.claim


def _quietly(end: Callable[..., bool], *args: Any) -> bool:
    """End a claim without letting a store error replace the job's own outcome."""
    try:
        return end(*args)
    except Exception as exc:
        log.warning("could not update the claim on %s: %s", args[0].key[:12], exc)
        return False


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented UTF-8 JSON, whole or not at all.

    Into a job's work folder, so not fsynced: a publish fsyncs the copies it makes, and
    a work folder is never trusted after a crash.
    """
    atomic_write.write_json(path, value, durable=False)


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
        message = f"{planned.job_file}: {exc}; another worker recorded this key first"
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
