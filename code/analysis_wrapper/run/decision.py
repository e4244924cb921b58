"""The run-or-skip decision: a pure function returning a named action and a reason.

The plan (``--plan 1``), a dry run and a real run all decide with :func:`decide`, so
what the plan says is what a run does.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..record.fields import describe_record
from ..stores.claims import Claim, describe_claim, takeover_reason


class Action(str, enum.Enum):
    """What happens to a job. Values are the words in ``plan.json`` and summaries."""

    RUN = "run"
    """No record has this key (or ``--force 1``): the analysis runs."""
    SKIP = "skip"
    """A record with this key exists: the result is already there."""
    INVALID = "invalid"
    """The job file or its parameters are wrong: nothing can run."""
    IN_PROGRESS = "in-progress"
    """Another worker holds a live claim on the key: it is skipped here."""
    FAILED = "failed"
    """An earlier attempt failed; ``--retry_failed 1`` runs it again."""


@dataclass(frozen=True)
class Decision:
    """An action and the reason for it, in words for the plan and the log."""

    action: Action
    reason: str


_NO_RECORD = Decision(Action.RUN, "no record with this key")
"""The most common decision, made once (a decision is immutable)."""


def decide(
    existing: Mapping[str, Any] | None,
    *,
    force: bool,
    earlier_job: str | None = None,
    manifest_found: bool | None = None,
    claim: Claim | None = None,
    now: float = 0.0,
    retry_failed: bool = False,
    claim_owner_gone: bool = False,
) -> Decision:
    """Decide whether a job with a valid key runs.

    Parameters
    ----------
    existing : mapping or None
        The record stored under the job's key, if any.
    force : bool
        ``--force 1``: run even if a record exists (and replace it).
    earlier_job : str or None
        An earlier job of this run with the same key, if any: it does the work once.
    manifest_found : bool or None
        Whether the existing record's manifest was found; ``False`` makes the record
        an orphan (its files never finished uploading, or were deleted) and the job
        runs again. ``None`` means it could not be checked: the record is trusted.
    claim : Claim or None
        The key's claim (see :mod:`analysis_wrapper.stores.claims`), if any: a live one held
        elsewhere, or a failure, stops a job that would otherwise run.
    now : float
        The time the claim's lease is compared with (Unix seconds).
    retry_failed : bool
        ``--retry_failed 1``: a job whose earlier attempt failed runs again.
    claim_owner_gone : bool
        Whether the claim's owner process is known to be gone (the caller looks: the
        decision itself does no I/O).
    """
    if earlier_job is not None:
        return Decision(Action.SKIP, f"same key as {earlier_job}, earlier in this run")
    if existing is not None and not force and manifest_found is not False:
        return Decision(Action.SKIP, f"already done: {describe_record(existing)}")
    if claim is not None and claim.state in ("running", "failed"):
        takeover = takeover_reason(
            claim, now, retry_failed=retry_failed, owner_gone=claim_owner_gone
        )
        if takeover is None and claim.state == "failed":
            return Decision(
                Action.FAILED, f"{describe_claim(claim, now)}; --retry_failed 1 runs it again"
            )
        if takeover is None:
            return Decision(Action.IN_PROGRESS, describe_claim(claim, now))
        if claim.state == "failed":
            return Decision(Action.RUN, f"--retry_failed 1: {describe_claim(claim, now)}")
        if existing is None:
            return Decision(Action.RUN, f"no record with this key; {takeover}")
    if existing is None:
        return _NO_RECORD
    if force:
        return Decision(Action.RUN, f"--force 1: replacing {describe_record(existing)}")
    location = existing.get("location")  # no manifest there: the record is an orphan
    return Decision(
        Action.RUN,
        f"orphaned: {describe_record(existing)} has no manifest at {location}; running again",
    )
