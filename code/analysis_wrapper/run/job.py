"""One job, start to end: claim its key, run the analysis, publish, record (last).

::

    claim the key (insert, or take over a stale, released, finished or -- with
        --retry_failed 1 -- failed claim); held elsewhere: skip, "in progress";
        held by a lost worker of this very run: wait out its lease, then claim
    a record appeared meanwhile: skip (another worker finished it)
    a heartbeat renews the claim while the job works (:mod:`.heartbeat`)
    the analysis, each try in a fresh hidden folder:
        run_analysis(job, parameters, <work folder>) -> outputs
        metadata.nd.json + key.json
    publish and record the finished folder, each try of it the same folder:
        fence (renew the claim) -> publish to <store>/<key>/<attempt>/, manifest last
        fence -> record (fenced by the claim's epoch in the store), naming that folder
    a transient failure: another try of that step (a bounded number); any other: the
        claim keeps the error, and the plan lists the job as failed until
        --retry_failed 1
    the claim ends "done" after the record is written

A worker whose claim was taken over while it stalled fails the fence (or the store
refuses its record) and publishes nothing more; its attempt folder holds only its own
files, so nothing mixes. One whose lease ran out because the store did not answer
publishes nothing and reports the job not done. A dry run takes no claim and posts
nothing. The finished folder takes the name ``<results_directory>/<key>/`` (the folder
the scientist opens); a failed try's folder never replaces a finished one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..record.fields import describe_record
from ..stores.claims import Acquired, Claim, Claims, Owner
from .context import JobResult, PlannedJob, RunContext, Status
from .decision import Action
from .heartbeat import Heartbeat
from .outputs import KEY_FILE_NAME, METADATA_FILE_NAME, outputs_to_json, write_json
from .tries import describe_failure, is_transient, run_tries, skipped

__all__ = [
    "KEY_FILE_NAME",
    "METADATA_FILE_NAME",
    "is_transient",
    "outputs_to_json",
    "run_job",
    "write_json",
]

log = logging.getLogger(__name__)


def run_job(planned: PlannedJob, context: RunContext) -> JobResult:
    """Run one planned job and, unless dry run, publish its files then its record.

    Never raises for a failure of the job itself: the result says what happened.
    """
    name = str(planned.job_file)
    action = planned.decision.action
    if action is Action.INVALID:
        return JobResult(name, None, action.value, Status.FAILED, error=planned.error)
    if action in (Action.SKIP, Action.IN_PROGRESS):
        return skipped(planned, action, planned.decision.reason)
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
        result, _ = run_tries(planned, context, None, replace=planned.replace)
        return result
    try:
        return _run_claimed(planned, context)
    except Exception as exc:  # the claim could not be taken or read: this job fails alone
        message = describe_failure(planned, exc)
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
        planned.key,
        label=planned.job_file.name,
        retry_failed=options.retry_failed,
        forced=options.force,
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
            return skipped(planned, Action.SKIP, done_by_other)
        with heartbeat:
            result, failure = run_tries(planned, context, heartbeat, replace=existing is not None)
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
            return skipped(planned, Action.SKIP, reason)
        reason = (
            f"not done: {acquired.claim.owner.describe()} of this run holds its claim and "
            "still renews it, but no longer reports to this run; run again once it ends"
        )
        log.error("%s: %s", planned.job_file.name, reason)
        return JobResult(
            name, planned.key, Action.IN_PROGRESS.value, Status.FAILED, error=reason, reason=reason
        )
    log.info("%s: skipped, %s", planned.job_file.name, acquired.reason)
    return skipped(planned, Action.IN_PROGRESS, acquired.reason)


def _done_meanwhile(existing: Mapping[str, Any] | None, context: RunContext) -> str | None:
    """Say why the job need not run after all: another worker recorded it since the plan."""
    if existing is None or context.options.force:
        return None
    location = existing.get("location")
    if isinstance(location, str) and context.result_store.has_manifest(location) is False:
        return None  # still an orphan: its files are gone, so it runs again
    return f"done meanwhile by another worker: {describe_record(existing)}"


def _quietly(end: Callable[..., bool], *args: Any) -> bool:
    """End a claim without letting a store error replace the job's own outcome."""
    try:
        return end(*args)
    except Exception as exc:
        log.warning("could not update the claim on %s: %s", args[0].key[:12], exc)
        return False
