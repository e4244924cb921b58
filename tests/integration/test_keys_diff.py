"""`analysis-wrapper keys diff KEY1 KEY2` and `--plan 1 --explain KEY` on real stores.

The example is posted three times, on the embedded SQLite store and on SecantusDB
(MongoDB): as it is, with ``--min_spikes 30``, and after a commit that changes the code.
Keys diff then names the parameter, the input and the code change, each in its group
and in the plan's words; --explain compares a planned job with the closest record.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import CapsuleCopy, git, isolated_environment, make_capsule_copy

SESSION_A = "sessions/ecephys_612345_2025-03-14_10-02-11"
SESSION_B = "sessions/ecephys_612345_2025-03-15_09-48-30"


@dataclass
class Posted:
    """A capsule posted three times, and the environment that names its record store."""

    capsule: CapsuleCopy
    env: dict[str, str]
    first_commit: str
    second_commit: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.capsule.cli(*args, env=self.env)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.capsule.run(*args, env=self.env)

    def records(self) -> list[dict[str, Any]]:
        done = self.cli("results", "find", "--format", "json")
        assert done.returncode == 0, done.stderr
        records: list[dict[str, Any]] = json.loads(done.stdout)
        return records

    def key_of(self, session: str, min_spikes: int, commit: str, cutoff: float = 0.1) -> str:
        """The key of the one record with these inputs, parameters and commit."""
        found = [
            record["_id"]
            for record in self.records()
            if [asset["url"] for asset in code_of(record)["input_data"]] == [session]
            and code_of(record)["parameters"]["min_spikes"] == min_spikes
            and code_of(record)["parameters"]["isi_violations_cutoff"] == cutoff
            and code_of(record)["version"] == commit
        ]
        assert len(found) == 1, found
        return str(found[0])


def code_of(record: dict[str, Any]) -> dict[str, Any]:
    code: dict[str, Any] = record["processing"]["data_processes"][0]["code"]
    return code


def post_three_times(capsule: CapsuleCopy, env: dict[str, str]) -> Posted:
    """Post as is, with --min_spikes 30, then after a code change; each must succeed."""
    for args in (("--dry_run", "0"), ("--dry_run", "0", "--min_spikes", "30")):
        done = capsule.run(*args, env=env)
        assert done.returncode == 0, done.stderr
    first = git(capsule.root, "rev-parse", "HEAD").strip()
    model = capsule.code / "example_analysis_model.py"
    model.write_text(model.read_text(encoding="utf-8") + "\n# a change\n", encoding="utf-8")
    capsule.commit("change the model")
    done = capsule.run("--dry_run", "0", env=env)
    assert done.returncode == 0, done.stderr
    second = git(capsule.root, "rev-parse", "HEAD").strip()
    return Posted(capsule, env, first, second)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Posted]:
    """Posted three times to the embedded stores."""
    copy = make_capsule_copy(tmp_path_factory.mktemp("keys") / "capsule")
    with isolated_environment():
        yield post_three_times(copy, {})


@pytest.fixture(scope="module")
def mongodb(tmp_path_factory: pytest.TempPathFactory, mongo_uri: str) -> Iterator[Posted]:
    """Posted three times with the records in SecantusDB (MongoDB)."""
    copy = make_capsule_copy(tmp_path_factory.mktemp("keys-mongo") / "capsule")
    env = {
        "DOCDB_HOST": mongo_uri,
        "DOCDB_DATABASE": f"keys_{uuid.uuid4().hex[:8]}",
        "DOCDB_COLLECTION": "isi_filtering",
    }
    with isolated_environment():
        yield post_three_times(copy, env)


@pytest.fixture(params=["embedded", "mongodb"])
def posted(request: pytest.FixtureRequest) -> Posted:
    """Each record store in turn."""
    value: Posted = request.getfixturevalue(request.param)
    return value


def diff(posted: Posted, key1: str, key2: str) -> dict[str, Any]:
    """`keys diff --format json` of two keys (given as 10-character prefixes)."""
    done = posted.cli("keys", "diff", key1[:10], key2[:10], "--format", "json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert (result["key1"], result["key2"]) == (key1, key2)
    return result


def test_keys_diff_names_the_parameter(posted: Posted) -> None:
    """Two records of one job, min_spikes 20 then 30: only that parameter differs."""
    old = posted.key_of(SESSION_A, 20, posted.first_commit)
    new = posted.key_of(SESSION_A, 30, posted.first_commit)
    result = diff(posted, old, new)
    assert result["parameters"] == ["parameters.min_spikes 20 → 30"]
    assert result["code"] == [] and result["data"] == [] and result["notes"] == []


def test_keys_diff_names_the_input(posted: Posted) -> None:
    """Two records with the same parameters and code on two sessions: the input differs."""
    old = posted.key_of(SESSION_A, 20, posted.first_commit)
    new = posted.key_of(SESSION_B, 20, posted.first_commit)
    result = diff(posted, old, new)
    assert result["data"] == [f'input_data ["{SESSION_A}"] → ["{SESSION_B}"]']
    assert result["code"] == [] and result["parameters"] == []


def test_keys_diff_names_the_code_change(posted: Posted) -> None:
    """The same job before and after a commit that changed the code: the code tree differs."""
    old_key = posted.key_of(SESSION_A, 20, posted.first_commit)
    new_key = posted.key_of(SESSION_A, 20, posted.second_commit)
    records = {record["_id"]: record for record in posted.records()}
    old_tree = records[old_key]["code_identity"]["tree"]
    new_tree = records[new_key]["code_identity"]["tree"]
    assert old_tree != new_tree
    result = diff(posted, old_key, new_key)
    assert result["code"] == [
        f"code.tree {old_tree[:12]} → {new_tree[:12]} "
        f"(the record's commit: {posted.first_commit[:12]})"
    ]
    assert result["data"] == [] and result["parameters"] == []


def test_keys_diff_as_text_groups_the_differences(posted: Posted) -> None:
    """The text form names both records, then code, data and parameters in that order."""
    old = posted.key_of(SESSION_A, 30, posted.first_commit)
    new = posted.key_of(SESSION_B, 20, posted.second_commit)
    done = posted.cli("keys", "diff", old[:8], new[:8])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"KEY1  record {old} written ")
    assert lines[1].startswith(f"KEY2  record {new} written ")
    assert lines[2] == "3 field(s) differ, from KEY1 to KEY2:"
    assert lines[3] == "code" and lines[4].startswith("  code.tree ")
    assert lines[5:7] == ["data", f'  input_data ["{SESSION_A}"] → ["{SESSION_B}"]']
    assert lines[7:] == ["parameters", "  parameters.min_spikes 30 → 20"]


def test_keys_diff_of_an_unknown_or_malformed_key(posted: Posted) -> None:
    """A key no record has: one line, exit 1; a key that is not one: one line, exit 2."""
    known = posted.records()[0]["_id"]
    missing = posted.cli("keys", "diff", known, "f" * 64)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.count("\n") == 1
    assert f"no record with key {'f' * 64}" in missing.stderr
    malformed = posted.cli("keys", "diff", "abc", known)
    assert malformed.returncode == 2
    assert "key 'abc': give a key or a prefix of at least 6 hex characters" in malformed.stderr


def plan(posted: Posted, results: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return posted.run("--plan", "1", "--results_directory", str(results), *args)


def test_explain_compares_the_job_with_the_closest_record(posted: Posted, tmp_path: Path) -> None:
    """--min_spikes 40: among this job's records, the newest code's is closest (one change)."""
    first = plan(posted, tmp_path / "plan", "--min_spikes", "40")
    assert first.returncode == 0, first.stderr
    entries = json.loads((tmp_path / "plan" / "plan.json").read_text(encoding="utf-8"))
    job = next(
        entry
        for entry in entries
        if json.loads(Path(entry["job_file"]).read_text(encoding="utf-8"))["s3_location"]
        == [SESSION_A]
        and "cutoff-0.10" in entry["job_file"]
    )
    closest = posted.key_of(SESSION_A, 20, posted.second_commit)
    done = plan(posted, tmp_path / "explain", "--min_spikes", "40", "--explain", job["key"][:8])
    assert done.returncode == 0, done.stderr
    explained = done.stdout.split("\n\nexplain ", 1)[1].splitlines()
    assert explained.pop().startswith("plan for 6 job(s): ")  # the run's own last line
    assert explained[0] == f"{job['key'][:12]} ({Path(job['job_file']).name}): run, {job['reason']}"
    assert explained[1].startswith(f"compared with the closest record: record {closest} written")
    assert explained[2:] == [
        "1 field(s) differ, from the record to the job:",
        "code",
        "  (no difference)",
        "data",
        "  (no difference)",
        "parameters",
        "  parameters.min_spikes 20 → 40",
    ]
    assert job["reason"].endswith("): parameters.min_spikes 20 → 40")  # the plan's own words


def test_explain_a_job_that_is_done(posted: Posted, tmp_path: Path) -> None:
    """A job whose record exists is compared with that record: nothing differs."""
    key = posted.key_of(SESSION_B, 20, posted.second_commit)
    done = plan(posted, tmp_path / "explain", "--explain", key[:12])
    assert done.returncode == 0, done.stderr
    explained = done.stdout.split("\n\nexplain ", 1)[1].splitlines()
    assert explained[0].startswith(f"{key[:12]} (")
    assert "): skip, already done: record " in explained[0]
    assert explained[1].startswith(f"compared with its own record: record {key} written")
    assert explained[2] == "0 field(s) differ, from the record to the job:"


def test_explain_refuses_an_unknown_key_and_needs_a_plan(posted: Posted, tmp_path: Path) -> None:
    """A key no planned job has, or --explain without --plan 1: one line, exit 2."""
    unknown = plan(posted, tmp_path / "plan", "--explain", "ffffffff")
    assert unknown.returncode == 2
    assert "--explain ffffffff: no job of this plan has a key starting so" in unknown.stderr
    without_plan = posted.run("--explain", "ffffffff")
    assert without_plan.returncode == 2
    assert "--explain ffffffff explains a job of a plan: add --plan 1" in without_plan.stderr
    malformed = plan(posted, tmp_path / "plan", "--explain", "xyz")
    assert malformed.returncode == 2
    assert "argument --explain: expected a key or a prefix of at least 6 hex digits" in (
        malformed.stderr
    )
