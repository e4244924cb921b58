"""The types one run shares: the user's analysis, the run's context, jobs and results.

Kept apart from the code that plans (:mod:`.planning`), runs one job
(:mod:`.job`) and drives a run (:mod:`.runner`), which all use them.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..config.settings import RunOptions
from ..identity.key import CodeIdentity
from ..job.job_file import Job
from ..stores.base import RecordStore, ResultStore
from .decision import Action, Decision

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
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Names this run in the claims it takes (every worker process of the run shares it)."""


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
    interrupted: bool = False
    """Stopped by Ctrl-C (SIGINT): ``jobs`` lists only the jobs that ended."""
    released: int = 0
    """For an interrupted run: the claims of unfinished jobs it let go."""
    folder: str = ""
    """Where a dry run wrote its jobs' files (its one line names it: nothing was posted)."""
    explanation: list[str] = field(default_factory=list)
    """For ``--plan 1 --explain KEY``: how that job differs from the closest record."""

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
            **({"interrupted": True, "released": self.released} if self.interrupted else {}),
            "jobs": [job.summary_entry() for job in self.jobs],
        }

    def one_line(self) -> str:
        """A one-line summary for the end of the log."""
        if self.plan:
            counts = {a.value: sum(1 for j in self.jobs if j.action == a.value) for a in Action}
            listed = ", ".join(f"{n} {action}" for action, n in counts.items())
            return f"plan for {len(self.jobs)} job(s): {listed} (nothing ran)"
        if self.interrupted:
            return (
                f"interrupted: {len(self.jobs)} done, {self.released} released; run again to resume"
            )
        ran = self.count(Status.SUCCEEDED)
        mode = "dry run" if self.dry_run else ("posted" if ran else "nothing posted")
        where = f"; files in {self.folder}" if self.dry_run and self.folder else ""
        return (
            f"{len(self.jobs)} job(s): {ran} ran, "
            f"{self.count(Status.SKIPPED)} skipped, {self.failed} failed ({mode}){where}"
        )
