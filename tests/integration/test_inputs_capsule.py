"""The example capsule end to end with its inputs on S3 and its asset records in MongoDB.

The example's sessions are uploaded to moto's S3 server and the job files point there;
the asset records (``metadata_index/data_assets`` in SecantusDB) hold a subject id the
example copies into its outputs. The capsule runs in its own process.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from pymongo import MongoClient

from conftest import CapsuleCopy
from servers import ServerProcess

JOB_COUNT = 6
SESSION_COUNT = 3


@pytest.fixture
def s3_capsule(
    capsule: CapsuleCopy, aws_test_env: dict[str, str], mongo_uri: str, tmp_path: Path
) -> tuple[CapsuleCopy, dict[str, str]]:
    """The example with its sessions on S3 and its asset records in a fresh database."""
    s3 = boto3.client("s3")
    bucket = f"sessions-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    for file in sorted((capsule.data / "sessions").rglob("*.json")):
        key = file.relative_to(capsule.data).as_posix()
        s3.put_object(Bucket=bucket, Key=key, Body=file.read_bytes())
    records = []
    for path in sorted(capsule.job_dir.glob("*.json")):
        job = json.loads(path.read_text())
        job["s3_location"] = [f"s3://{bucket}/{location}" for location in job["s3_location"]]
        path.write_text(json.dumps(job, indent=2))
        subject = job["group_metadata"]["subject_id"]
        records += [
            {"_id": record_id, "subject": {"subject_id": f"record-{subject}"}}
            for record_id in job["docdb_record_id"]
        ]
    capsule.commit("sessions on S3")
    database = f"meta_{uuid.uuid4().hex[:8]}"
    with MongoClient(mongo_uri) as client:
        client[database]["data_assets"].insert_many(records)
    env = {
        **aws_test_env,
        "METADATA_HOST": mongo_uri,
        "METADATA_DATABASE": database,
        "INPUT_CACHE_DIR": str(tmp_path / "input-cache"),
        "INPUT_BUCKET_FOR_TESTS": bucket,
    }
    return capsule, env


def outputs_of(results: Path) -> list[dict[str, Any]]:
    """The output_parameters of every job's metadata.nd.json under ``results``."""
    found = []
    for path in sorted(results.glob("*/metadata.nd.json")):
        record = json.loads(path.read_text())
        found.append(record["processing"]["data_processes"][0]["output_parameters"])
    return found


def get_requests(server: ServerProcess, bucket: str) -> int:
    """How many GETs of a session file the S3 server answered."""
    text = server.log_path.read_text(errors="replace")
    return text.count(f"GET /{bucket}/sessions/")


def test_example_reads_sessions_from_s3_and_subject_ids_from_asset_records(
    s3_capsule: tuple[CapsuleCopy, dict[str, str]], s3_server: ServerProcess
) -> None:
    """Six jobs read three S3 sessions (three downloads, shared) and their record's subject."""
    capsule, env = s3_capsule
    done = capsule.run("--dry_run", "1", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((capsule.results / "run_summary.json").read_text())
    assert (summary["ran"], summary["failed"]) == (JOB_COUNT, 0)
    outputs = outputs_of(capsule.results)
    assert len(outputs) == JOB_COUNT
    for output in outputs:
        assert output["record_subject_id"] == f"record-{output['subject_id']}"
    assert get_requests(s3_server, env["INPUT_BUCKET_FOR_TESTS"]) == SESSION_COUNT
    cached = sorted(p.name for p in Path(env["INPUT_CACHE_DIR"]).rglob("*") if p.is_file())
    assert cached.count("spike_times.json") == SESSION_COUNT


def test_example_without_a_record_source_outputs_none_and_still_runs(
    capsule: CapsuleCopy,
) -> None:
    """No METADATA_HOST or DOCDB_HOST: asset records are unavailable, the field is None."""
    done = capsule.run("--dry_run", "1", env={"METADATA_HOST": "", "INPUT_IDENTITY": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    outputs = outputs_of(capsule.results)
    assert len(outputs) == JOB_COUNT
    assert all(output["record_subject_id"] is None for output in outputs)
    assert all(output["subject_id"] for output in outputs)


def plan_actions(capsule: CapsuleCopy, env: dict[str, str]) -> dict[str, str]:
    """Run ``--plan 1``; return each job file's action."""
    done = capsule.run("--plan", "1", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    plan = json.loads((capsule.results / "plan.json").read_text())
    return {Path(entry["job_file"]).name: entry["action"] for entry in plan}


def test_input_identity_content_reruns_the_jobs_of_a_re_uploaded_session(
    s3_capsule: tuple[CapsuleCopy, dict[str, str]],
) -> None:
    """Default keys ignore a re-upload; INPUT_IDENTITY=content reruns just its two jobs.

    Needs the runner to pass ``input_versions`` to ``key_preimage`` when
    ``INPUT_IDENTITY=content`` (see analysis_wrapper.inputs.job_inputs).
    """
    capsule, env = s3_capsule
    content = {**env, "INPUT_IDENTITY": "content"}
    for mode in (env, content):
        done = capsule.run("--dry_run", "0", env=mode)
        assert done.returncode == 0, done.stdout + done.stderr
        assert set(plan_actions(capsule, mode).values()) == {"skip"}
    bucket = env["INPUT_BUCKET_FOR_TESTS"]
    session = "ecephys_654321_2025-04-02_14-20-05"
    key = f"sessions/{session}/spike_times.json"
    body = json.loads((capsule.data / key).read_text())
    body["units"].pop(sorted(body["units"])[0])
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())

    assert set(plan_actions(capsule, env).values()) == {"skip"}  # locations did not move
    actions = plan_actions(capsule, content)
    assert {name for name, action in actions.items() if action == "run"} == {
        f"{session}_cutoff-0.10.json",
        f"{session}_cutoff-0.50.json",
    }
    assert list(actions.values()).count("skip") == JOB_COUNT - 2
