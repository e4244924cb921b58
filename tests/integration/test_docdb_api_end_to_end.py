"""The example capsule end to end with its records in the AIND DocDB REST API stand-in.

``DOCDB_HOST=127.0.0.1:<port>`` selects the REST backend; the capsule runs in its own
process and reaches the stand-in over HTTPS with the test CA and AWS test credentials
from the environment. Results go to a local folder (``ANALYSIS_BUCKET=file:///...``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from conftest import CapsuleCopy
from standins.docdb_api import DocDbApiStandIn
from standins.docdb_fixtures import DATABASE, SECRET_KEY, fresh_collection

JOB_COUNT = 6


def ok(done: subprocess.CompletedProcess[str]) -> None:
    """Assert the command succeeded, showing its output when it did not."""
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def run_summary(results: Path) -> dict[str, Any]:
    """The run_summary.json a run wrote into ``results``."""
    summary: dict[str, Any] = json.loads((results / "run_summary.json").read_text())
    return summary


def test_example_posts_to_the_docdb_api_then_skips_and_lists(
    capsule: CapsuleCopy,
    docdb_api: DocDbApiStandIn,
    docdb_api_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Posting run: 6 signed inserts; second run: 6 skips, no write; results find lists 6."""
    bucket = tmp_path / "bucket"
    collection = fresh_collection()
    env = {
        "DOCDB_HOST": docdb_api.host,
        "DOCDB_DATABASE": DATABASE,
        "DOCDB_COLLECTION": collection,
        "ANALYSIS_BUCKET": bucket.as_uri(),
    }

    first = capsule.run("--dry_run", "0", env=env)
    ok(first)
    summary = run_summary(capsule.results)
    assert (summary["ran"], summary["skipped"], summary["failed"]) == (JOB_COUNT, 0, 0)
    keys = {job["key"] for job in summary["jobs"]}
    stored = {doc["_id"]: doc for doc in docdb_api.mongo[DATABASE][collection].find({})}
    assert set(stored) == keys
    for key, record in stored.items():
        assert record["name"] == key
        attempt = record["location"].removeprefix(f"{bucket.as_uri()}/{key}/")
        assert record["location"] == f"{bucket.as_uri()}/{key}/{attempt}"
        assert "/" not in attempt
        assert (bucket / key / attempt / "manifest.json").is_file()
    calls = [call for call in docdb_api.calls if call.collection == collection]
    inserts = [call for call in calls if call.action == "insert_one"]
    assert [(call.status, call.signed) for call in inserts] == [(200, True)] * JOB_COUNT
    claim_writes = [c for c in docdb_api.calls if c.collection == f"{collection}_claims"]
    assert all(call.signed for call in claim_writes if call.method != "GET")

    second_results = tmp_path / "second"
    second = capsule.run("--dry_run", "0", "--results_directory", str(second_results), env=env)
    ok(second)
    again = run_summary(second_results)
    assert (again["ran"], again["skipped"], again["failed"]) == (0, JOB_COUNT, 0)
    assert {job["key"] for job in again["jobs"]} == keys
    calls = [call for call in docdb_api.calls if call.collection == collection]
    assert [call for call in calls if call.method != "GET"] == inserts  # no write when skipping

    listed = capsule.cli("results", "find", "--format", "json", env=env)
    ok(listed)
    records = json.loads(listed.stdout)
    assert sorted(record["_id"] for record in records) == sorted(keys)
    for record in records:
        assert record == stored[record["_id"]]

    for done in (first, second, listed):
        assert SECRET_KEY not in done.stdout + done.stderr


def test_wrong_aws_secret_fails_each_job_clearly_and_stores_nothing(
    capsule: CapsuleCopy,
    docdb_api: DocDbApiStandIn,
    docdb_api_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """A wrong secret: every job fails at its record with HTTP 403 named; no secret shown."""
    wrong_secret = "wrong-secret-e2e-Pq7Lm2Zx"
    collection = fresh_collection()
    env = {
        "DOCDB_HOST": docdb_api.host,
        "DOCDB_DATABASE": DATABASE,
        "DOCDB_COLLECTION": collection,
        "ANALYSIS_BUCKET": (tmp_path / "bucket").as_uri(),
        "AWS_SECRET_ACCESS_KEY": wrong_secret,
    }
    done = capsule.run("--dry_run", "0", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    summary = run_summary(capsule.results)
    assert (summary["ran"], summary["failed"]) == (0, JOB_COUNT)
    store_url = f"https://{docdb_api.host}/v1/{DATABASE}/{collection}"
    for job in summary["jobs"]:
        assert store_url in job["error"]
        assert "HTTP 403" in job["error"]
    shown = done.stdout + done.stderr + (capsule.results / "run_summary.json").read_text()
    assert wrong_secret not in shown
    assert SECRET_KEY not in shown
    assert "Traceback" not in shown
    assert docdb_api.mongo[DATABASE][collection].count_documents({}) == 0


def test_unreachable_api_host_exits_1_naming_the_store(
    capsule: CapsuleCopy, docdb_api_env: dict[str, str]
) -> None:
    """Results find against a closed port: exit 1 after bounded retries, one clear line."""
    from servers import free_port

    host = f"127.0.0.1:{free_port()}"
    done = capsule.cli("results", "find", env={"DOCDB_HOST": host})
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"record store https://{host}/v1/analysis/analysis_results" in done.stderr
    assert "cannot connect" in done.stderr
    assert "Traceback" not in done.stderr
