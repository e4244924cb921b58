"""Jobs with the same parameters share one validation, never one mutable object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from analysis_wrapper.config.settings import RunOptions
from analysis_wrapper.identity.key import CodeIdentity
from analysis_wrapper.job.job_file import Job
from analysis_wrapper.job.parameters import AnalysisParameters
from analysis_wrapper.run.runner import Analysis, RunContext, execute_run, plan_run
from analysis_wrapper.stores.local import LocalResultStore
from analysis_wrapper.stores.sqlite import SqliteRecordStore


class Parameters(AnalysisParameters):
    threshold: float = 0.5
    labels: list[str] = Field(default_factory=list)


SEEN: list[tuple[float, list[str]]] = []


def greedy_analysis(job: Job, parameters: Parameters, results_dir: Path) -> dict[str, Any]:
    """Record what it got, then change its parameters in place."""
    SEEN.append((parameters.threshold, list(parameters.labels)))
    parameters.threshold = 99.0
    parameters.labels.append("changed")
    return {}


def context_for(tmp_path: Path) -> RunContext:
    inputs = tmp_path / "data"
    (inputs / "job_dict").mkdir(parents=True)
    for name in ("a", "b", "c"):
        job = {"s3_location": [f"s3://bucket/{name}"], "distributed_parameters": {"labels": []}}
        (inputs / "job_dict" / f"{name}.json").write_text(json.dumps(job))
    return RunContext(
        analysis=Analysis(greedy_analysis, Parameters),
        options=RunOptions(inputs, tmp_path / "results", dry_run=True),
        code=CodeIdentity(url="https://example.org/repo", version="0" * 40),
        record_store=SqliteRecordStore(tmp_path / "records.sqlite", "t", read_only=True),
        result_store=LocalResultStore(tmp_path / "store"),
        fixed_parameters={"analysis_name": "shared"},
        command_line_parameters={},
        experimenters=("test@example.org",),
    )


def test_equal_parameter_sets_are_validated_once(tmp_path: Path) -> None:
    """Three jobs with equal merged parameters get one validated object in the plan."""
    planned = plan_run(context_for(tmp_path))
    assert len({id(job.parameters) for job in planned}) == 1
    assert len({job.key for job in planned}) == 3  # the inputs still tell them apart


def test_an_analysis_changing_its_parameters_cannot_reach_the_next_job(tmp_path: Path) -> None:
    """Each job gets its own copy: a mutation in one job is invisible to the next."""
    SEEN.clear()
    summary = execute_run(context_for(tmp_path))
    assert summary.failed == 0
    assert SEEN == [(0.5, []), (0.5, []), (0.5, [])]
