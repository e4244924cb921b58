"""The runner and claims, in one process on the embedded stores.

What a run does with a key another worker holds, a job that failed before, a
transient failure, an interruption, and a record written between plan and claim.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from analysis_wrapper import TransientError
from analysis_wrapper.commands.status import claim_status, format_status
from analysis_wrapper.config.settings import RunOptions
from analysis_wrapper.errors import StoreError
from analysis_wrapper.identity.key import CodeIdentity
from analysis_wrapper.job.job_file import Job
from analysis_wrapper.job.parameters import AnalysisParameters
from analysis_wrapper.run.context import Analysis, RunContext
from analysis_wrapper.run.decision import Action
from analysis_wrapper.run.runner import execute_run, plan_run
from analysis_wrapper.stores.claims import Claims, Owner
from analysis_wrapper.stores.local import LocalResultStore
from analysis_wrapper.stores.sqlite import SqliteRecordStore
from conftest import without_retry_waits


class Parameters(AnalysisParameters):
    analysis_name: str = "claims"
    index: int = Field(default=0)


CALLS: list[int] = []
BEHAVIOUR: dict[int, Any] = {}
CURRENT_RESULTS: list[Path] = []


def analysis(job: Job, parameters: Parameters, results_dir: Path) -> dict[str, Any]:
    """Counts calls; ``BEHAVIOUR[index]`` may raise (an exception, a list to pop) or be called."""
    CALLS.append(parameters.index)
    CURRENT_RESULTS.append(results_dir)
    (results_dir / "out.txt").write_text(f"job {parameters.index}")
    behaviour = BEHAVIOUR.get(parameters.index)
    if callable(behaviour) and not isinstance(behaviour, BaseException | type):
        behaviour()
    elif isinstance(behaviour, list) and behaviour:
        raise behaviour.pop(0)
    elif isinstance(behaviour, BaseException):
        raise behaviour
    return {"index": parameters.index}


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    BEHAVIOUR.clear()
    CURRENT_RESULTS.clear()


def context_for(tmp_path: Path, jobs: int = 3, **options: Any) -> RunContext:
    inputs = tmp_path / "data"
    (inputs / "job_dict").mkdir(parents=True, exist_ok=True)
    for index in range(jobs):
        job = {"s3_location": [f"s3://bucket/{index}"], "distributed_parameters": {"index": index}}
        (inputs / "job_dict" / f"job_{index}.json").write_text(json.dumps(job))
    return RunContext(
        analysis=Analysis(analysis, Parameters),
        options=RunOptions(inputs, tmp_path / "results", dry_run=False, **options),
        code=CodeIdentity(url="https://example.org/repo", version="0" * 40),
        record_store=SqliteRecordStore(tmp_path / "records.sqlite", "t"),
        result_store=LocalResultStore(tmp_path / "store"),
        fixed_parameters={},
        command_line_parameters={},
        experimenters=("test@example.org",),
    )


def other_worker(context: RunContext, lease: float = 60.0) -> Claims:
    """A worker on another host: only its lease says whether it is alive."""
    store = SqliteRecordStore(tmp_store_path(context), "t")
    return Claims(store, Owner("elsewhere", 1, "other-run"), lease)


def tmp_store_path(context: RunContext) -> Path:
    store = context.record_store
    assert isinstance(store, SqliteRecordStore)
    return store.path


def key_of_job(context: RunContext, index: int) -> str:
    (job,) = [j for j in plan_run(context) if j.job_file.name == f"job_{index}.json"]
    assert job.key is not None
    return job.key


def test_a_key_held_elsewhere_is_skipped_as_in_progress(tmp_path: Path) -> None:
    """The plan says in-progress, names the holder, and the run skips the job."""
    context = context_for(tmp_path)
    held = key_of_job(context, 1)
    assert other_worker(context).acquire(held, label="job_1.json").acquired
    (planned,) = [j for j in plan_run(context) if j.key == held]
    assert planned.decision.action is Action.IN_PROGRESS
    assert "elsewhere pid 1" in planned.decision.reason
    summary = execute_run(context)
    assert sorted(CALLS) == [0, 2]
    (result,) = [j for j in summary.jobs if j.key == held]
    assert (result.action, result.status.value) == ("in-progress", "skipped")
    assert summary.as_json()["skipped"] == 1 and summary.failed == 0


def test_a_key_whose_lease_expired_is_taken_over(tmp_path: Path) -> None:
    """A claim past its lease does not stop the run: the job runs, epoch 2."""
    context = context_for(tmp_path)
    held = key_of_job(context, 1)
    Claims(other_worker(context).store, Owner("elsewhere", 1, "r"), 60, lambda: 0.0).acquire(held)
    summary = execute_run(context)
    assert sorted(CALLS) == [0, 1, 2] and summary.failed == 0
    claim = context.record_store.get_claims([held])[held]  # type: ignore[attr-defined]
    assert (claim.state, claim.epoch, claim.owner.run_id) == ("done", 2, context.run_id)


def test_a_failure_is_remembered_and_retried_only_when_asked(tmp_path: Path) -> None:
    """A failed claim keeps the error; the next run lists it failed; --retry_failed runs it."""
    context = context_for(tmp_path)
    BEHAVIOUR[2] = ValueError("no spikes in this session")
    first = execute_run(context)
    assert first.failed == 1 and sorted(CALLS) == [0, 1, 2]
    failed_key = key_of_job(context, 2)
    claim = context.record_store.get_claims([failed_key])[failed_key]  # type: ignore[attr-defined]
    assert claim.state == "failed" and claim.attempts == 1
    assert claim.failure.error_class == "ValueError"
    assert claim.failure.message == "no spikes in this session"
    CALLS.clear()
    second = execute_run(context)
    assert CALLS == []
    (result,) = [j for j in second.jobs if j.key == failed_key]
    assert (result.action, result.status.value) == ("failed", "failed")
    assert "ValueError: no spikes in this session" in (result.error or "")
    assert "--retry_failed 1" in (result.error or "")
    BEHAVIOUR.clear()
    retried = execute_run(context_for(tmp_path, retry_failed=True))
    assert CALLS == [2] and retried.failed == 0
    claim = context.record_store.get_claims([failed_key])[failed_key]  # type: ignore[attr-defined]
    assert (claim.state, claim.attempts, claim.failure) == ("done", 2, None)


def test_transient_failures_are_retried_a_bounded_number_of_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TransientError and ConnectionError get more tries, each in a fresh folder; then it fails."""
    without_retry_waits(monkeypatch)
    context = context_for(tmp_path, jobs=2, transient_retries=2)
    BEHAVIOUR[0] = [TransientError("busy"), ConnectionError("reset")]  # third try succeeds
    BEHAVIOUR[1] = [TransientError("busy")] * 3  # every try fails
    summary = execute_run(context)
    assert CALLS.count(0) == 3 and CALLS.count(1) == 3
    ok, failed = sorted(summary.jobs, key=lambda j: j.job_file)
    assert ok.status.value == "succeeded" and failed.status.value == "failed"
    claims = context.record_store.get_claims([ok.key, failed.key])  # type: ignore[attr-defined]
    assert claims[ok.key].attempts == 3 and claims[ok.key].state == "done"
    assert claims[failed.key].attempts == 3
    assert claims[failed.key].failure.error_class == "TransientError"
    folders = sorted(p.name for p in (tmp_path / "results").iterdir() if p.is_dir())
    assert folders == sorted([ok.key, failed.key]), "one folder per job, no leftovers"


def test_a_plain_error_is_not_retried(tmp_path: Path) -> None:
    """Only transient errors are tried again."""
    context = context_for(tmp_path, jobs=1, transient_retries=5)
    BEHAVIOUR[0] = KeyError("missing column")
    assert execute_run(context).failed == 1
    assert CALLS == [0]


def test_a_store_error_is_tried_again_only_when_transient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that refused fails the job at its first try; an unreachable one is retried."""
    without_retry_waits(monkeypatch)
    context = context_for(tmp_path, jobs=2, transient_retries=2)
    BEHAVIOUR[0] = StoreError("results store s3://b: access denied (AccessDenied, HTTP 403)")
    BEHAVIOUR[1] = [StoreError("results store s3://b: cannot reach S3", transient=True)] * 3
    with caplog.at_level(logging.WARNING, logger="analysis_wrapper.run.tries"):
        summary = execute_run(context)
    assert CALLS.count(0) == 1 and CALLS.count(1) == 3
    refused, unreachable = sorted(summary.jobs, key=lambda j: j.job_file)
    assert refused.status.value == "failed" and unreachable.status.value == "failed"
    claims = context.record_store.get_claims([refused.key, unreachable.key])  # type: ignore[attr-defined]
    assert claims[refused.key].attempts == 1
    assert claims[refused.key].failure.error_class == "StoreError"
    assert claims[unreachable.key].attempts == 3
    tries = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert len(tries) == 2 and all(line.startswith("job_1.json: try") for line in tries)


def test_a_results_store_that_cannot_work_fails_the_job_at_its_first_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A results folder with a file in its way: the real store's error is not retried."""
    without_retry_waits(monkeypatch)
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    context = dataclasses.replace(
        context_for(tmp_path, jobs=1, transient_retries=2),
        result_store=LocalResultStore(in_the_way / "store"),
    )
    summary = execute_run(context)
    assert CALLS == [0]
    (result,) = summary.jobs
    assert result.status.value == "failed"
    assert "cannot publish to results folder" in (result.error or "")
    claim = context.record_store.get_claims([result.key])[result.key]  # type: ignore[attr-defined]
    assert (claim.state, claim.attempts) == ("failed", 1)


def test_an_interrupted_job_releases_its_claim(tmp_path: Path) -> None:
    """Ctrl-C inside an analysis: the claim is released, so the next run takes it at once."""
    context = context_for(tmp_path, jobs=1)
    BEHAVIOUR[0] = KeyboardInterrupt()
    summary = execute_run(context)  # the run ends, says so, and writes its files
    assert (summary.interrupted, summary.released, summary.jobs) == (True, 1, [])
    key = key_of_job(context, 0)
    claim = context.record_store.get_claims([key])[key]  # type: ignore[attr-defined]
    assert claim.state == "released"
    BEHAVIOUR.clear()
    assert execute_run(context_for(tmp_path, jobs=1)).failed == 0
    assert CALLS == [0, 0]


def test_a_record_written_after_the_plan_is_not_run_again(tmp_path: Path) -> None:
    """Between plan and claim another worker finished the job: it is skipped, not rerun."""
    context = context_for(tmp_path, jobs=1)
    planned = plan_run(context)
    assert planned[0].decision.action is Action.RUN
    execute_run(context_for(tmp_path, jobs=1))  # "another worker" finishes it
    assert CALLS == [0]
    from analysis_wrapper.run.job import run_job

    result = run_job(planned[0], context)
    assert CALLS == [0]
    assert result.status.value == "skipped" and "done meanwhile" in result.reason


def test_status_groups_claims(tmp_path: Path) -> None:
    """status: running, stale, failed (with the error), released, and the done count."""
    context = context_for(tmp_path, jobs=4)
    BEHAVIOUR[3] = RuntimeError("disk full")
    execute_run(context)  # 0,1,2 done; 3 failed
    worker = other_worker(context, lease=60)
    live = worker.acquire("a" * 64, label="live.json").claim
    an_hour_ago = Claims(worker.store, worker.owner, 60, clock=lambda: time.time() - 3600)
    an_hour_ago.acquire("b" * 64, label="stale.json")
    store = context.record_store
    claims = store.list_claims()  # type: ignore[attr-defined]
    now = time.time()
    groups = {claim.label: claim_status(claim, now) for claim in claims}
    assert groups["live.json"] == "running" and groups["stale.json"] == "stale"
    assert groups["job_3.json"] == "failed" and groups["job_0.json"] == "done"
    text = format_status(claims, now, store.display_url, show_done=False)
    assert "running       1" in text and "stale         1" in text and "done          3" in text
    assert "RuntimeError: disk full" in text and "live.json" in text
    assert "job_0.json" not in text  # done jobs are counted, not listed
    assert live.key[:12] in text


def test_a_record_written_by_another_worker_during_the_run_wins(tmp_path: Path) -> None:
    """Another worker records the key while this one runs: skip, claim done, exit-0 run."""
    context = context_for(tmp_path, jobs=1)
    key = key_of_job(context, 0)
    other = SqliteRecordStore(tmp_store_path(context), "t")

    def record_meanwhile() -> None:
        other.put({"_id": key, "name": key, "location": "file:///elsewhere"})

    BEHAVIOUR[0] = record_meanwhile
    summary = execute_run(context)
    (result,) = summary.jobs
    assert (result.status.value, result.action) == ("skipped", "skip")
    assert "another worker recorded this key first" in result.reason
    assert summary.failed == 0
    assert context.record_store.get(key)["location"] == "file:///elsewhere"  # theirs stands
    claim = context.record_store.get_claims([key])[key]  # type: ignore[attr-defined]
    assert claim.state == "done"


def test_a_failed_try_never_replaces_a_good_local_folder(tmp_path: Path) -> None:
    """A forced re-run that fails leaves the good folder as it was, the failure beside it."""
    context = context_for(tmp_path, jobs=1)
    assert execute_run(context).failed == 0
    key = key_of_job(context, 0)
    good = tmp_path / "results" / key
    assert (good / "out.txt").read_text() == "job 0"
    before = {path.name: path.read_bytes() for path in good.iterdir()}

    def fail_halfway() -> None:
        (Path(CURRENT_RESULTS[-1]) / "out.txt").write_text("half written")
        raise RuntimeError("disk full")

    BEHAVIOUR[0] = fail_halfway
    forced = context_for(tmp_path, jobs=1, force=True)
    summary = execute_run(forced)
    assert summary.failed == 1
    assert {path.name: path.read_bytes() for path in good.iterdir()} == before
    failed = tmp_path / "results" / f"{key}.failed"
    assert (failed / "out.txt").read_text() == "half written"
    leftovers = [p.name for p in (tmp_path / "results").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_claim_of_this_run_still_renewed_elsewhere_is_reported_not_done(
    tmp_path: Path,
) -> None:
    """A worker of this run that Dask lost sight of still renews the key: "not done".

    The job is not silently skipped as in progress: it fails, so the run exits non-zero.
    """
    context = context_for(tmp_path, jobs=1, lease_seconds=1.0)
    key = key_of_job(context, 0)
    (planned,) = plan_run(context)
    # The same run on another host: only its lease says whether it is alive.
    ghost = Claims(
        SqliteRecordStore(tmp_store_path(context), "t"),
        Owner("lost-host", 4242, context.run_id),
        lease_seconds=1.0,
    )
    from analysis_wrapper.run.heartbeat import Heartbeat
    from analysis_wrapper.run.job import run_job

    with Heartbeat(ghost, ghost.acquire(key, label="job_0.json").claim, interval=0.1):
        result = run_job(planned, context)
    assert result.status.value == "failed"
    assert "not done" in (result.error or "") and "lost-host" in (result.error or "")
    assert CALLS == []


def test_an_older_shape_job_keeps_its_asset_ids_in_the_record(tmp_path: Path) -> None:
    """asset_id (the job shape before docdb_record_id) is kept, by the location's key form."""
    context = context_for(tmp_path, jobs=0)
    job = {"s3_location": ["s3://Example-Bucket/a"], "asset_id": ["50fa9416"], "asset_name": ["a"]}
    (tmp_path / "data" / "job_dict" / "job.json").write_text(json.dumps(job))
    (result,) = execute_run(context).jobs
    record = context.record_store.get(str(result.key))
    assert record is not None
    assert record["input_asset_ids"] == {"s3://example-bucket/a": "50fa9416"}


def test_a_record_names_its_assets_and_is_found_by_any_form_of_its_location(
    tmp_path: Path,
) -> None:
    """An upper-case bucket: the record names the asset; a query as typed finds it.

    Records hold the key form of a location (host in lower case), so both the asset's
    name and ``results find --input`` go through that form.
    """
    from analysis_wrapper.record.fields import asset_name
    from analysis_wrapper.record.query import normalise_input
    from analysis_wrapper.stores.base import RecordQuery, record_code

    context = context_for(tmp_path, jobs=0)
    job = {"s3_location": ["s3://Example-Bucket/Session 1"], "asset_name": ["session-1"]}
    (tmp_path / "data" / "job_dict" / "job.json").write_text(json.dumps(job))
    (result,) = execute_run(context).jobs
    record = context.record_store.get(str(result.key))
    assert record is not None
    (asset,) = record_code(record)["input_data"]
    assert asset["url"] == "s3://example-bucket/Session 1"
    assert asset_name(record, asset) == "session-1"
    query = RecordQuery(input_data=(normalise_input("S3://EXAMPLE-BUCKET/Session 1"),))
    assert [found["_id"] for found in context.record_store.find(query)] == [result.key]
