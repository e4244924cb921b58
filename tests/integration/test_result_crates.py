"""Every published result folder holds a valid Process Run Crate that says what its record says.

On the embedded stores (SQLite + a local folder) and on SecantusDB (MongoDB) + moto
(S3): the example's six jobs are posted, each folder's ``ro-crate-metadata.json`` is
validated with roc-validator (process-run-crate profile) and read back with rocrate,
and its inputs, parameters, code and files are compared with the record and manifest
the runner wrote. The record's own fields also give back its key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import boto3
import pytest

from analysis_wrapper.identity.key import compute_key
from analysis_wrapper.record.crate import CRATE_NAME, compact_json
from analysis_wrapper.record.preimage import record_preimage, reproduces_key
from conftest import CapsuleCopy, isolated_environment, make_capsule_copy
from ro_crates import NOT_OURS_TO_KNOW, crate_values, validate
from servers import TEST_AWS_ENV

JOB_COUNT = 6
EMAIL = "runner@example.org"


@pytest.fixture(scope="module")
def embedded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[CapsuleCopy, dict[str, str]]]:
    """The example posted to the embedded stores."""
    copy = make_capsule_copy(tmp_path_factory.mktemp("crates") / "capsule")
    env = {"CODEOCEAN_EMAIL": EMAIL}
    with isolated_environment():
        done = copy.run("--dry_run", "0", env=env)
    assert done.returncode == 0, done.stderr
    yield copy, env


@pytest.fixture(scope="module")
def on_servers(
    tmp_path_factory: pytest.TempPathFactory,
    mongo_uri: str,
    s3_endpoint: str,
) -> Iterator[tuple[CapsuleCopy, dict[str, str]]]:
    """The example posted to SecantusDB (records) and moto (results)."""
    aws = {**TEST_AWS_ENV, "AWS_ENDPOINT_URL": s3_endpoint}
    bucket = f"crates-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, **_credentials(aws)).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    env = {
        **aws,
        "CODEOCEAN_EMAIL": EMAIL,
        "DOCDB_HOST": mongo_uri,
        "DOCDB_DATABASE": f"crates_{uuid.uuid4().hex[:8]}",
        "DOCDB_COLLECTION": "isi_filtering",
        "ANALYSIS_BUCKET": f"s3://{bucket}/analysis",
    }
    copy = make_capsule_copy(tmp_path_factory.mktemp("crates-servers") / "capsule")
    with isolated_environment():
        done = copy.run("--dry_run", "0", env=env)
    assert done.returncode == 0, done.stderr
    yield copy, env


def _credentials(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


STORES = ["embedded", "on_servers"]


@pytest.fixture(params=STORES)
def posted(request: pytest.FixtureRequest) -> tuple[CapsuleCopy, dict[str, str]]:
    """Each store setting in turn."""
    value: tuple[CapsuleCopy, dict[str, str]] = request.getfixturevalue(request.param)
    return value


def records_of(capsule: CapsuleCopy, env: dict[str, str]) -> list[dict[str, Any]]:
    """Every record, as `results find --format json` prints it."""
    done = capsule.cli("results", "find", "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    records: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(records) == JOB_COUNT
    return records


def fetched(capsule: CapsuleCopy, env: dict[str, str], key: str, target: Path) -> Path:
    """The result folder of ``key`` as published: downloaded (sha256-checked) from its store."""
    if not env.get("ANALYSIS_BUCKET"):
        records = [r for r in records_of(capsule, env) if r["_id"] == key]
        return Path(unquote(urlsplit(records[0]["location"]).path))
    done = capsule.cli("results", "download", key, str(target), env=env)
    assert done.returncode == 0, done.stderr
    return target


def test_every_folder_holds_its_crate_and_the_manifest_covers_it(
    posted: tuple[CapsuleCopy, dict[str, str]], tmp_path: Path
) -> None:
    """The crate is a file of every published folder, listed by its manifest with its digest."""
    capsule, env = posted
    for record in records_of(capsule, env):
        folder = fetched(capsule, env, record["_id"], tmp_path / record["_id"])
        assert (folder / CRATE_NAME).is_file()
        if not env.get("ANALYSIS_BUCKET"):  # a local store: the folder as published
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            listed = {entry["path"] for entry in manifest["files"]}
            assert listed | {"manifest.json"} == {p.name for p in folder.iterdir()}
            assert CRATE_NAME in listed


def test_a_published_crate_validates(
    posted: tuple[CapsuleCopy, dict[str, str]], tmp_path: Path, validator_cache: Path
) -> None:
    """roc-validator: every MUST holds; of the SHOULDs, only those no capsule can know fail."""
    capsule, env = posted
    record = records_of(capsule, env)[0]
    folder = fetched(capsule, env, record["_id"], tmp_path / "one")
    assert validate(folder, validator_cache) == []
    recommended = validate(folder, validator_cache, "RECOMMENDED")
    assert {check for check, _ in recommended} <= set(NOT_OURS_TO_KNOW), recommended


def test_each_crate_round_trips_to_its_record_and_manifest(
    posted: tuple[CapsuleCopy, dict[str, str]], tmp_path: Path
) -> None:
    """Inputs, parameters, code url and commit, files with sha256: the record's, the manifest's."""
    capsule, env = posted
    for record in records_of(capsule, env):
        key = record["_id"]
        folder = fetched(capsule, env, key, tmp_path / key)
        said = crate_values(folder)
        process = record["processing"]["data_processes"][0]
        code = process["code"]
        assert said["key"] == key
        assert set(said["inputs"]) == {asset["url"] for asset in code["input_data"]}
        for location, given in said["inputs"].items():
            assert given["name"] == record["input_asset_names"][location]
            assert given["record_id"] == record["input_record_ids"][location]
        stored = {n: v for n, v in code["parameters"].items() if n != "file_location"}
        assert {
            name: value if isinstance(stored[name], str | bool | int | float) else json.loads(value)
            for name, value in said["parameters"].items()
        } == stored
        assert all(
            said["parameters"][n] == compact_json(v)
            for n, v in stored.items()
            if not isinstance(v, str | bool | int | float)
        )
        assert said["code"]["url"] == code["url"]
        assert said["code"]["commit"] == code["commit_hash"] == said["code"]["version"]
        assert said["code"]["tree"] == record["code_identity"]["tree"]
        manifest = (
            json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            if (folder / "manifest.json").exists()
            else _manifest_from_store(env, record)
        )
        assert said["files"] == {
            quote(entry["path"]): {"size": entry["size"], "sha256": entry["sha256"]}
            for entry in manifest["files"]
            if entry["path"] != CRATE_NAME
        }
        assert said["agents"] == [EMAIL] == process["experimenters"]
        assert said["status"] == "http://schema.org/CompletedActionStatus"


def _manifest_from_store(env: dict[str, str], record: dict[str, Any]) -> dict[str, Any]:
    """The manifest beside a record's S3 folder, read with boto3."""
    parts = urlsplit(record["location"])
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], **_credentials(env))
    body = client.get_object(Bucket=parts.netloc, Key=f"{parts.path.strip('/')}/manifest.json")
    manifest: dict[str, Any] = json.loads(body["Body"].read())
    return manifest


def test_each_record_gives_back_its_key(
    posted: tuple[CapsuleCopy, dict[str, str]], tmp_path: Path
) -> None:
    """The pre-image rebuilt from a stored record is its folder's key.json; its key is _id."""
    capsule, env = posted
    for record in records_of(capsule, env):
        key = record["_id"]
        rebuilt = record_preimage(record)
        assert compute_key(rebuilt) == key
        assert reproduces_key(record)
        folder = fetched(capsule, env, key, tmp_path / key)
        assert json.loads((folder / "key.json").read_text(encoding="utf-8")) == {
            "key": key,
            "preimage": rebuilt,
        }
