"""The example capsule run as Code Ocean runs it: no .git, CO_* variables, the API stand-in."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import TEST_CAPSULE, CapsuleCopy, make_capsule_copy
from standins import codeocean_api as co

TOKEN = "cop_e2e-T0k3n-9f8e7d6c5b"
EMAIL = "scientist@example.org"
JOB_COUNT = 6


@pytest.fixture
def standin() -> Iterator[co.CodeOceanStandIn]:
    """A seeded Code Ocean stand-in on a free loopback port."""
    with co.seed(co.CodeOceanStandIn(TOKEN)) as server:
        yield server


def code_ocean_capsule(root: Path) -> CapsuleCopy:
    """A capsule laid out as a pipeline process sees it: code/ with no .git anywhere."""
    copy = make_capsule_copy(root)
    shutil.rmtree(root / ".git")
    return copy


@pytest.fixture
def capsule(tmp_path: Path) -> CapsuleCopy:
    """The example capsule without git metadata."""
    return code_ocean_capsule(tmp_path / "capsule")


def pipeline_env(standin: co.CodeOceanStandIn, **extra: str) -> dict[str, str]:
    """What Code Ocean and the capsule settings put in a pipeline process's environment."""
    return {
        "CODEOCEAN_DOMAIN": standin.url,
        "CODEOCEAN_API_TOKEN": TOKEN,
        "CODEOCEAN_EMAIL": EMAIL,
        "CO_COMPUTATION_ID": co.PIPELINE_RUN,
        "CO_CAPSULE_ID": co.RELEASE_CAPSULE_ID,
        "CO_PIPELINE_ID": co.PIPELINE_ID,
        "CODE_VERSION_POLICY": "release",
        "CODEOCEAN_MIN_SERVER_VERSION": "",
        **extra,
    }


def panel_argv(**values: str) -> list[str]:
    """The command line Code Ocean builds from the test capsule's app panel's defaults."""
    panel = json.loads((TEST_CAPSULE / ".codeocean" / "app-panel.json").read_text())
    argv: list[str] = []
    for parameter in panel["parameters"]:
        name = parameter["param_name"]
        argv += [f"--{name}", values.get(name, parameter.get("default_value", ""))]
    return argv


def stored_records(store: Path) -> list[dict[str, Any]]:
    """Every record in the embedded SQLite store."""
    database = store / "records.sqlite"
    if not database.exists():
        return []
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute("SELECT document FROM analysis_results").fetchall()
    finally:
        connection.close()
    return [json.loads(document) for (document,) in rows]


def assert_token_nowhere(token: str, *texts: str, roots: tuple[Path, ...] = ()) -> None:
    """The token is in no output and in no byte of any file under ``roots``."""
    for text in texts:
        assert token not in text
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                assert token.encode() not in path.read_bytes(), path


def test_pipeline_release_run_posts_records_with_code_ocean_fields(
    capsule: CapsuleCopy, standin: co.CodeOceanStandIn
) -> None:
    """Posting from a released pipeline process: version 2.1, capsule, pipeline, assets."""
    env = pipeline_env(standin)
    done = capsule.run(*panel_argv(dry_run="0", min_spikes="50"), env=env)
    assert done.returncode == 0, done.stderr
    records = stored_records(capsule.store)
    assert len(records) == JOB_COUNT
    for record in records:
        process = record["processing"]["data_processes"][0]
        code = process["code"]
        assert code["name"] == co.CAPSULE_NAME
        assert code["url"] == f"{standin.url}/capsule/4544861"
        assert code["version"] == "2.1"
        assert code["parameters"]["min_spikes"] == 50  # typed in the panel: an int
        assert code["parameters"]["refractory_period_ms"] == 1.5  # empty: not given
        assert process["pipeline_name"] == co.PIPELINE_NAME
        assert record["processing"]["pipelines"][0]["name"] == co.PIPELINE_NAME
        assert process["experimenters"] == [EMAIL]
        assert f"s3://{co.S3_ASSET_BUCKET}/{co.S3_ASSET_ID}" in process["notes"]
        assert co.PIPELINE_RUN in process["notes"]
    assert_token_nowhere(TOKEN, done.stdout, done.stderr, roots=(capsule.results, capsule.store))
    again = capsule.run(*panel_argv(dry_run="0", min_spikes="50"), env=env)
    assert again.returncode == 0, again.stderr
    summary = json.loads((capsule.results / "run_summary.json").read_text())
    assert (summary["ran"], summary["skipped"]) == (0, JOB_COUNT)


def test_capsule_run_without_git_refuses_to_post_under_commit_policy(
    capsule: CapsuleCopy, standin: co.CodeOceanStandIn
) -> None:
    """Exit 2 with the remedy; nothing is posted; the token is in no output."""
    env = pipeline_env(
        standin,
        CO_COMPUTATION_ID=co.CAPSULE_RUN,
        CO_CAPSULE_ID=co.EDITABLE_CAPSULE_ID,
        CO_PIPELINE_ID="",
        CODE_VERSION_POLICY="commit",
    )
    done = capsule.run("--dry_run", "0", env=env)
    assert done.returncode == 2, done.stderr
    assert "CODE_VERSION_POLICY=release" in done.stderr
    assert stored_records(capsule.store) == []
    assert_token_nowhere(TOKEN, done.stdout, done.stderr)


def test_wrong_token_fails_the_posting_run_without_leaking_either_token(
    capsule: CapsuleCopy, standin: co.CodeOceanStandIn
) -> None:
    """401: exit 2, the message names the secret, and no token is printed."""
    wrong = "cop_wr0ng-" + TOKEN
    done = capsule.run("--dry_run", "0", env=pipeline_env(standin, CODEOCEAN_API_TOKEN=wrong))
    assert done.returncode == 2, done.stderr
    assert "HTTP 401" in done.stderr and "CODEOCEAN_API_TOKEN" in done.stderr
    assert_token_nowhere(wrong, done.stdout, done.stderr)
    assert_token_nowhere(TOKEN, done.stdout, done.stderr)


def test_zero_jobs_leave_a_placeholder(capsule: CapsuleCopy, standin: co.CodeOceanStandIn) -> None:
    """A pipeline step with no job files exits 0 and its results folder is not empty."""
    for job in capsule.job_dir.glob("*.json"):
        job.unlink()
    done = capsule.run("--dry_run", "0", env=pipeline_env(standin))
    assert done.returncode == 0, done.stderr
    placeholder = capsule.results / "no_jobs.txt"
    assert "nothing ran" in placeholder.read_text()
    assert json.loads((capsule.results / "run_summary.json").read_text())["ran"] == 0


def test_pipeline_tasks_merged_results_never_overwrite_a_job(
    tmp_path: Path, standin: co.CodeOceanStandIn
) -> None:
    """Two tasks' results flattened by name (PT's publishDir) keep every job's own files."""
    tasks = [code_ocean_capsule(tmp_path / f"task{i}") for i in range(2)]
    jobs = sorted(p.name for p in tasks[0].job_dir.glob("*.json"))
    for index, task in enumerate(tasks):
        for name in jobs[index::2]:
            (task.job_dir / name).unlink()  # task 0 keeps odd jobs, task 1 even ones
        done = task.run("--dry_run", "1", env=pipeline_env(standin))
        assert done.returncode == 0, done.stderr
    merged = tmp_path / "merged"
    merged.mkdir()
    folders: dict[str, Path] = {}
    for task in tasks:
        for entry in task.results.iterdir():  # saveAs: { filename -> new File(filename).getName() }
            target = merged / entry.name
            if entry.is_dir():
                assert not target.exists(), f"{entry.name} published by two tasks"
                shutil.copytree(entry, target)
                folders[entry.name] = entry
            else:
                shutil.copy(entry, target)
    assert len(folders) == JOB_COUNT
    for name, original in folders.items():
        for path in original.rglob("*"):
            if path.is_file():
                copied = merged / name / path.relative_to(original)
                assert copied.read_bytes() == path.read_bytes()
        key = json.loads((merged / name / "key.json").read_text())["key"]
        assert key == name
