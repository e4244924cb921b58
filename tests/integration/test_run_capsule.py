"""The example capsule end to end through code/run_capsule.py: post, skip, plan, fail."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from conftest import CapsuleCopy, git, isolated_environment, make_capsule_copy

JOB_COUNT = 6
RESULT_FILES = {
    "units.csv",
    "units.png",
    "metadata.nd.json",
    "key.json",
    "ro-crate-metadata.json",
    "manifest.json",
}
EMAIL = "runner@example.org"


# --- helpers -------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    """Parse a JSON file."""
    return json.loads(path.read_text(encoding="utf-8"))


def run_summary(results: Path) -> dict[str, Any]:
    """The run_summary.json a run wrote into ``results``."""
    summary: dict[str, Any] = read_json(results / "run_summary.json")
    return summary


def counts(summary: dict[str, Any]) -> tuple[int, int, int]:
    """(ran, skipped, failed) of a run summary."""
    return summary["ran"], summary["skipped"], summary["failed"]


def stored_records(store: Path) -> dict[str, dict[str, Any]]:
    """Every record in the embedded SQLite store, by _id, read with plain sqlite3."""
    database = store / "records.sqlite"
    if not database.exists():
        return {}
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute("SELECT _id, document FROM analysis_results").fetchall()
    finally:
        connection.close()
    return {key: json.loads(document) for key, document in rows}


def record_count(store: Path) -> int:
    """COUNT(*) of the records table."""
    connection = sqlite3.connect(store / "records.sqlite")
    try:
        (count,) = connection.execute("SELECT COUNT(*) FROM analysis_results").fetchone()
    finally:
        connection.close()
    return int(count)


def process(record: dict[str, Any]) -> dict[str, Any]:
    """The record's analysis data process."""
    first: dict[str, Any] = record["processing"]["data_processes"][0]
    return first


def result_folders(root: Path) -> set[str]:
    """Names of the visible result folders under a results store."""
    if not root.exists():
        return set()
    return {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}


def record_folder(record: dict[str, Any]) -> Path:
    """The local folder a record's ``file://`` location names (its attempt's folder)."""
    parts = urlsplit(record["location"])
    assert parts.scheme == "file", record["location"]
    return Path(unquote(parts.path))


def key_folders(results: Path) -> set[str]:
    """Folders under a results directory named like a key."""
    return {
        p.name for p in results.iterdir() if p.is_dir() and re.fullmatch(r"[0-9a-f]{64}", p.name)
    }


def summary_keys(summary: dict[str, Any]) -> set[str]:
    """The keys of every job with a key in a run summary."""
    return {job["key"] for job in summary["jobs"] if job["key"]}


def ok(done: subprocess.CompletedProcess[str], code: int = 0) -> None:
    """Assert the exit code, showing the output when it is not the expected one."""
    assert done.returncode == code, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def insert_before_main(path: Path, text: str) -> None:
    """Insert code into run_capsule.py just before its ``if __name__`` block."""
    source = path.read_text(encoding="utf-8")
    marker = 'if __name__ == "__main__":'
    assert marker in source
    path.write_text(source.replace(marker, text + "\n\n" + marker), encoding="utf-8")


def head(root: Path) -> str:
    """The commit checked out in ``root``."""
    return git(root, "rev-parse", "HEAD").strip()


# --- a capsule posted once, shared by the read-only tests ---------------------------------


@pytest.fixture(scope="module")
def posted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapsuleCopy]:
    """A committed example capsule after one posting run (CODEOCEAN_EMAIL set)."""
    copy = make_capsule_copy(tmp_path_factory.mktemp("posted") / "capsule")
    with isolated_environment():
        done = copy.run("--dry_run", "0", env={"CODEOCEAN_EMAIL": EMAIL})
    ok(done)
    yield copy


def test_posting_run_stores_records_and_files(posted: CapsuleCopy) -> None:
    """One record per job in SQLite, and each job's files, manifest and metadata in the store."""
    assert record_count(posted.store) == JOB_COUNT
    summary = run_summary(posted.results)
    assert counts(summary) == (JOB_COUNT, 0, 0)
    assert summary["dry_run"] is False
    assert all(job["status"] == "succeeded" for job in summary["jobs"])
    records = stored_records(posted.store)
    assert set(records) == summary_keys(summary)
    results_root = posted.store / "results"
    assert result_folders(results_root) == set(records)
    for key, record in records.items():
        assert record["_id"] == record["name"] == key
        folder = record_folder(record)
        assert folder.parent == (results_root / key).resolve()
        assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # one attempt
        assert {p.name for p in folder.iterdir()} == RESULT_FILES
        assert read_json(folder / "metadata.nd.json") == {
            name: value for name, value in record.items() if name != "_id"
        }
        assert read_json(folder / "key.json")["key"] == key
        manifest = read_json(folder / "manifest.json")
        listed = {entry["path"]: entry for entry in manifest["files"]}
        assert set(listed) == RESULT_FILES - {"manifest.json"}
        for name, entry in listed.items():
            data = (folder / name).read_bytes()
            assert entry["size"] == len(data), name
            assert entry["sha256"] == hashlib.sha256(data).hexdigest(), name
        step = process(record)
        assert step["experimenters"] == [EMAIL]
        assert step["code"]["version"] == head(posted.root)
        assert step["code"]["url"] == "https://github.com/example-lab/example-capsule"
        assert step["code"]["parameters"]["min_spikes"] == 20
        assert step["output_parameters"]["units_total"] > 0


def test_second_posting_run_skips_every_job(posted: CapsuleCopy, tmp_path: Path) -> None:
    """Run again: every job is skipped, nothing is rewritten, exit 0."""
    before = stored_records(posted.store)
    done = posted.run("--dry_run", "0", "--results_directory", str(tmp_path))
    ok(done)
    summary = run_summary(tmp_path)
    assert counts(summary) == (0, JOB_COUNT, 0)
    assert {job["status"] for job in summary["jobs"]} == {"skipped"}
    assert summary_keys(summary) == set(before)
    assert stored_records(posted.store) == before
    assert key_folders(tmp_path) == set()  # nothing ran, so no job folder


def test_force_reruns_every_job(posted: CapsuleCopy, tmp_path: Path) -> None:
    """--force 1 runs all six again and replaces their records: still six records."""
    before = stored_records(posted.store)
    done = posted.run("--dry_run", "0", "--force", "1", "--results_directory", str(tmp_path))
    ok(done)
    assert "left no usable record" not in done.stderr  # the record is replaced on purpose
    assert done.stderr.count("--force 1: running it again") == JOB_COUNT
    summary = run_summary(tmp_path)
    assert counts(summary) == (JOB_COUNT, 0, 0)
    assert summary_keys(summary) == set(before)
    assert record_count(posted.store) == JOB_COUNT
    after = stored_records(posted.store)
    for key, record in after.items():
        assert process(record)["end_date_time"] >= process(before[key])["end_date_time"]
        folder = record_folder(record)
        assert folder != record_folder(before[key])  # a new attempt, in its own folder
        assert read_json(folder / "metadata.nd.json") == {
            n: v for n, v in record.items() if n != "_id"
        }


def test_plan_after_posting_says_skip(posted: CapsuleCopy, tmp_path: Path) -> None:
    """After a posting run, the plan skips every job and names the record it found."""
    done = posted.run("--plan", "1", "--results_directory", str(tmp_path))
    ok(done)
    plan = read_json(tmp_path / "plan.json")
    assert len(plan) == JOB_COUNT
    assert {entry["action"] for entry in plan} == {"skip"}
    assert {entry["key"] for entry in plan} == set(stored_records(posted.store))
    for entry in plan:
        assert entry["key"] in entry["reason"]


def test_undistributed_parameter_changes_keys(posted: CapsuleCopy, tmp_path: Path) -> None:
    """--min_spikes 30 (no job overrides it) gives six new keys: every job runs again."""
    stored = set(stored_records(posted.store))
    done = posted.run("--min_spikes", "30", "--results_directory", str(tmp_path))
    ok(done)
    summary = run_summary(tmp_path)
    assert counts(summary) == (JOB_COUNT, 0, 0)
    keys = summary_keys(summary)
    assert len(keys) == JOB_COUNT
    assert keys.isdisjoint(stored)
    assert key_folders(tmp_path) == keys
    for key in keys:
        parameters = read_json(tmp_path / key / "key.json")["preimage"]["parameters"]
        assert parameters["min_spikes"] == 30
    assert set(stored_records(posted.store)) == stored  # a dry run posts nothing


def test_distributed_parameter_beats_command_line(posted: CapsuleCopy, tmp_path: Path) -> None:
    """--isi_violations_cutoff is overridden by each job's distributed_parameters: all skip."""
    stored = set(stored_records(posted.store))
    done = posted.run(
        "--isi_violations_cutoff", "0.3", "--dry_run", "0", "--results_directory", str(tmp_path)
    )
    ok(done)
    summary = run_summary(tmp_path)
    assert counts(summary) == (0, JOB_COUNT, 0)
    assert summary_keys(summary) == stored
    assert set(stored_records(posted.store)) == stored


def test_parameters_never_come_from_environment(posted: CapsuleCopy, tmp_path: Path) -> None:
    """DRY_RUN and field-named environment variables change neither the mode nor the keys."""
    stored = stored_records(posted.store)
    env = {"DRY_RUN": "0", "dry_run": "0", "MIN_SPIKES": "30", "min_spikes": "30"}
    done = posted.run("--results_directory", str(tmp_path), env=env)
    ok(done)
    summary = run_summary(tmp_path)
    assert summary["dry_run"] is True
    assert counts(summary) == (0, JOB_COUNT, 0)
    assert summary_keys(summary) == set(stored)
    assert stored_records(posted.store) == stored


def test_keys_survive_moving_the_data_folder(posted: CapsuleCopy, tmp_path: Path) -> None:
    """The same jobs read from a copy of data/ elsewhere keep their keys: the plan skips."""
    moved = tmp_path / "elsewhere" / "data"
    shutil.copytree(posted.data, moved)
    results = tmp_path / "results"
    done = posted.run(
        "--plan", "1", "--input_directory", str(moved), "--results_directory", str(results)
    )
    ok(done)
    plan = read_json(results / "plan.json")
    assert [entry["action"] for entry in plan] == ["skip"] * JOB_COUNT
    assert {entry["key"] for entry in plan} == set(stored_records(posted.store))
    assert all(entry["job_file"].startswith(str(moved)) for entry in plan)


def test_upstream_dispatcher_layout_finds_the_same_jobs(
    posted: CapsuleCopy, tmp_path: Path
) -> None:
    """Job files in job_dict/<n>/<uuid>.json (upstream's dispatcher) are the same jobs."""
    moved = tmp_path / "upstream" / "data"
    shutil.copytree(posted.data, moved)
    job_dict = moved / "job_dict"
    for number, job_file in enumerate(sorted(job_dict.glob("*.json"))):
        (job_dict / str(number)).mkdir()
        job_file.rename(job_dict / str(number) / f"{uuid.uuid4()}.json")
    assert not list(job_dict.glob("*.json"))
    results = tmp_path / "results"
    done = posted.run(
        "--plan", "1", "--input_directory", str(moved), "--results_directory", str(results)
    )
    ok(done)
    plan = read_json(results / "plan.json")
    assert [entry["action"] for entry in plan] == ["skip"] * JOB_COUNT
    assert {entry["key"] for entry in plan} == set(stored_records(posted.store))
    assert {Path(entry["job_file"]).parent.name for entry in plan} == {
        str(n) for n in range(JOB_COUNT)
    }


def test_a_job_dict_with_files_but_no_job_exits_2(capsule: CapsuleCopy, tmp_path: Path) -> None:
    """Files where jobs should be, none of them a job: exit 2 naming them, not "nothing to do"."""
    inputs = tmp_path / "inputs"
    (inputs / "job_dict" / "0" / "deeper").mkdir(parents=True)
    (inputs / "job_dict" / "jobs.txt").write_text("not a job")
    (inputs / "job_dict" / "0" / "deeper" / "job.json").write_text("{}")
    (inputs / "job_dict" / ".DS_Store").write_bytes(b"\x00")
    done = capsule.run("--dry_run", "0", "--input_directory", str(inputs))
    ok(done, 2)
    errors = [line for line in done.stderr.splitlines() if "holds no job file" in line]
    assert len(errors) == 1, done.stderr
    assert "jobs.txt" in errors[0] and "0/deeper/" in errors[0]
    assert "job_dict/*/*.json" in errors[0]
    assert ".DS_Store" not in errors[0]
    assert "Traceback" not in done.stderr
    assert not capsule.store.exists()


# --- each test its own capsule -------------------------------------------------------------


def test_plan_and_dry_run_touch_no_store(capsule: CapsuleCopy) -> None:
    """--plan 1 writes only plan.json; a dry run writes only under results/; no store is made."""
    plan_run = capsule.run("--plan", "1")
    ok(plan_run)
    plan = read_json(capsule.results / "plan.json")
    assert isinstance(plan, list)
    assert len(plan) == JOB_COUNT
    for entry in plan:
        assert set(entry) == {"job_file", "key", "action", "reason"}
        assert entry["action"] == "run"
        assert re.fullmatch(r"[0-9a-f]{64}", entry["key"])
        assert Path(entry["job_file"]).name in plan_run.stdout  # printed as a table
        assert entry["key"][:12] in plan_run.stdout
    assert "action" in plan_run.stdout
    assert key_folders(capsule.results) == set()  # nothing ran
    assert not capsule.store.exists()

    stale = capsule.results / plan[0]["key"] / "stale_from_an_earlier_attempt.txt"
    stale.parent.mkdir()
    stale.write_text("old\n")
    dry = capsule.run()  # --dry_run defaults to 1
    ok(dry)
    # Nothing was posted: the lines name the local folders, never the store's.
    assert dry.stdout.strip().endswith(f"(dry run); files in {capsule.results}")
    assert "-> file://" not in dry.stderr
    assert f"(dry run: nothing posted; files go to {capsule.results})" in dry.stderr
    summary = run_summary(capsule.results)
    assert summary["dry_run"] is True
    assert counts(summary) == (JOB_COUNT, 0, 0)
    keys = summary_keys(summary)
    assert keys == {entry["key"] for entry in plan}  # the plan said what the run did
    assert key_folders(capsule.results) == keys
    for key in keys:
        assert f"-> {capsule.results / key}\n" in dry.stderr
        names = {p.name for p in (capsule.results / key).iterdir()}
        assert {"units.csv", "units.png", "metadata.nd.json", "key.json"} <= names
    assert not stale.exists()  # each job starts in a fresh folder
    assert not capsule.store.exists()
    assert git(capsule.root, "status", "--porcelain") == ""  # run outputs are ignored


def test_bad_job_files_fail_alone(capsule: CapsuleCopy) -> None:
    """Each bad job file fails with one line naming file and field; the good jobs still post."""
    good = json.loads(next(iter(sorted(capsule.job_dir.glob("*.json")))).read_text())
    session = good["s3_location"][0]

    def job(**fields: Any) -> str:
        return json.dumps({"s3_location": [session], **fields})

    bad = {
        "bad_malformed.json": ('{"s3_location": [', None),
        "bad_not_utf8.json": (b'{"s3_location": ["sessions/caf\xe9"]}', None),
        "bad_wrong_type.json": (json.dumps({"s3_location": session}), "s3_location"),
        "bad_unknown_parameter.json": (
            job(distributed_parameters={"isi_cutof": 0.2}),
            "isi_cutof",
        ),
        "bad_rejected_value.json": (
            job(distributed_parameters={"isi_violations_cutoff": -1}),
            "isi_violations_cutoff",
        ),
        "bad_escaping_location.json": (
            json.dumps({"s3_location": ["../../outside/session"]}),
            "s3_location",
        ),
    }
    for name, (content, _) in bad.items():
        path = capsule.job_dir / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    warned = capsule.job_dir / "warn_unknown_field.json"
    warned.write_text(
        job(distributed_parameters={"isi_violations_cutoff": 0.3}, colour="blue"),
        encoding="utf-8",
    )

    done = capsule.run("--dry_run", "0")  # untracked files in data/ do not make code dirty
    ok(done, 1)
    assert "Traceback" not in done.stderr
    summary = run_summary(capsule.results)
    assert counts(summary) == (JOB_COUNT + 1, 0, len(bad))
    by_name = {Path(job["job_file"]).name: job for job in summary["jobs"]}
    for name, (_, field) in bad.items():
        entry = by_name[name]
        assert entry["status"] == "failed", name
        assert name in entry["error"]
        if field is not None:
            assert field in entry["error"], entry["error"]
        lines = [line for line in done.stderr.splitlines() if name in line]
        assert len(lines) == 1, (name, lines)
    assert "not valid JSON" in by_name["bad_malformed.json"]["error"]
    assert "UTF-8" in by_name["bad_not_utf8.json"]["error"]
    assert ".." in by_name["bad_escaping_location.json"]["error"]

    assert by_name[warned.name]["status"] == "succeeded"
    warning = [
        line for line in done.stderr.splitlines() if warned.name in line and "colour" in line
    ]
    assert warning, done.stderr

    succeeded = {job["key"] for job in summary["jobs"] if job["status"] == "succeeded"}
    assert set(stored_records(capsule.store)) == succeeded
    assert result_folders(capsule.store / "results") == succeeded


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--dry_run", "0", "--no_such_flag", "1"], "no_such_flag"),
        (["--dry_run", "0", "--isi_violations_cutof", "0.2"], "isi_violations_cutof"),
        (["--dry_run", "0", "--input_directory", "/nonexistent/input"], "/nonexistent/input"),
        (["--dry_run", "maybe"], "maybe"),
        (["--dry_run", "0", "--input_directory"], "input_directory"),
    ],
)
def test_wrong_invocation_exits_2(capsule: CapsuleCopy, args: list[str], words: str) -> None:
    """An unknown flag, a missing input directory or a bad flag value: exit 2, one clear line."""
    done = capsule.run(*args)
    ok(done, 2)
    assert words in done.stderr
    assert "Traceback" not in done.stderr
    assert not capsule.store.exists()
    assert not (capsule.results / "run_summary.json").exists()


def test_dirty_tree_refused_then_allowed(capsule: CapsuleCopy) -> None:
    """Posting from a dirty tree exits 2 naming the file; --allow_dirty 1 posts under +dirty."""
    script = capsule.code / "run_capsule.py"
    script.write_text(script.read_text() + "\n# an uncommitted comment\n")
    sha = head(capsule.root)

    refused = capsule.run("--dry_run", "0")
    ok(refused, 2)
    assert "code/run_capsule.py" in refused.stderr
    assert "--allow_dirty" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not capsule.store.exists()

    allowed = capsule.run("--dry_run", "0", "--allow_dirty", "1")
    ok(allowed)
    records = stored_records(capsule.store)
    assert len(records) == JOB_COUNT
    for record in records.values():
        version = process(record)["code"]["version"]
        assert re.fullmatch(rf"{sha}\+dirty\.[0-9a-f]{{12}}", version), version


def test_posting_from_a_repository_without_remote_is_refused(capsule: CapsuleCopy) -> None:
    """--dry_run 0 with no git remote exits 2 in one line naming the remedy; a dry run works."""
    git(capsule.root, "remote", "remove", "origin")
    refused = capsule.run("--dry_run", "0")
    ok(refused, 2)
    errors = [line for line in refused.stderr.splitlines() if "has no remote" in line]
    assert len(errors) == 1
    assert "git remote add origin <url>" in errors[0]
    assert "Traceback" not in refused.stderr
    assert not capsule.store.exists()

    dry = capsule.run("--dry_run", "1")
    ok(dry)
    assert f"code {capsule.root.resolve()} @ {head(capsule.root)}" in dry.stderr
    ok(capsule.run("--plan", "1"))


def test_parameter_named_like_flag_exits_2(capsule: CapsuleCopy) -> None:
    """A parameters-model field named like a wrapper flag is a start-up error naming it."""
    model = capsule.code / "example_analysis_model.py"
    source = model.read_text()
    anchor = "    min_spikes: int = Field("
    assert anchor in source
    model.write_text(source.replace(anchor, "    force: int = 0\n" + anchor))
    capsule.commit("a field named force")
    done = capsule.run("--dry_run", "0")
    ok(done, 2)
    assert "force" in done.stderr
    assert "Traceback" not in done.stderr
    assert not capsule.store.exists()


def test_failing_analysis_fails_only_its_jobs(capsule: CapsuleCopy) -> None:
    """An analysis that raises fails its jobs, with the traceback; the others post; exit 1."""
    insert_before_main(
        capsule.code / "run_capsule.py",
        """_original_run_analysis = run_analysis


def run_analysis(job, parameters, results_dir):
    if job.asset_name[0] == "ecephys_654321_2025-04-02_14-20-05":
        raise RuntimeError("spike file is corrupt for this session")
    if job.asset_name[0] == "ecephys_612345_2025-03-15_09-48-30":
        return {"units_total": "many"}
    return _original_run_analysis(job, parameters, results_dir)""",
    )
    capsule.commit("an analysis that fails for some sessions")
    done = capsule.run("--dry_run", "0")
    ok(done, 1)
    summary = run_summary(capsule.results)
    assert counts(summary) == (2, 0, 4)
    assert "Traceback" in done.stderr
    assert "spike file is corrupt for this session" in done.stderr
    failed = [job for job in summary["jobs"] if job["status"] == "failed"]
    raised = [job for job in failed if "654321" in job["job_file"]]
    bad_outputs = [job for job in failed if "2025-03-15" in job["job_file"]]
    assert len(raised) == len(bad_outputs) == 2
    for job in raised:
        assert "RuntimeError" in job["error"]
        assert "spike file is corrupt" in job["error"]
    for job in bad_outputs:
        assert "units_total" in job["error"]
    records = stored_records(capsule.store)
    succeeded = {job["key"] for job in summary["jobs"] if job["status"] == "succeeded"}
    assert set(records) == succeeded
    assert len(succeeded) == 2
    for job in failed:
        assert job["key"] not in records
    assert result_folders(capsule.store / "results") == succeeded


def test_outputs_may_be_none_or_a_dict(capsule: CapsuleCopy) -> None:
    """run_analysis may return None, a dict or the outputs model; each posts its record."""
    insert_before_main(
        capsule.code / "run_capsule.py",
        """_original_run_analysis = run_analysis


def run_analysis(job, parameters, results_dir):
    outputs = _original_run_analysis(job, parameters, results_dir)
    if job.asset_name[0] == "ecephys_612345_2025-03-14_10-02-11":
        return None
    if job.asset_name[0] == "ecephys_612345_2025-03-15_09-48-30":
        return outputs.model_dump()
    return outputs""",
    )
    capsule.commit("outputs of three kinds")
    done = capsule.run("--dry_run", "0")
    ok(done)
    records = stored_records(capsule.store)
    assert len(records) == JOB_COUNT
    by_asset: dict[str, list[dict[str, Any]]] = {}
    for record in records.values():
        asset = record["input_asset_names"][process(record)["code"]["input_data"][0]["url"]]
        by_asset.setdefault(asset, []).append(process(record)["output_parameters"])
    assert by_asset["ecephys_612345_2025-03-14_10-02-11"] == [{}, {}]
    for outputs in by_asset["ecephys_612345_2025-03-15_09-48-30"]:
        assert outputs["session_id"] == "ecephys_612345_2025-03-15_09-48-30"
        assert outputs["units_total"] > 0
    for outputs in by_asset["ecephys_654321_2025-04-02_14-20-05"]:
        assert outputs["session_id"] == "ecephys_654321_2025-04-02_14-20-05"


def test_no_jobs_is_not_an_error(capsule: CapsuleCopy, tmp_path: Path) -> None:
    """An empty job_dict (or none at all) exits 0, says there are no jobs, writes zeros."""
    for path in capsule.job_dir.glob("*.json"):
        path.unlink()
    capsule.commit("no jobs")
    assert capsule.job_dir.is_dir()
    done = capsule.run("--dry_run", "0")
    ok(done)
    assert re.search(r"no (job|jobs)\b", done.stdout + done.stderr, re.IGNORECASE)
    summary = run_summary(capsule.results)
    assert counts(summary) == (0, 0, 0)
    assert summary["jobs"] == []

    bare = tmp_path / "bare_input"
    bare.mkdir()
    results = tmp_path / "results"
    done = capsule.run("--input_directory", str(bare), "--results_directory", str(results))
    ok(done)
    assert counts(run_summary(results)) == (0, 0, 0)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ANALYSIS_BUCKET", "gs://bucket/x"),
    ],
)
def test_unsupported_stores_exit_2(capsule: CapsuleCopy, variable: str, value: str) -> None:
    """A store value no backend can use exits 2 naming the usable forms, never a fallback."""
    done = capsule.run("--dry_run", "0", env={variable: value})
    ok(done, 2)
    output = done.stdout + done.stderr
    assert "use s3://bucket/prefix" in output
    assert variable in output
    assert "secret" not in output
    assert "Traceback" not in output
    assert not capsule.store.exists()


def test_unreachable_mongodb_exits_1_in_one_line_without_secret(capsule: CapsuleCopy) -> None:
    """DOCDB_HOST=mongodb://... with nothing listening: exit 1, one error line, no password."""
    from servers import free_port

    host = f"mongodb://user:secret@127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=100"
    done = capsule.run("--dry_run", "0", env={"DOCDB_HOST": host})
    ok(done, 1)
    output = done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, done.stderr
    assert "cannot read record store mongodb://***@127.0.0.1:" in errors[0]
    assert "DOCDB_HOST" in errors[0]
    assert "secret" not in output
    assert "Traceback" not in output
    assert not capsule.store.exists()


def test_file_bucket_receives_results(capsule: CapsuleCopy, tmp_path: Path) -> None:
    """ANALYSIS_BUCKET=file:///abs/path publishes each job's folder there."""
    bucket = tmp_path / "bucket"
    done = capsule.run("--dry_run", "0", env={"ANALYSIS_BUCKET": bucket.as_uri()})
    ok(done)
    records = stored_records(capsule.store)
    assert len(records) == JOB_COUNT
    assert result_folders(bucket) == set(records)
    assert result_folders(capsule.store / "results") == set()
    for key, record in records.items():
        assert record_folder(record).parent == (bucket / key).resolve()
        assert {p.name for p in record_folder(record).iterdir()} == RESULT_FILES


def test_unreachable_record_store_exits_1(capsule: CapsuleCopy, tmp_path: Path) -> None:
    """A record store that cannot be opened stops a posting run with exit 1 and one line."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    database = blocker / "records.sqlite"
    done = capsule.run("--dry_run", "0", env={"DOCDB_HOST": f"sqlite://{database}"})
    ok(done, 1)
    assert "record store" in done.stderr
    assert "Traceback" not in done.stderr
    assert not capsule.store.exists()


def test_unwritable_results_store_posts_no_record(capsule: CapsuleCopy, tmp_path: Path) -> None:
    """When publishing the files fails, the job fails and its record is never written."""
    data = tmp_path / "data"
    shutil.copytree(capsule.data, data)
    for path in sorted(data.glob("job_dict/*.json"))[1:]:
        path.unlink()
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    done = capsule.run(
        "--dry_run",
        "0",
        "--input_directory",
        str(data),
        env={"ANALYSIS_BUCKET": (blocker / "bucket").as_uri()},
    )
    ok(done, 1)
    summary = run_summary(capsule.results)
    assert counts(summary) == (0, 0, 1)
    assert "results" in summary["jobs"][0]["error"]
    assert stored_records(capsule.store) == {}


def test_record_without_manifest_is_orphaned_and_runs_again(capsule: CapsuleCopy) -> None:
    """A result whose manifest vanished is reported orphaned, runs again, and is trusted after."""
    ok(capsule.run("--dry_run", "0"))
    records = stored_records(capsule.store)
    orphan = sorted(records)[0]
    (record_folder(records[orphan]) / "manifest.json").unlink()
    ok(capsule.run("--plan", "1"))
    plan = {entry["key"]: entry for entry in read_json(capsule.results / "plan.json")}
    assert plan[orphan]["action"] == "run"
    assert "orphaned" in plan[orphan]["reason"]
    assert {entry["action"] for k, entry in plan.items() if k != orphan} == {"skip"}
    ok(capsule.run("--dry_run", "0"))
    summary = run_summary(capsule.results)
    assert counts(summary) == (1, JOB_COUNT - 1, 0)
    again = record_folder(stored_records(capsule.store)[orphan])
    assert again != record_folder(records[orphan])  # a new attempt, in its own folder
    assert (again / "manifest.json").is_file()
    assert record_count(capsule.store) == JOB_COUNT
    ok(capsule.run("--dry_run", "0"))
    assert counts(run_summary(capsule.results)) == (0, JOB_COUNT, 0)
