"""A plan over many recorded jobs whose results are on S3 checks their manifests in a batch."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from analysis_wrapper.config.settings import RunOptions
from analysis_wrapper.identity.key import CodeIdentity
from analysis_wrapper.job.job_file import Job
from analysis_wrapper.job.parameters import AnalysisParameters
from analysis_wrapper.run.context import Analysis, RunContext
from analysis_wrapper.run.decision import Action
from analysis_wrapper.run.planning import plan_run
from analysis_wrapper.stores.manifest import MANIFEST_NAME
from analysis_wrapper.stores.s3.store import S3ResultStore
from analysis_wrapper.stores.sqlite import SqliteRecordStore

JOBS = 400
ATTEMPT = "20261126T010203Z-3f9a2c"


class PlanParameters(AnalysisParameters):
    analysis_name: str = "plan-manifests"


def never_runs(job: Job, parameters: PlanParameters, results_dir: Path) -> dict[str, Any]:
    raise AssertionError("a plan runs nothing")


def context_with(folder: Path, result_store: S3ResultStore, *, force: bool = False) -> RunContext:
    """A run context over ``JOBS`` job files, records in SQLite, results on S3."""
    jobs = folder / "data" / "job_dict"
    if not jobs.exists():
        jobs.mkdir(parents=True)
        for n in range(JOBS):
            (jobs / f"job_{n:04d}.json").write_text(json.dumps({"s3_location": [f"s3://b/a{n}"]}))
    return RunContext(
        analysis=Analysis(never_runs, PlanParameters),
        options=RunOptions(folder / "data", folder / "results", plan=True, force=force),
        code=CodeIdentity(url="https://example.org/repo", version="0" * 40),
        record_store=SqliteRecordStore(folder / "records.sqlite", "t"),
        result_store=result_store,
        fixed_parameters={},
        command_line_parameters={},
        experimenters=("test@example.org",),
    )


def test_plan_checks_every_recorded_manifest_in_a_batch(
    aws_test_env: dict[str, str], tmp_path: Path
) -> None:
    """400 recorded jobs: all skip in under 40 S3 requests, bar the one whose manifest is gone."""
    client = boto3.session.Session().client("s3")
    bucket = f"test-{uuid.uuid4().hex[:24]}"
    client.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    store = S3ResultStore(bucket, "analysis/v1")
    context = context_with(tmp_path, store)
    keys = [job.key for job in plan_run(context) if job.key is not None]
    assert len(set(keys)) == JOBS
    objects = [
        f"analysis/v1/{key}/{ATTEMPT}/{name}"
        for key in keys
        for name in (MANIFEST_NAME, "metadata.nd.json", "key.json", "units.csv")
    ]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: client.put_object(Bucket=bucket, Key=name, Body=b"{}"), objects))
    for key in keys:
        context.record_store.put(
            {"_id": key, "name": key, "location": store.location(key, ATTEMPT)}
        )
    gone = keys[123]
    client.delete_object(Bucket=bucket, Key=f"analysis/v1/{gone}/{ATTEMPT}/{MANIFEST_NAME}")

    requests: list[str] = []
    lock = threading.Lock()

    def count(model: Any, **_: Any) -> None:
        with lock:
            requests.append(model.name)

    store._client().meta.events.register("before-call.s3", count)
    planned = {job.key: job.decision for job in plan_run(context)}
    assert planned[gone].action is Action.RUN
    assert planned[gone].reason.startswith("orphaned: "), planned[gone].reason
    assert {planned[key].action for key in keys if key != gone} == {Action.SKIP}
    assert "HeadObject" not in requests
    assert 0 < len(requests) < JOBS / 10, requests

    requests.clear()
    forced = plan_run(context_with(tmp_path, store, force=True))
    assert {job.decision.action for job in forced} == {Action.RUN}
    assert requests == []  # --force: nothing to check


@pytest.mark.parametrize("location", [None, 7])
def test_a_record_without_a_location_string_is_an_orphan(
    aws_test_env: dict[str, str], tmp_path: Path, location: Any
) -> None:
    """A record whose location is missing or not text has no manifest: its job runs again."""
    store = S3ResultStore(f"test-{uuid.uuid4().hex[:24]}", "p")
    context = context_with(tmp_path, store)
    key = next(job.key for job in plan_run(context) if job.key is not None)
    record: dict[str, Any] = {"_id": key, "name": key}
    if location is not None:
        record["location"] = location
    context.record_store.put(record)
    (job,) = [job for job in plan_run(context) if job.key == key]
    assert job.decision.action is Action.RUN
    assert job.decision.reason.startswith("orphaned: ")
