"""`analysis-wrapper results find` and find_records() over a posted example capsule."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analysis_wrapper import find_records
from conftest import CapsuleCopy, isolated_environment, make_capsule_copy

JOB_COUNT = 6


@pytest.fixture(scope="module")
def posted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapsuleCopy]:
    """A committed example capsule after one posting run on the embedded stores."""
    copy = make_capsule_copy(tmp_path_factory.mktemp("cli") / "capsule")
    with isolated_environment():
        done = copy.run("--dry_run", "0")
    assert done.returncode == 0, done.stderr
    yield copy


def stored_records(store: Path) -> dict[str, dict[str, Any]]:
    """Every record in the embedded SQLite store, by _id, read with plain sqlite3."""
    connection = sqlite3.connect(store / "records.sqlite")
    try:
        rows = connection.execute("SELECT _id, document FROM analysis_results").fetchall()
    finally:
        connection.close()
    return {key: json.loads(document) for key, document in rows}


def parameters_of(record: dict[str, Any]) -> dict[str, Any]:
    """The validated parameters a record stores."""
    value: dict[str, Any] = record["processing"]["data_processes"][0]["code"]["parameters"]
    return value


def found(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The records a `--format json` call printed; asserts it succeeded."""
    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)
    assert isinstance(records, list)
    return records


def find_json(capsule: CapsuleCopy, *params: str, cwd: Path | None = None) -> list[dict[str, Any]]:
    """Run `results find --format json` with ``--param`` filters."""
    args = ["results", "find", "--format", "json"]
    for param in params:
        args += ["--param", param]
    return found(capsule.cli(*args, cwd=cwd))


def test_json_lists_every_stored_document(posted: CapsuleCopy) -> None:
    """JSON format prints the stored documents, _id included, exactly as stored."""
    records = find_json(posted)
    assert len(records) == JOB_COUNT
    stored = stored_records(posted.store)
    assert {record["_id"] for record in records} == set(stored)
    for record in records:
        assert record == stored[record["_id"]]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (["isi_violations_cutoff=0.1"], 3),
        (["isi_violations_cutoff=0.5"], 3),
        (["isi_violations_cutoff=0.5", "analysis_tag=example"], 3),
        (["analysis_tag=example"], JOB_COUNT),
        (['analysis_tag="example"'], JOB_COUNT),
        (["min_spikes=20"], JOB_COUNT),
        (["min_spikes=20.0"], JOB_COUNT),
        (["refractory_period_ms=1.5", "censored_period_ms=0"], JOB_COUNT),
        (["isi_violations_cutoff=0.3"], 0),
        (["isi_violations_cutoff=0.5", "analysis_tag=other"], 0),
        (["min_spikes=21"], 0),
        (["min_spikes=twenty"], 0),
        # (a name the model lacks is refused: test_given_parameters.py)
    ],
)
def test_param_filters(posted: CapsuleCopy, params: list[str], expected: int) -> None:
    """--param KEY=VALUE keeps only records whose stored parameter equals the JSON value."""
    records = find_json(posted, *params)
    assert len(records) == expected
    for record in records:
        stored = parameters_of(record)
        for param in params:
            name, _, raw = param.partition("=")
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
            assert stored[name] == value


def test_table_lists_keys_and_count(posted: CapsuleCopy) -> None:
    """The default table format shows each key (at least its start) and a count line."""
    done = posted.cli("results", "find")
    assert done.returncode == 0, done.stderr
    for key in stored_records(posted.store):
        assert key[:12] in done.stdout
    lines = done.stdout.strip().splitlines()
    assert any(line.startswith(f"{JOB_COUNT} record(s)") for line in lines), done.stdout

    none = posted.cli("results", "find", "--param", "isi_violations_cutoff=0.3")
    assert none.returncode == 0, none.stderr
    assert "0 record(s)" in none.stdout
    for key in stored_records(posted.store):
        assert key[:12] not in none.stdout


@pytest.mark.parametrize("subfolder", ["code", "data/job_dict", "results"])
def test_capsule_found_from_a_subfolder(posted: CapsuleCopy, subfolder: str) -> None:
    """From inside the capsule, the command walks up to the folder with code/run_capsule.py."""
    records = find_json(posted, "isi_violations_cutoff=0.1", cwd=posted.root / subfolder)
    assert len(records) == 3


def test_capsule_option_from_unrelated_folder(posted: CapsuleCopy, tmp_path: Path) -> None:
    """--capsule DIR works from a folder outside any capsule."""
    done = posted.cli(
        "results", "find", "--format", "json", "--capsule", str(posted.root), cwd=tmp_path
    )
    assert len(found(done)) == JOB_COUNT


def test_outside_any_capsule_exits_2(posted: CapsuleCopy, tmp_path: Path) -> None:
    """Outside a capsule and without --capsule: exit 2 with a message saying what to do."""
    done = posted.cli("results", "find", cwd=tmp_path)
    assert done.returncode == 2
    assert "--capsule" in done.stderr
    assert "capsule" in done.stderr.replace("--capsule", "")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_capsule_option_without_code_folder_exits_2(posted: CapsuleCopy, tmp_path: Path) -> None:
    """--capsule naming a folder that is not a capsule exits 2."""
    done = posted.cli("results", "find", "--capsule", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert str(tmp_path) in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("param", ["novalue", "=0.5"])
def test_malformed_param_exits_2(posted: CapsuleCopy, param: str) -> None:
    """--param without KEY=VALUE is a usage error that shows the expected form."""
    done = posted.cli("results", "find", "--param", param)
    assert done.returncode == 2
    assert "KEY=VALUE" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_record_store_exits_1_without_secret(posted: CapsuleCopy) -> None:
    """DOCDB_HOST naming an unreachable MongoDB: exit 1, the store named, its password not."""
    from servers import free_port

    host = f"mongodb://user:secret@127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=100"
    done = posted.cli("results", "find", env={"DOCDB_HOST": host})
    assert done.returncode == 1
    assert "cannot read record store mongodb://***@127.0.0.1:" in done.stderr
    assert "secret" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_python_api_matches_cli(posted: CapsuleCopy, monkeypatch: pytest.MonkeyPatch) -> None:
    """find_records() returns the same records as the command, by path or by walking up."""
    from_cli = find_json(posted, "isi_violations_cutoff=0.1")
    from_api = find_records({"isi_violations_cutoff": 0.1}, capsule=posted.root)
    assert from_api == from_cli
    assert find_records(capsule=str(posted.root)) == find_json(posted)
    assert find_records({"min_spikes": 20.0}, capsule=posted.root) == find_json(posted)
    assert find_records({"isi_violations_cutoff": 0.3}, capsule=posted.root) == []
    monkeypatch.chdir(posted.code)
    assert find_records({"isi_violations_cutoff": 0.1}) == from_cli


def test_find_before_any_run_is_empty(capsule: CapsuleCopy) -> None:
    """A capsule that never posted has no records, and looking creates no store."""
    assert find_json(capsule) == []
    done = capsule.cli("results", "find")
    assert done.returncode == 0, done.stderr
    assert "0 record(s)" in done.stdout
    assert find_records(capsule=capsule.root) == []
    assert not capsule.store.exists()


def test_a_reader_that_goes_away_is_not_an_error(capsule: CapsuleCopy) -> None:
    """`analysis-wrapper status --format json | head -1`: exit 0, no traceback."""
    assert capsule.run("--dry_run", "0").returncode == 0
    reader = subprocess.Popen(
        [sys.executable, "-m", "analysis_wrapper", "status", "--all", "--format", "json"],
        cwd=capsule.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None
    reader.stdout.close()  # before anything is read: every write hits a closed pipe
    _, errors = reader.communicate(timeout=120)
    assert reader.returncode == 0, errors
    assert "Traceback" not in errors and "BrokenPipeError" not in errors
