"""The run-or-skip decision: a pure function returning a named action and a reason.

The plan (``--plan 1``), a dry run and a real run all decide with :func:`decide`, so
what the plan says is what a run does.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .records import describe_record


class Action(str, enum.Enum):
    """What happens to a job. Values are the words in ``plan.json`` and summaries."""

    RUN = "run"
    """No record has this key (or ``--force 1``): the analysis runs."""
    SKIP = "skip"
    """A record with this key exists: the result is already there."""
    INVALID = "invalid"
    """The job file or its parameters are wrong: nothing can run."""


@dataclass(frozen=True)
class Decision:
    """An action and the reason for it, in words for the plan and the log."""

    action: Action
    reason: str


def decide(
    existing: Mapping[str, Any] | None,
    *,
    force: bool,
    earlier_job: str | None = None,
    manifest_found: bool | None = None,
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
    """
    if earlier_job is not None:
        return Decision(Action.SKIP, f"same key as {earlier_job}, earlier in this run")
    if existing is None:
        return Decision(Action.RUN, "no record with this key")
    if force:
        return Decision(Action.RUN, f"--force 1: replacing {describe_record(existing)}")
    if manifest_found is False:
        location = existing.get("location")
        return Decision(
            Action.RUN,
            f"orphaned: {describe_record(existing)} has no manifest at {location}; running again",
        )
    return Decision(Action.SKIP, f"already done: {describe_record(existing)}")
