"""The capsule in code/, whatever analysis it holds, plans and runs its own data/.

These tests read the repository's own code/, data/ and .codeocean/ (the example, until
a scientist replaces it) and assume nothing about the analysis there: they hold for
any analysis whose data/ matches its model. The framework's other tests use the test
capsule (tests/capsule/) instead, and test_replace_example.py runs these on a copy
whose example was replaced.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CAPSULE_REMOTE, REPO_ROOT, git, isolated_environment


def copy_user_capsule(root: Path) -> Path:
    """The repository's capsule (code/ without the framework, data/) in a new repository."""
    shutil.copytree(
        REPO_ROOT / "code",
        root / "code",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "analysis_wrapper"),
    )
    shutil.copytree(REPO_ROOT / "data", root / "data")
    (root / "results").mkdir()
    shutil.copy(REPO_ROOT / ".gitignore", root / ".gitignore")
    git(root, "init", "-q", "-b", "main")
    git(root, "remote", "add", "origin", CAPSULE_REMOTE)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "the capsule in code/")
    return root


def run_capsule(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python code/run_capsule.py ARGS`` in the copy, as Code Ocean's run script does."""
    return subprocess.run(
        [sys.executable, "-u", "run_capsule.py", *args],
        cwd=root / "code",
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def user_capsule(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the repository's capsule for this module's tests."""
    with isolated_environment():
        return copy_user_capsule(tmp_path_factory.mktemp("user") / "capsule")


def job_count(root: Path) -> int:
    return len(list((root / "data" / "job_dict").rglob("*.json")))


def test_every_job_in_data_is_valid_for_the_model(user_capsule: Path) -> None:
    """``--plan 1`` finds each job file valid: data/ matches the parameters model."""
    with isolated_environment():
        done = run_capsule(user_capsule, "--plan", "1")
    assert done.returncode == 0, done.stderr
    plan = json.loads((user_capsule / "results" / "plan.json").read_text())
    assert len(plan) == job_count(user_capsule)
    invalid = {Path(entry["job_file"]).name: entry["reason"] for entry in plan}
    assert {name: why for name, why in invalid.items() if "invalid" in why} == {}
    assert {entry["action"] for entry in plan} <= {"run", "skip"}


def test_a_dry_run_runs_every_job(user_capsule: Path) -> None:
    """``--dry_run 1`` runs each job of data/ to success, posting nothing."""
    with isolated_environment():
        done = run_capsule(user_capsule, "--dry_run", "1")
    assert done.returncode == 0, done.stderr
    summary = json.loads((user_capsule / "results" / "run_summary.json").read_text())
    assert summary["dry_run"] is True
    assert (summary["ran"], summary["failed"]) == (job_count(user_capsule), 0)
    assert not (user_capsule / ".analysis_store" / "records.sqlite").exists()
