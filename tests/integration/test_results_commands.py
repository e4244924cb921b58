"""`results find` filters, `results show` and `results download`, over a posted example."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest

from analysis_wrapper import find_records
from conftest import CapsuleCopy, isolated_environment, make_capsule_copy

JOB_COUNT = 6
SESSION = "sessions/ecephys_612345_2025-03-14_10-02-11"


@pytest.fixture(scope="module")
def posted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapsuleCopy]:
    """A committed example capsule after one posting run on the embedded stores."""
    copy = make_capsule_copy(tmp_path_factory.mktemp("commands") / "capsule")
    with isolated_environment():
        done = copy.run("--dry_run", "0")
    assert done.returncode == 0, done.stderr
    yield copy


def find_json(capsule: CapsuleCopy, *args: str) -> list[dict[str, Any]]:
    """Run `results find --format json` with extra arguments; asserts success."""
    done = capsule.cli("results", "find", "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    records: list[dict[str, Any]] = json.loads(done.stdout)
    return records


def code_of(record: dict[str, Any]) -> dict[str, Any]:
    """The record's code block."""
    code: dict[str, Any] = record["processing"]["data_processes"][0]["code"]
    return code


def record_folder(record: dict[str, Any]) -> Path:
    """The local folder a record's ``file://`` location names (its attempt's folder)."""
    parts = urlsplit(record["location"])
    assert parts.scheme == "file", record["location"]
    return Path(unquote(parts.path))


def sha256(path: Path) -> str:
    """The sha256 hex digest of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_find_by_input_name_and_tag(posted: CapsuleCopy) -> None:
    """--input (normalised), --analysis-name and --tag keep only matching records."""
    by_input = find_json(posted, "--input", SESSION + "/")
    assert len(by_input) == 2
    assert all(SESSION in [a["url"] for a in code_of(r)["input_data"]] for r in by_input)
    assert find_json(posted, "--input", "sessions/./" + SESSION.split("/")[1]) == by_input
    assert find_json(posted, "--input", "sessions/none") == []
    assert len(find_json(posted, "--analysis-name", "Unit Filtering")) == JOB_COUNT
    assert find_json(posted, "--analysis-name", "Other") == []
    assert len(find_json(posted, "--tag", "example", "--param", "isi_violations_cutoff=0.1")) == 3
    assert find_json(posted, "--tag", "other") == []
    version = code_of(by_input[0])["version"]
    assert len(find_json(posted, "--code-version", version)) == JOB_COUNT
    assert find_json(posted, "--code-version", version[:12]) == []
    api = find_records(capsule=posted.root, input_data=SESSION, analysis_tag="example")
    assert api == by_input


def test_find_csv_has_one_row_per_record(posted: CapsuleCopy) -> None:
    """--format csv: key, finished, version, inputs, then one column per parameter."""
    done = posted.cli("results", "find", "--format", "csv", "--param", "isi_violations_cutoff=0.5")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(rows) == 3
    header = done.stdout.splitlines()[0].split(",")
    assert header[:4] == ["key", "finished", "version", "inputs"]
    assert "isi_violations_cutoff" in header and "min_spikes" in header
    records = {r["_id"]: r for r in find_json(posted, "--param", "isi_violations_cutoff=0.5")}
    for row in rows:
        record = records[row["key"]]
        assert row["inputs"] == code_of(record)["input_data"][0]["url"]
        assert row["version"] == code_of(record)["version"]
        assert row["isi_violations_cutoff"] == "0.5"
        assert row["analysis_name"] == "Unit Filtering"


def test_latest_keeps_newest_per_input_and_parameters(capsule: CapsuleCopy) -> None:
    """After a second run under a new commit, --latest lists only the newer records."""
    first = capsule.run("--dry_run", "0")
    assert first.returncode == 0, first.stderr
    (capsule.code / "notes.txt").write_text("a new version\n", encoding="utf-8")
    capsule.commit("new version")
    second = capsule.run("--dry_run", "0")
    assert second.returncode == 0, second.stderr
    everything = find_json(capsule)
    assert len(everything) == 2 * JOB_COUNT
    newest = find_json(capsule, "--latest")
    assert len(newest) == JOB_COUNT
    new_version = code_of(everything[-1])["version"]
    assert {code_of(r)["version"] for r in newest} == {new_version}
    old_version = code_of(everything[0])["version"]
    assert old_version != new_version
    old = find_json(capsule, "--code-version", old_version, "--latest")
    assert len(old) == JOB_COUNT
    assert len(find_json(capsule, "--input", SESSION, "--latest")) == 2


def test_show_prints_summary_and_files(posted: CapsuleCopy) -> None:
    """`results show PREFIX` prints key, location, code, inputs, parameters and file sizes."""
    record = find_json(posted, "--input", SESSION, "--param", "isi_violations_cutoff=0.1")[0]
    key = record["_id"]
    done = posted.cli("results", "show", key[:8])
    assert done.returncode == 0, done.stderr
    assert f"key         {key}" in done.stdout
    assert record["location"] in done.stdout
    assert f"@{code_of(record)['version']}" in done.stdout
    assert SESSION in done.stdout
    assert "isi_violations_cutoff = 0.1" in done.stdout
    folder = record_folder(record)
    for name in ("units.csv", "units.png", "metadata.nd.json"):
        size = (folder / name).stat().st_size
        assert any(line.split() == [str(size), name] for line in done.stdout.splitlines())


def test_show_unknown_or_ambiguous_key_exits_1(posted: CapsuleCopy, tmp_path: Path) -> None:
    """An unknown key and a prefix two records share each fail with one line and exit 1."""
    unknown = posted.cli("results", "show", "abcdef0123")
    assert unknown.returncode == 1
    assert "no record with key abcdef0123" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    short = posted.cli("results", "show", "abc")
    assert short.returncode == 2
    assert "at least 6" in short.stderr

    copy = tmp_path / "copy"
    shutil.copytree(posted.root, copy)
    record = find_json(posted)[0]
    twin_key = record["_id"][:10] + "0" * 54
    from analysis_wrapper.stores.sqlite import SqliteRecordStore

    store = SqliteRecordStore(copy / ".analysis_store" / "records.sqlite", "analysis_results")
    try:
        store.put({**record, "_id": twin_key, "name": twin_key})
    finally:
        store.close()
    ambiguous = posted.cli("results", "show", record["_id"][:8], "--capsule", str(copy))
    assert ambiguous.returncode == 1
    assert "ambiguous" in ambiguous.stderr
    assert len(ambiguous.stderr.strip().splitlines()) == 1
    full = posted.cli("results", "show", record["_id"], "--capsule", str(copy))
    assert full.returncode == 0, full.stderr


def check_download(capsule: CapsuleCopy, key: str, folder: Path, target: Path) -> None:
    """Download ``key`` into ``target`` and compare every file with ``folder``'s."""
    done = capsule.cli("results", "download", key[:10], str(target))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    names = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert names == sorted(f["path"] for f in manifest["files"])
    for entry in manifest["files"]:
        assert sha256(target / entry["path"]) == entry["sha256"]
        assert (target / entry["path"]).read_bytes() == (folder / entry["path"]).read_bytes()


def test_download_local_and_tampered(capsule: CapsuleCopy, tmp_path: Path) -> None:
    """Download checks sha256: a tampered stored file fails, naming it, with no file left."""
    done = capsule.run("--dry_run", "0")
    assert done.returncode == 0, done.stderr
    record = find_json(capsule, "--input", SESSION, "--param", "isi_violations_cutoff=0.1")[0]
    key = record["_id"]
    folder = record_folder(record)
    check_download(capsule, key, folder, tmp_path / "good")

    stored = folder / "units.csv"
    stored.write_bytes(stored.read_bytes().replace(b"unit_00", b"unit_99"))
    target = tmp_path / "bad"
    bad = capsule.cli("results", "download", key, str(target))
    assert bad.returncode == 1
    assert "units.csv" in bad.stderr
    assert "do not match its manifest" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (target / "units.csv").exists()
    assert not [p for p in target.iterdir() if p.name.startswith(".")]
    assert (target / "units.png").is_file()  # the intact files are there, checked


def test_download_from_s3(
    capsule: CapsuleCopy, aws_test_env: dict[str, str], s3_endpoint: str, tmp_path: Path
) -> None:
    """With ANALYSIS_BUCKET on S3, download fetches every file and checks its sha256."""
    bucket = f"results-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    env = {"ANALYSIS_BUCKET": f"s3://{bucket}/analysis"}
    done = capsule.run("--dry_run", "0", env=env)
    assert done.returncode == 0, done.stderr
    records = find_json(capsule, "--input", SESSION)
    key = records[0]["_id"]
    attempt = records[0]["location"].removeprefix(f"s3://{bucket}/analysis/{key}/")
    assert records[0]["location"] == f"s3://{bucket}/analysis/{key}/{attempt}"
    assert "/" not in attempt
    target = tmp_path / "s3"
    fetched = capsule.cli("results", "download", key[:10], str(target), env=env)
    assert fetched.returncode == 0, fetched.stderr
    assert "downloaded 5 file(s)" in fetched.stdout
    manifest = json.loads(
        s3.get_object(Bucket=bucket, Key=f"analysis/{key}/{attempt}/manifest.json")["Body"].read()
    )
    for entry in manifest["files"]:
        assert sha256(target / entry["path"]) == entry["sha256"]
    shown = capsule.cli("results", "show", key, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "files (5," in shown.stdout

    s3.put_object(Bucket=bucket, Key=f"analysis/{key}/{attempt}/units.csv", Body=b"tampered\n")
    tampered = capsule.cli("results", "download", key, str(tmp_path / "t"), env=env)
    assert tampered.returncode == 1
    assert "units.csv" in tampered.stderr
    assert not (tmp_path / "t" / "units.csv").exists()
