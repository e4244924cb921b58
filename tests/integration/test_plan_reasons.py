"""Field-level reasons through code/run_capsule.py: what changed since the record."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from conftest import CapsuleCopy, git

JOB_COUNT = 6


def ok(done: subprocess.CompletedProcess[str]) -> None:
    """Fail with the run's output when it did not exit 0."""
    assert done.returncode == 0, done.stdout + done.stderr


def plan_of(capsule: CapsuleCopy, results: Path, *args: str) -> list[dict[str, Any]]:
    """Run --plan 1 with ``args`` into ``results`` and return plan.json."""
    ok(capsule.run("--plan", "1", "--results_directory", str(results), *args))
    plan: list[dict[str, Any]] = json.loads((results / "plan.json").read_text(encoding="utf-8"))
    return plan


def post(capsule: CapsuleCopy) -> str:
    """Run and post every job; return the commit the records name."""
    ok(capsule.run("--dry_run", "0", env={"CODEOCEAN_EMAIL": "runner@example.org"}))
    return git(capsule.root, "rev-parse", "HEAD").strip()


def test_plan_names_the_changed_parameter(capsule: CapsuleCopy, tmp_path: Path) -> None:
    """After posting, --min_spikes 30 plans every job to run because min_spikes 20 → 30."""
    post(capsule)
    plan = plan_of(capsule, tmp_path / "plan", "--min_spikes", "30")
    assert len(plan) == JOB_COUNT
    for entry in plan:
        assert entry["action"] == "run"
        assert entry["reason"].startswith("changed since record "), entry["reason"]
        assert entry["reason"].endswith("): parameters.min_spikes 20 → 30"), entry["reason"]


def test_run_log_names_the_changed_parameter(capsule: CapsuleCopy, tmp_path: Path) -> None:
    """A dry run after posting logs the same reason for each job it would run."""
    post(capsule)
    done = capsule.run("--min_spikes", "30", "--results_directory", str(tmp_path / "dry"))
    ok(done)
    log = done.stdout + done.stderr
    assert log.count("parameters.min_spikes 20 → 30") == JOB_COUNT, log


def test_plan_names_the_new_code_version(capsule: CapsuleCopy, tmp_path: Path) -> None:
    """A committed code change plans every job to run, naming both code trees and the commit."""
    old = post(capsule)
    old_tree = code_tree(capsule)
    model = capsule.code / "example_analysis_model.py"
    model.write_text(model.read_text(encoding="utf-8") + "\n# a change\n", encoding="utf-8")
    capsule.commit("change the model")
    new_tree = code_tree(capsule)
    assert old_tree != new_tree
    plan = plan_of(capsule, tmp_path / "plan")
    assert [entry["action"] for entry in plan] == ["run"] * JOB_COUNT
    change = f"code.tree {old_tree[:12]} → {new_tree[:12]} (the record's commit: {old[:12]})"
    for entry in plan:
        assert entry["reason"].endswith(f"): {change}"), entry
    both = plan_of(capsule, tmp_path / "both", "--min_spikes", "30")
    expected = f"{change}; parameters.min_spikes 20 → 30"
    assert all(entry["reason"].endswith(expected) for entry in both), both


def code_tree(capsule: CapsuleCopy) -> str:
    """The code tree of the capsule's HEAD, from git's own tree ids (not the product's)."""
    trees = {}
    for path in ("code", "environment"):
        listed = git(capsule.root, "ls-tree", "HEAD", "--", path).split()
        trees[path] = listed[2] if listed else "-"
    lines = "".join(f"{path} {trees[path]}\n" for path in sorted(trees))
    return hashlib.sha256(lines.encode()).hexdigest()


def test_skip_names_the_record_and_new_inputs_say_no_record(
    capsule: CapsuleCopy, tmp_path: Path
) -> None:
    """A skip names key, time and commit; a job on inputs no record has keeps 'no record'."""
    commit = post(capsule)
    plan = plan_of(capsule, tmp_path / "skip")
    for entry in plan:
        assert entry["action"] == "skip"
        assert entry["key"] in entry["reason"]
        assert commit in entry["reason"]
    job = sorted(capsule.job_dir.glob("*.json"))[0]
    data = json.loads(job.read_text(encoding="utf-8"))
    data["s3_location"] = ["s3://another-bucket/never-analysed"]
    job.write_text(json.dumps(data), encoding="utf-8")
    fresh = plan_of(capsule, tmp_path / "fresh")
    reasons = {Path(entry["job_file"]).name: entry["reason"] for entry in fresh}
    assert reasons[job.name] == "no record with this key"
