"""The example end to end on the production backends: MongoDB records, S3 results."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from pymongo import MongoClient

from conftest import CapsuleCopy

JOB_COUNT = 6


@pytest.fixture
def production_env(
    mongo_uri: str, s3_endpoint: str, aws_test_env: dict[str, str]
) -> dict[str, str]:
    """Environment for a capsule run: a fresh Mongo collection and a fresh S3 bucket."""
    bucket = f"results-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    return {
        **aws_test_env,
        "DOCDB_HOST": mongo_uri,
        "DOCDB_DATABASE": f"analysis_{uuid.uuid4().hex[:8]}",
        "DOCDB_COLLECTION": "isi_filtering",
        "ANALYSIS_BUCKET": f"s3://{bucket}/analysis/example",
    }


def stored(env: dict[str, str]) -> list[dict[str, object]]:
    client: MongoClient[dict[str, object]] = MongoClient(env["DOCDB_HOST"])
    try:
        return list(client[env["DOCDB_DATABASE"]][env["DOCDB_COLLECTION"]].find())
    finally:
        client.close()


def objects(env: dict[str, str]) -> dict[str, bytes]:
    bucket = env["ANALYSIS_BUCKET"].removeprefix("s3://").split("/")[0]
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in listed
    }


def test_example_posts_to_mongodb_and_s3_then_skips(
    capsule: CapsuleCopy, production_env: dict[str, str]
) -> None:
    """Six records in MongoDB, each pointing at its S3 folder with a manifest; re-runs skip."""
    done = capsule.run("--dry_run", "0", env=production_env)
    assert done.returncode == 0, done.stderr
    records = stored(production_env)
    assert len(records) == JOB_COUNT
    files = objects(production_env)
    bucket_url = production_env["ANALYSIS_BUCKET"]
    for record in records:
        key = record["_id"]
        attempt = record["location"].removeprefix(f"{bucket_url}/{key}/")
        assert record["location"] == f"{bucket_url}/{key}/{attempt}"
        assert "/" not in attempt
        prefix = f"analysis/example/{key}/{attempt}/"
        manifest = json.loads(files[prefix + "manifest.json"])
        assert {entry["path"] for entry in manifest["files"]} == {
            "units.csv",
            "units.png",
            "metadata.nd.json",
            "key.json",
            "ro-crate-metadata.json",
        }
        assert all(len(files[prefix + e["path"]]) == e["size"] for e in manifest["files"])
    assert not (capsule.store / "records.sqlite").exists()  # nothing embedded was used
    again = capsule.run("--dry_run", "0", env=production_env)
    assert again.returncode == 0, again.stderr
    summary = json.loads((capsule.results / "run_summary.json").read_text())
    assert (summary["ran"], summary["skipped"]) == (0, JOB_COUNT)
    found = capsule.cli("results", "find", "--format", "json", env=production_env)
    assert found.returncode == 0, found.stderr
    assert {r["_id"] for r in json.loads(found.stdout)} == {r["_id"] for r in records}


def test_deleted_manifest_on_s3_makes_an_orphan_that_runs_again(
    capsule: CapsuleCopy, production_env: dict[str, str]
) -> None:
    """A record whose S3 manifest is gone is orphaned: its job alone runs again."""
    assert capsule.run("--dry_run", "0", env=production_env).returncode == 0
    locations = {str(r["_id"]): str(r["location"]) for r in stored(production_env)}
    orphan = sorted(locations)[0]
    bucket_url = production_env["ANALYSIS_BUCKET"]
    bucket = bucket_url.removeprefix("s3://").split("/")[0]
    lost = locations[orphan].removeprefix(f"{bucket_url}/")
    boto3.client("s3", endpoint_url=production_env["AWS_ENDPOINT_URL"]).delete_object(
        Bucket=bucket, Key=f"analysis/example/{lost}/manifest.json"
    )
    done = capsule.run("--dry_run", "0", env=production_env)
    assert done.returncode == 0, done.stderr
    assert "orphaned" in done.stderr
    summary = json.loads((capsule.results / "run_summary.json").read_text())
    assert (summary["ran"], summary["skipped"]) == (1, JOB_COUNT - 1)
    relocated = {str(r["_id"]): str(r["location"]) for r in stored(production_env)}[orphan]
    assert relocated != locations[orphan]  # a new attempt, in its own folder
    new = relocated.removeprefix(f"{bucket_url}/")
    assert f"analysis/example/{new}/manifest.json" in objects(production_env)
    assert f"analysis/example/{lost}/manifest.json" not in objects(production_env)
    assert len(stored(production_env)) == JOB_COUNT
