"""The tries of one claimed job: the analysis, then publishing and recording its folder.

Each step has its own tries: a transient failure of the analysis runs it again in a
fresh folder; one of publishing or recording publishes the same finished folder again,
so an S3 hiccup never re-runs a long analysis. Before publishing and before recording,
the claim is renewed (the fence); a claim lost on the way ends the job: skipped when
another worker has the key, not done when the lease ran out unrenewed.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..common.retry import RetryPolicy
from ..errors import (
    FencedOutError,
    JobInputError,
    RecordExistsError,
    StoreError,
    TransientError,
    WrapperError,
)
from ..report.progress import ByteProgress
from ..stores.claims import Claim, Failure
from ..stores.manifest import build_manifest
from .context import JobResult, PlannedJob, RunContext, Status
from .decision import Action
from .heartbeat import Heartbeat
from .outputs import METADATA_FILE_NAME, add_crate, analyse

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class _Analysed:
    """A try whose analysis finished: its work folder, its attempt, and its record."""

    work: Path
    attempt: str
    record: dict[str, Any]


def run_tries(
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
        record = analyse(planned, context, work, location)
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
    # The crate lists the files, the manifest lists the crate too, and goes last.
    manifest = add_crate(build_manifest(key, analysed.work), analysed.work, analysed.record)
    epoch = heartbeat.claim.epoch if heartbeat is not None else None

    def publish_then_record() -> str:
        _fence(heartbeat, "its files were not published")
        published = context.result_store.publish(
            key, analysed.attempt, analysed.work, manifest, progress=ByteProgress
        )
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
            raise _Ended(skipped(planned, Action.IN_PROGRESS, reason), lost=True) from None
        except RecordExistsError:
            # A worker taken over after its last fence recorded first: its result stands
            # (one record, a complete attempt); this attempt's folder is left for gc.
            reason = "another worker recorded this key first; this attempt was not recorded"
            log.warning("%s: %s", planned.job_file.name, reason)
            raise _Ended(skipped(planned, Action.SKIP, reason)) from None
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
            message = describe_failure(planned, exc)
            failed = JobResult(name, key, action_name, Status.FAILED, 0.0, message)
            raise _Ended(failed, Failure(type(exc).__name__, f"{exc}")) from None
    raise AssertionError("the loop returns or raises on its last try")


def _claim_lost(planned: PlannedJob, exc: ClaimLostError, last_error: Exception | None) -> _Ended:
    """How a job whose claim is lost ends: skipped if another worker has it, else failed."""
    if exc.taken_over:
        log.warning("%s: %s", planned.job_file.name, exc)
        return _Ended(skipped(planned, Action.IN_PROGRESS, str(exc)), lost=True)
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


def skipped(planned: PlannedJob, action: Action, reason: str) -> JobResult:
    """The result of a job that did not run here (``skip`` or ``in-progress``)."""
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


def _describe(exc: Exception) -> str:
    """An error in one line: its message, or its class when it has none."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def describe_failure(planned: PlannedJob, exc: Exception) -> str:
    """Log why a job failed, in one line (a traceback for the analysis's own errors)."""
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
