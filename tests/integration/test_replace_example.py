"""A scientist replaces the example with an analysis of their own; ``make test`` stays green.

The repository's working tree is copied (tracked and new files, as ``git`` sees them),
the example's files are deleted, a word-count analysis takes their place, and
``analysis-wrapper init`` resets data/ to its model, as README's "Make it yours" says.
The capsule then plans and posts, and the framework's tests pass in the copy: those
that follow code/ (test_capsule_in_code.py, the app panel, the layout) and those that
use the test capsule, whose files the replacement did not touch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CAPSULE_REMOTE, REPO_ROOT, git, isolated_environment, make_capsule_copy

MODEL = '''\
"""My parameters and outputs."""

from pydantic import Field

from analysis_wrapper import AnalysisOutputs, AnalysisParameters


class WordCountParameters(AnalysisParameters):
    """Count a text's words (no default for analysis_name: init fills it in)."""

    min_length: int = Field(default=1, ge=1, description="Shorter words are not counted.")
    lowercase: bool = Field(default=True, description="Count 'The' and 'the' as one.")


class WordCountOutputs(AnalysisOutputs):
    """What one job counted."""

    words: int
    distinct_words: int
'''

RUN_CAPSULE = '''\
"""My analysis: count the words of each asset's notes.txt."""

import json
from collections import Counter
from pathlib import Path

from analysis_wrapper import Job, run_analysis_jobs
from word_count_model import WordCountOutputs, WordCountParameters


def run_analysis(job: Job, parameters: WordCountParameters, results_dir: Path) -> WordCountOutputs:
    """Count the words of the job's first asset's notes.txt; write the counts."""
    text = job.inputs[0].local_path("notes.txt").read_text()
    if parameters.lowercase:
        text = text.lower()
    words = [word for word in text.split() if len(word) >= parameters.min_length]
    counts = Counter(words)
    (results_dir / "counts.json").write_text(json.dumps(counts, sort_keys=True))
    return WordCountOutputs(words=len(words), distinct_words=len(counts))


if __name__ == "__main__":
    run_analysis_jobs(
        run_analysis, parameters_model=WordCountParameters, outputs_model=WordCountOutputs
    )
'''

NOTES = {"notes/monday": "The cat sat on the mat\n", "notes/tuesday": "A dog ran\nthe end\n"}

FRAMEWORK_TESTS = [
    "tests/integration/test_capsule_in_code.py",
    "tests/unit/test_app_panel.py",
    "tests/unit/test_layout.py",
    "tests/unit/test_isi_violations.py",
    "tests/integration/test_plan_reasons.py",
]
"""Run in the copy: the ones that read code/, and some that use the test capsule."""


def copy_working_tree(root: Path) -> Path:
    """The repository's files as ``git`` sees them (committed or not, never ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():  # a file deleted but not yet committed is listed too
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``analysis-wrapper ARGS`` in ``root``, with the copy's framework."""
    return subprocess.run(
        [sys.executable, "-m", "analysis_wrapper", *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root / "code")},
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_capsule(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python run_capsule.py ARGS`` in the copy's code/."""
    return subprocess.run(
        [sys.executable, "-u", "run_capsule.py", *args],
        cwd=root / "code",
        env={**os.environ, "PYTHONPATH": str(root / "code")},
        capture_output=True,
        text=True,
        timeout=300,
    )


def replace_the_example(root: Path) -> None:
    """What a scientist does: delete the example's files, write their own and their data."""
    code, data = root / "code", root / "data"
    for name in ("example_analysis_model.py", "example_isi_violations.py"):
        (code / name).unlink()
    shutil.rmtree(code / "example_notebooks")
    shutil.rmtree(data / "sessions")
    (code / "word_count_model.py").write_text(MODEL)
    (code / "run_capsule.py").write_text(RUN_CAPSULE)
    for location, text in NOTES.items():
        (data / location).mkdir(parents=True)
        (data / location / "notes.txt").write_text(text)


@pytest.fixture
def replaced(tmp_path: Path) -> Path:
    """A copy of the repository whose example was replaced and whose data/ was reset."""
    root = copy_working_tree(tmp_path / "my-analysis")
    replace_the_example(root)
    with isolated_environment():
        done = cli(root, "init", *(arg for loc in NOTES for arg in ("--input", loc)))
    assert done.returncode == 0, done.stderr
    git(root, "init", "-q", "-b", "main")
    git(root, "remote", "add", "origin", CAPSULE_REMOTE)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "my analysis")
    return root


def test_init_resets_data_to_the_new_model(replaced: Path) -> None:
    """One job per input, no example parameter left, the panel offers the new ones."""
    parameters = json.loads((replaced / "data" / "analysis_parameters.json").read_text())
    assert parameters == {
        "fixed_parameters": {"analysis_name": "my-analysis"},
        "distributed_parameters": [],
    }
    jobs = [json.loads(p.read_text()) for p in (replaced / "data" / "job_dict").glob("*.json")]
    assert sorted(job["s3_location"][0] for job in jobs) == sorted(NOTES)
    assert all(job["distributed_parameters"] is None for job in jobs)
    panel = json.loads((replaced / ".codeocean" / "app-panel.json").read_text())
    names = {parameter["param_name"] for parameter in panel["parameters"]}
    assert {"min_length", "lowercase"} <= names and "isi_violations_cutoff" not in names


def test_the_new_analysis_plans_and_posts(replaced: Path) -> None:
    """Every job is valid and runs; the records hold the new model's outputs."""
    with isolated_environment():
        plan = run_capsule(replaced, "--plan", "1")
        assert plan.returncode == 0, plan.stderr
        assert "2 run, 0 skip, 0 invalid" in plan.stdout + plan.stderr
        posted = run_capsule(replaced, "--dry_run", "0")
        assert posted.returncode == 0, posted.stderr
        found = cli(replaced, "results", "find", "--format", "json")
    assert found.returncode == 0, found.stderr
    records = json.loads(found.stdout)
    outputs = [r["processing"]["data_processes"][0]["output_parameters"] for r in records]
    assert sorted(o["words"] for o in outputs) == [5, 6]
    assert sorted(o["distinct_words"] for o in outputs) == [5, 5]


def test_the_framework_tests_pass_in_the_replaced_copy(replaced: Path) -> None:
    """The tests that follow code/ and those on the test capsule pass, and lint is clean."""
    env = {**os.environ, "PYTHONPATH": str(replaced / "code")}
    for name in ("DOCDB_HOST", "ANALYSIS_BUCKET"):
        env.pop(name, None)
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "code", "tests"],
        cwd=replaced,
        env=env,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FRAMEWORK_TESTS],
        cwd=replaced,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert tests.returncode == 0, tests.stdout[-4000:]
    assert " passed" in tests.stdout and "skipped" not in tests.stdout


def test_init_keeps_the_inputs_of_the_jobs_there(tmp_path: Path) -> None:
    """Without --input, init writes one job per distinct input of the old job files."""
    capsule = make_capsule_copy(tmp_path / "capsule")
    before = [json.loads(p.read_text()) for p in capsule.job_dir.glob("*.json")]
    with isolated_environment():
        done = capsule.cli("init")
    assert done.returncode == 0, done.stderr
    after = [json.loads(p.read_text()) for p in capsule.job_dir.glob("*.json")]
    assert len(before) == 6 and len(after) == 3
    assert sorted(j["s3_location"] for j in after) == sorted(
        {tuple(j["s3_location"]): j["s3_location"] for j in before}.values()
    )
    assert {j["asset_name"][0] for j in after} == {j["asset_name"][0] for j in before}
    # The test capsule's model defaults analysis_name: nothing is fixed, nothing is invalid.
    parameters = json.loads((capsule.data / "analysis_parameters.json").read_text())
    assert parameters == {"fixed_parameters": {}, "distributed_parameters": []}
    with isolated_environment():
        plan = capsule.run("--plan", "1")
    assert plan.returncode == 0, plan.stderr
    assert "3 run, 0 skip, 0 invalid" in plan.stdout + plan.stderr
