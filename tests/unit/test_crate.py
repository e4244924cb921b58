"""The result folder's Process Run Crate: built from the record and the manifest, valid.

Validated with roc-validator's process-run-crate profile and read back with rocrate
(see tests/ro_crates.py), on a record with every kind of input the key knows: S3
assets and paths, file locations, input versions, metadata record ids, and parameters
of every JSON type.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from analysis_wrapper.identity.key import CodeIdentity, compute_key, key_preimage
from analysis_wrapper.record.crate import CRATE_NAME, build_crate, compact_json, input_id
from analysis_wrapper.record.metadata import RecordInputs, build_record
from analysis_wrapper.run.outputs import add_crate
from analysis_wrapper.stores.manifest import MANIFEST_NAME, build_manifest, file_sha256
from ro_crates import NOT_OURS_TO_KNOW, crate_values, validate

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TREE = "cd" * 32
START = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
END = START + timedelta(seconds=7)
CODE = CodeIdentity(
    url="https://github.com/example-lab/analysis",
    version=COMMIT,
    commit=COMMIT,
    name="analysis",
    tree=TREE,
)
INPUTS = ["s3://bucket/assets/ecephys 1", "sessions/s2"]
FILES = ["s3://bucket/assets/ecephys 1/spikes.nwb", "sessions/s2/units.csv"]
VERSIONS = {
    "s3://bucket/assets/ecephys 1/spikes.nwb": '"9b2cf535f27731c974343645a3985328"',
    "sessions/s2/units.csv": "604:1764720000000000000",
}
PARAMETERS: dict[str, Any] = {
    "cutoff": 0.5,
    "count": 20,
    "whole": 1.0,
    "label": "Zoë",
    "enabled": True,
    "grid": [1, 2.5],
    "options": {"b": 1, "a": None},
    "missing": None,
}
OUTPUT_FILES = {"units.csv": b"unit,isi\n1,0.1\n", "figures/units 1.png": b"\x89PNG fake"}


def job_record(preimage: dict[str, Any], key: str) -> dict[str, Any]:
    """The record the runner builds for this job, as a store hands it back (JSON)."""
    record = build_record(
        RecordInputs(
            key=key,
            location=f"s3://results/analysis/{key}/a1",
            code=CODE,
            input_data=preimage["input_data"],
            asset_names={"s3://bucket/assets/ecephys 1": "ecephys_1"},
            record_ids={"s3://bucket/assets/ecephys 1": "b3575f9d-aa45"},
            file_location=preimage["file_location"],
            parameters=preimage["parameters"],
            outputs={"units": 1},
            experimenters=["scientist@example.org"],
            start=START,
            end=END,
            input_versions=preimage.get("input_versions"),
        )
    )
    stored: dict[str, Any] = json.loads(json.dumps(record))
    return stored


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A result folder as the runner leaves it before publishing: files, crate, manifest."""
    preimage = key_preimage(CODE, INPUTS, FILES, PARAMETERS, VERSIONS)
    key = compute_key(preimage)
    record = job_record(preimage, key)
    folder = tmp_path / "result"
    for relative, data in OUTPUT_FILES.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
    manifest = add_crate(build_manifest(key, folder), folder, record)
    return folder, record, preimage, manifest


def test_the_crate_validates_as_a_process_run_crate(published: Any, validator_cache: Path) -> None:
    """Every MUST of Process Run Crate 0.5 and RO-Crate 1.1 holds; every SHOULD we can know."""
    folder = published[0]
    assert validate(folder, validator_cache) == []
    recommended = validate(folder, validator_cache, "RECOMMENDED")
    assert {check for check, _ in recommended} <= set(NOT_OURS_TO_KNOW), recommended


def test_the_validator_sees_a_broken_crate(published: Any, validator_cache: Path) -> None:
    """Not vacuous: a crate whose run names no code fails the profile's MUST."""
    folder = published[0]
    crate = json.loads((folder / CRATE_NAME).read_text(encoding="utf-8"))
    for entity in crate["@graph"]:
        entity.pop("instrument", None)
    (folder / CRATE_NAME).write_text(json.dumps(crate), encoding="utf-8")
    checks = {check for check, _ in validate(folder, validator_cache)}
    assert "process-run-crate-0.5_1.1" in checks


def test_the_crate_says_what_the_record_and_manifest_say(published: Any) -> None:
    """Read with rocrate: inputs, parameters, code, files and run are the record's."""
    folder, record, preimage, manifest = published
    said = crate_values(folder)
    process = record["processing"]["data_processes"][0]
    assert said["key"] == record["_id"]
    assert said["inputs"] == {
        "s3://bucket/assets/ecephys 1": {
            "type": "Dataset",
            "name": "ecephys_1",
            "version": None,
            "record_id": "b3575f9d-aa45",
        },
        "sessions/s2": {"type": "Dataset", "name": "s2", "version": None, "record_id": None},
        **{
            location: {
                "type": "File",
                "name": location.rsplit("/", 1)[1],
                "version": VERSIONS[location],
                "record_id": None,
            }
            for location in FILES
        },
    }
    assert set(said["parameters"]) == set(preimage["parameters"])
    for name, value in preimage["parameters"].items():
        given = said["parameters"][name]
        if isinstance(value, str | bool | int | float):
            assert given == value and type(given) is type(value), name
        else:
            assert given == compact_json(value) and json.loads(given) == value, name
    assert said["code"] == {
        "url": process["code"]["url"],
        "version": process["code"]["version"],
        "commit": process["code"]["commit_hash"],
        "tree": record["code_identity"]["tree"],
    }
    listed = {entry["path"]: entry for entry in manifest["files"] if entry["path"] != CRATE_NAME}
    assert said["files"] == {
        input_path: {"size": entry["size"], "sha256": entry["sha256"]}
        for input_path, entry in (
            (path.replace(" ", "%20"), entry) for path, entry in listed.items()
        )
    }
    assert said["agents"] == process["experimenters"]
    assert said["start"] == "2025-01-02T03:04:05.123+00:00"
    assert said["end"] == "2025-01-02T03:04:12.123+00:00"
    assert said["status"] == "http://schema.org/CompletedActionStatus"


def test_the_manifest_covers_the_crate_and_the_crate_lists_the_rest(published: Any) -> None:
    """The crate is one of the manifest's files (size, sha256); it lists every other one."""
    folder, _, _, manifest = published
    paths = [entry["path"] for entry in manifest["files"]]
    assert paths == sorted([*OUTPUT_FILES, CRATE_NAME])
    assert MANIFEST_NAME not in paths
    crate_entry = next(entry for entry in manifest["files"] if entry["path"] == CRATE_NAME)
    assert crate_entry["sha256"] == file_sha256(folder / CRATE_NAME)
    assert crate_entry["size"] == (folder / CRATE_NAME).stat().st_size
    ids = {entity["@id"] for entity in json.loads((folder / CRATE_NAME).read_text())["@graph"]}
    assert {"units.csv", "figures/units%201.png"} <= ids


def test_the_crate_is_a_pure_function_of_record_and_files(published: Any) -> None:
    """Built twice from the same record and files, the same crate; a file's change shows."""
    _, record, _, manifest = published
    files = [entry for entry in manifest["files"] if entry["path"] != CRATE_NAME]
    assert build_crate(record, files) == build_crate(record, files)
    changed = [{**files[0], "sha256": "0" * 64}, *files[1:]]
    assert build_crate(record, changed) != build_crate(record, files)


def test_an_analysis_file_named_like_the_crate_is_replaced(tmp_path: Path) -> None:
    """The crate's name is reserved: a file run_analysis wrote under it is not listed."""
    preimage = key_preimage(CODE, INPUTS[:1], [], {"x": 1})
    key = compute_key(preimage)
    folder = tmp_path / "result"
    folder.mkdir()
    (folder / CRATE_NAME).write_text("{}", encoding="utf-8")
    (folder / "out.txt").write_text("out\n", encoding="utf-8")
    manifest = add_crate(build_manifest(key, folder), folder, job_record(preimage, key))
    assert [entry["path"] for entry in manifest["files"]] == ["out.txt", CRATE_NAME]
    crate = json.loads((folder / CRATE_NAME).read_text(encoding="utf-8"))
    results = next(e for e in crate["@graph"] if e["@id"] == "#run")["result"]
    assert results == {"@id": "out.txt"}


@pytest.mark.parametrize(
    ("location", "folder", "expected"),
    [
        ("s3://bucket/a b", True, "s3://bucket/a%20b/"),
        ("s3://bucket/a/x.json", False, "s3://bucket/a/x.json"),
        ("sessions/s1", True, "#input:sessions/s1"),
        ("/abs/data/100%", True, "#input:/abs/data/100%25"),
    ],
)
def test_input_ids(location: str, folder: bool, expected: str) -> None:
    """S3 inputs keep their URL (escaped; a folder's ends in /); a path is a local id."""
    assert input_id(location, folder=folder) == expected
