"""A transient failure of publishing or recording retries that step, not the analysis.

The stores are the real ones (moto's S3 server, SQLite, SecantusDB); a thin subclass
makes the first call of one step fail the way an outage does (a transient
StoreError), then lets every later call through to the real store.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from analysis_wrapper.config.settings import RunOptions
from analysis_wrapper.errors import StoreError
from analysis_wrapper.identity.key import CodeIdentity
from analysis_wrapper.job.job_file import Job
from analysis_wrapper.job.parameters import AnalysisParameters
from analysis_wrapper.run.context import Analysis, RunContext, Status
from analysis_wrapper.run.runner import execute_run
from analysis_wrapper.stores.base import RecordStore, ResultStore
from analysis_wrapper.stores.mongo.store import MongoRecordStore
from analysis_wrapper.stores.s3.store import S3ResultStore
from analysis_wrapper.stores.sqlite import SqliteRecordStore
from conftest import without_retry_waits

CALLS: list[str] = []


class Parameters(AnalysisParameters):
    analysis_name: str = "publish retries"
    index: int = 0


def analysis(job: Job, parameters: Parameters, results_dir: Path) -> dict[str, Any]:
    CALLS.append(str(parameters.index))
    (results_dir / "out.txt").write_text(f"job {parameters.index}")
    return {"index": parameters.index}


class FlakyS3(S3ResultStore):
    """The real S3 store, whose first ``failures`` publishes fail as an outage would."""

    failures = 1
    publishes = 0

    def publish(self, *args: Any, **kwargs: Any) -> str:
        type(self).publishes += 1
        if type(self).publishes <= self.failures:
            raise StoreError("results store: S3 still failing after 4 attempts", transient=True)
        return super().publish(*args, **kwargs)


def flaky_put(base: type[Any]) -> type[Any]:
    """The real record store ``base``, whose first put fails as an outage would."""

    class FlakyRecords(base):  # type: ignore[misc, valid-type]
        puts = 0

        def put(self, record: Any, **kwargs: Any) -> None:
            type(self).puts += 1
            if type(self).puts == 1:
                raise StoreError("record store: no server answered", transient=True)
            super().put(record, **kwargs)

    return FlakyRecords


@pytest.fixture(autouse=True)
def _reset(monkeypatch: pytest.MonkeyPatch) -> None:
    CALLS.clear()
    FlakyS3.publishes = 0
    without_retry_waits(monkeypatch)


@pytest.fixture
def bucket(aws_test_env: dict[str, str], s3_endpoint: str) -> str:
    name = f"retries-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    return name


def context_for(tmp_path: Path, records: RecordStore, results: ResultStore) -> RunContext:
    inputs = tmp_path / "data"
    (inputs / "job_dict").mkdir(parents=True)
    for index in range(2):
        job = {"s3_location": [f"s3://bucket/{index}"], "distributed_parameters": {"index": index}}
        (inputs / "job_dict" / f"job_{index}.json").write_text(json.dumps(job))
    return RunContext(
        analysis=Analysis(analysis, Parameters),
        options=RunOptions(inputs, tmp_path / "results", dry_run=False, transient_retries=2),
        code=CodeIdentity(url="https://example.org/repo", version="0" * 40),
        record_store=records,
        result_store=results,
        fixed_parameters={},
        command_line_parameters={},
        experimenters=("test@example.org",),
    )


def test_an_s3_outage_while_publishing_retries_the_publish_only(
    tmp_path: Path, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The first publish fails transiently: published on the next try, analysis ran once."""
    results = FlakyS3(bucket, "analysis")
    context = context_for(tmp_path, SqliteRecordStore(tmp_path / "r.sqlite", "t"), results)
    with caplog.at_level(logging.WARNING, logger="analysis_wrapper.run.tries"):
        summary = execute_run(context)
    assert summary.count(Status.SUCCEEDED) == 2
    assert sorted(CALLS) == ["0", "1"], "each analysis ran once"
    assert FlakyS3.publishes == 3  # one failed, then one per job
    assert any("publishing: try 1 of 3 failed" in r.getMessage() for r in caplog.records)
    for job in summary.jobs:
        record = context.record_store.get(str(job.key))
        assert record is not None and record["location"] == job.location
        manifest = results.read_manifest(str(job.location))
        assert manifest is not None
        assert {entry["path"] for entry in manifest["files"]} >= {"out.txt", "key.json"}
        claim = context.record_store.get_claims([str(job.key)])[str(job.key)]
        assert claim.state == "done"
    folders = sorted(p.name for p in (tmp_path / "results").iterdir() if p.is_dir())
    assert folders == sorted(str(job.key) for job in summary.jobs), "no leftover work folders"


def test_an_outage_of_s3_that_outlasts_the_tries_fails_the_job_after_one_analysis(
    tmp_path: Path, bucket: str
) -> None:
    """Every publish fails: the job fails, its analysis ran once, its files stay local."""
    FlakyS3.failures = 100
    try:
        results = FlakyS3(bucket, "analysis")
        context = context_for(tmp_path, SqliteRecordStore(tmp_path / "r.sqlite", "t"), results)
        summary = execute_run(context)
    finally:
        FlakyS3.failures = 1
    assert summary.failed == 2
    assert sorted(CALLS) == ["0", "1"]
    assert FlakyS3.publishes == 6  # three tries per job
    for job in summary.jobs:
        assert (tmp_path / "results" / str(job.key) / "out.txt").exists()
        claim = context.record_store.get_claims([str(job.key)])[str(job.key)]
        assert claim.state == "failed" and claim.attempts == 3


@pytest.mark.parametrize("backend", ["sqlite", "mongo"])
def test_a_record_store_outage_retries_the_record_not_the_analysis(
    tmp_path: Path, bucket: str, backend: str, request: pytest.FixtureRequest
) -> None:
    """The first record write fails transiently: recorded on the next try, analysis once."""
    if backend == "sqlite":
        records = flaky_put(SqliteRecordStore)(tmp_path / "r.sqlite", "t")
    else:
        uri = request.getfixturevalue("mongo_uri")
        records = flaky_put(MongoRecordStore)(uri, f"retries_{uuid.uuid4().hex[:8]}", "t")
    context = context_for(tmp_path, records, S3ResultStore(bucket, "analysis"))
    try:
        summary = execute_run(context)
        assert summary.failed == 0
        assert sorted(CALLS) == ["0", "1"]
        assert type(records).puts == 3
        for job in summary.jobs:
            record = records.get(str(job.key))
            assert record is not None and record["location"] == job.location
    finally:
        records.close()
