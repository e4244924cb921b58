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
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from . import atomic_write
from .claims import Acquired, Claim, Claims, Failure, Owner
from .codeocean_run import CodeOceanIdentity
from .errors import (
    FencedOutError,
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
from .locations import location_key_form
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
    """The claim is no longer surely ours: this attempt must not be published.

    ``taken_over`` tells the two cases apart: another worker holds the key (it does
    the job), or the lease ran out because the claim store did not answer (nobody may
    be doing the job: it is not done).
    """

    def __init__(self, message: str, *, taken_over: bool) -> None:
        super().__init__(message)
        self.taken_over = taken_over


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
    if not acquired.acquired and _held_by_this_run(acquired.claim, context):
        acquired = _after_a_lost_worker(
            planned, claims, acquired, retry_failed=options.retry_failed
        )
    if not acquired.acquired:
        return _not_acquired(planned, acquired, context)
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
        # Compare-and-set on our epoch: once another worker took the key over this
        # changes nothing; if nobody did (the store was slow), the next worker need
        # not wait out the lease.
        _quietly(claims.release, heartbeat.claim)
        return result
    if result.status is not Status.FAILED:  # recorded, by this worker or another
        if not _quietly(claims.finish, heartbeat.claim):
            log.warning(
                "%s: recorded, but its claim could not be marked done", planned.job_file.name
            )
    elif failure is not None:
        _quietly(claims.fail, heartbeat.claim, failure)
    return result


def _held_by_this_run(claim: Claim, context: RunContext) -> bool:
    """A live claim of this very run: a worker that ran the job was lost, and it came back.

    A run submits each key once, so its own claim met again means the job's first
    worker is gone (Dask reported it lost and rescheduled the task) or, rarely, still
    running it somewhere it can no longer be seen.
    """
    return claim.state == "running" and claim.owner.run_id == context.run_id


def _after_a_lost_worker(
    planned: PlannedJob, claims: Claims, acquired: Acquired, *, retry_failed: bool
) -> Acquired:
    """Wait out the lease of this run's lost worker, then claim the key (twice at most)."""
    for _ in range(2):
        claim = acquired.claim
        wait = max(0.0, claim.lease_expires - claims.clock()) + LEASE_MARGIN_S
        log.warning(
            "%s: its claim belongs to %s of this run, which no longer runs it here (a "
            "lost worker?); waiting %.0f s for its lease to end",
            planned.job_file.name,
            claim.owner.describe(),
            wait,
        )
        time.sleep(wait)
        acquired = claims.acquire(claim.key, label=planned.job_file.name, retry_failed=retry_failed)
        if acquired.acquired or acquired.claim.owner.run_id != claim.owner.run_id:
            return acquired
    return acquired


LEASE_MARGIN_S = 1.0
"""Waited past a lost worker's lease, so that clocks a little apart agree it ended."""


def _not_acquired(planned: PlannedJob, acquired: Acquired, context: RunContext) -> JobResult:
    """What a job whose key another worker holds (or that failed before) reports."""
    name = str(planned.job_file)
    if acquired.claim.state == "failed":
        reason = f"{acquired.reason}; --retry_failed 1 runs it again"
        return JobResult(
            name,
            planned.key,
            Action.FAILED.value,
            Status.FAILED,
            error=f"{planned.job_file}: {reason}",
            reason=reason,
        )
    if _held_by_this_run(acquired.claim, context):
        existing = context.record_store.get(acquired.claim.key)
        if existing is not None:
            reason = f"done meanwhile by a worker of this run: {describe_record(existing)}"
            return _skipped(planned, Action.SKIP, reason)
        reason = (
            f"not done: {acquired.claim.owner.describe()} of this run holds its claim and "
            "still renews it, but no longer reports to this run; run again once it ends"
        )
        log.error("%s: %s", planned.job_file.name, reason)
        return JobResult(
            name, planned.key, Action.IN_PROGRESS.value, Status.FAILED, error=reason, reason=reason
        )
    log.info("%s: skipped, %s", planned.job_file.name, acquired.reason)
    return _skipped(planned, Action.IN_PROGRESS, acquired.reason)


def _done_meanwhile(existing: Mapping[str, Any] | None, context: RunContext) -> str | None:
    """Say why the job need not run after all: another worker recorded it since the plan."""
    if existing is None or context.options.force:
        return None
    location = existing.get("location")
    if isinstance(location, str) and context.result_store.has_manifest(location) is False:
        return None  # still an orphan: its files are gone, so it runs again
    return f"done meanwhile by another worker: {describe_record(existing)}"


class _Analysed:
    """A try whose analysis finished: its folder, attempt, record and manifest."""

    def __init__(self, work: Path, attempt: str, record: dict[str, Any]) -> None:
        self.work = work
        self.attempt = attempt
        self.record = record


def _tries(
    planned: PlannedJob, context: RunContext, heartbeat: Heartbeat | None, *, replace: bool
) -> tuple[JobResult, Failure | None]:
    """Run the analysis, then publish and record its folder, each step with its own tries.

    A transient failure of the analysis runs it again, in a fresh folder; one of
    publishing or recording publishes the same finished folder again: an S3 hiccup
    never re-runs a long analysis.
    """
    started = time.perf_counter()
    try:
        analysed = _with_tries(
            planned, context, heartbeat, "", lambda: _analyse_once(planned, context)
        )
        if not context.options.posting:
            _settle(analysed.work, _final_folder(planned, context), succeeded=True)
            location = analysed.record["location"]
        else:
            location = _publish_and_record(planned, context, heartbeat, analysed, replace=replace)
    except _Ended as ended:
        ended.result.seconds = time.perf_counter() - started
        return ended.result, ended.failure
    seconds = time.perf_counter() - started
    result = JobResult(
        str(planned.job_file),
        planned.key,
        planned.decision.action.value,
        Status.SUCCEEDED,
        seconds,
        location=location,
    )
    return result, None


class _Ended(Exception):
    """A job ends before success: skipped (lost claim, recorded by another) or failed."""

    def __init__(
        self, result: JobResult, failure: Failure | None = None, *, lost: bool = False
    ) -> None:
        super().__init__(result.reason or result.error)
        self.result = result
        self.failure = failure
        self.lost = lost
        """The claim is another worker's now: nothing of this try may be kept as the job's."""


def _analyse_once(planned: PlannedJob, context: RunContext) -> _Analysed:
    """One try of the analysis, in a fresh hidden folder beside the job's results folder."""
    assert planned.key is not None
    attempt = new_attempt_id()
    work = context.options.results_directory / f".{planned.key}.{attempt}"
    work.mkdir(parents=True)
    try:
        location = context.result_store.location(planned.key, attempt)
        record = _analyse(planned, context, work, location)
    except BaseException:
        _settle(work, _final_folder(planned, context), succeeded=False)
        raise
    return _Analysed(work, attempt, record)


def _publish_and_record(
    planned: PlannedJob,
    context: RunContext,
    heartbeat: Heartbeat | None,
    analysed: _Analysed,
    *,
    replace: bool,
) -> str:
    """Publish the finished folder (manifest last), then write the record, fenced."""
    assert planned.key is not None
    key = planned.key
    final = _final_folder(planned, context)
    manifest = build_manifest(key, analysed.work)
    epoch = heartbeat.claim.epoch if heartbeat is not None else None

    def publish_then_record() -> str:
        _fence(heartbeat, "its files were not published")
        published = context.result_store.publish(key, analysed.attempt, analysed.work, manifest)
        if published != analysed.record["location"]:
            raise StoreError(
                f"the results store published {key} to {published}, not "
                f"{analysed.record['location']}"
            )
        _fence(heartbeat, "cannot write its record; its published files are left for gc")
        try:
            context.record_store.put(analysed.record, replace=replace, epoch=epoch)  # last
        except RecordExistsError:
            stored = context.record_store.get(key)
            if stored is None or stored.get("location") != published:
                raise
            # Our own write, whose reply was lost before an earlier try saw it.
        return published

    try:
        location = _with_tries(planned, context, heartbeat, "publishing: ", publish_then_record)
    except _Ended as ended:
        if ended.lost:  # the key is another worker's now: its folder must not be touched
            shutil.rmtree(analysed.work, ignore_errors=True)
        else:
            _settle(analysed.work, final, succeeded=True)  # the analysis itself succeeded
        raise
    _settle(analysed.work, final, succeeded=True)
    return location


T = TypeVar("T")


def _with_tries(
    planned: PlannedJob,
    context: RunContext,
    heartbeat: Heartbeat | None,
    step: str,
    action: Callable[[], T],
) -> T:
    """Run ``action`` until it succeeds, fails for good, or the claim is lost.

    Raises
    ------
    _Ended
        With the job's result when it does not succeed.
    """
    name = str(planned.job_file)
    key, action_name = planned.key, planned.decision.action.value
    retries = context.options.transient_retries
    last_error: Exception | None = None
    for number in range(1, retries + 2):
        try:
            return action()
        except ClaimLostError as exc:
            raise _claim_lost(planned, exc, last_error) from None
        except FencedOutError as exc:
            reason = f"{exc}; this attempt's folder is left for gc"
            log.warning("%s: %s", planned.job_file.name, reason)
            raise _Ended(_skipped(planned, Action.IN_PROGRESS, reason), lost=True) from None
        except RecordExistsError:
            # A worker taken over after its last fence recorded first: its result stands
            # (one record, a complete attempt); this attempt's folder is left for gc.
            reason = "another worker recorded this key first; this attempt was not recorded"
            log.warning("%s: %s", planned.job_file.name, reason)
            raise _Ended(_skipped(planned, Action.SKIP, reason)) from None
        except Exception as exc:  # any failure of one job must not stop the others
            if is_transient(exc) and number <= retries:
                last_error = exc
                wait = TRANSIENT_RETRY_POLICY.delay(number)
                log.warning(
                    "%s: %stry %d of %d failed with %s: %s; trying again in %.1f s",
                    planned.job_file.name,
                    step,
                    number,
                    retries + 1,
                    type(exc).__name__,
                    exc,
                    wait,
                )
                if heartbeat is not None and _count_attempt(heartbeat) is None:
                    lost = _lost_claim_error(heartbeat, "not tried again")
                    raise _claim_lost(planned, lost, exc) from None
                time.sleep(wait)
                continue
            message = _describe_failure(planned, exc)
            failed = JobResult(name, key, action_name, Status.FAILED, 0.0, message)
            raise _Ended(failed, Failure(type(exc).__name__, f"{exc}")) from None
    raise AssertionError("the loop returns or raises on its last try")


def _claim_lost(planned: PlannedJob, exc: ClaimLostError, last_error: Exception | None) -> _Ended:
    """How a job whose claim is lost ends: skipped if another worker has it, else failed."""
    if exc.taken_over:
        log.warning("%s: %s", planned.job_file.name, exc)
        return _Ended(_skipped(planned, Action.IN_PROGRESS, str(exc)), lost=True)
    # Nobody may hold the key: the job is not done, and the run must say so.
    message = f"{planned.job_file}: not done: {exc}"
    if last_error is not None:
        message += f"; the last error: {_describe(last_error)}"
    log.error("%s", message)
    action = planned.decision.action.value
    return _Ended(
        JobResult(str(planned.job_file), planned.key, action, Status.FAILED, 0.0, message)
    )


def _final_folder(planned: PlannedJob, context: RunContext) -> Path:
    """``<results_directory>/<key>``: the folder the scientist opens."""
    assert planned.key is not None
    return context.options.results_directory / planned.key


def _fence(heartbeat: Heartbeat | None, consequence: str) -> None:
    """Renew the claim now; raise if it is lost (taken over, or its lease ran out)."""
    if heartbeat is not None and heartbeat.fence() is None:
        raise _lost_claim_error(heartbeat, consequence)


def _lost_claim_error(heartbeat: Heartbeat, consequence: str) -> ClaimLostError:
    """Say how the claim was lost: another worker holds it, or its lease ran out."""
    ours = heartbeat.claim
    try:
        claim = heartbeat.claims.store.get_claims([ours.key]).get(ours.key)
    except Exception:  # the store that could not renew may not answer this either
        claim = None
    if claim is not None and (claim.epoch, claim.owner) != (ours.epoch, ours.owner):
        why, taken_over = f"the claim was taken over (now held by {claim.owner.describe()})", True
    else:
        why, taken_over = "the claim's lease ran out before it could be renewed", False
    return ClaimLostError(f"{consequence}: {why} while this attempt ran", taken_over=taken_over)


def _settle(work: Path, final: Path, *, succeeded: bool) -> None:
    """Give a try's folder the job's name, unless that would replace a better one.

    A folder whose analysis finished (it has ``metadata.nd.json``) replaces whatever
    is there. A failed try's folder replaces only another failed one; beside a
    finished folder it is kept as ``<key>.failed``, for the scientist to look into.
    """
    target = final
    if not succeeded and (final / METADATA_FILE_NAME).exists():
        target = final.with_name(f"{final.name}.failed")
    try:
        if target.exists():
            retired = target.with_name(f"{work.name}.retired")
            os.replace(target, retired)
            shutil.rmtree(retired, ignore_errors=True)
        os.replace(work, target)
    except OSError as exc:  # the result is published; only the local copy is off
        log.warning("could not move %s to %s: %s", work, target, exc)
    if not succeeded and target != final:
        log.warning("the failed try's files are in %s; %s keeps the last good ones", target, final)


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
            # By each location's key form: input_data holds them in that form.
            asset_names={
                location_key_form(location): name
                for location, name in zip(
                    planned.job.s3_location, planned.job.asset_name, strict=False
                )
            },
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


def _describe(exc: Exception) -> str:
    """An error in one line: its message, or its class when it has none."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


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
