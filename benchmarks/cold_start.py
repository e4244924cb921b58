"""Cold start: from launching the capsule to its first job, against upstream's import.

    python benchmarks/cold_start.py [--rounds 5] [--no-upstream]

- **this wrapper**: a throwaway capsule (a git repository) whose ``run_analysis``
  records the time it is first called and exits; measured from just before the
  process is launched, so it includes the interpreter, every import, the command
  line, the git lookup, store opening and planning of one job. The framework is
  copied into the capsule's ``code/`` folder, where a capsule holds it, and timed
  twice: compiled from source (no ``__pycache__``, and ``PYTHONDONTWRITEBYTECODE``
  set: each Code Ocean run starts from the capsule's committed ``/code``), and with
  its bytecode cached (any later run on a workstation, and how upstream's
  pip-installed package is timed: pip compiles at install).
- **upstream**: ``analysis_pipeline_utils`` 0.2.8 from PyPI, installed into its own
  virtual environment (``.ci/.venv-upstream``), imported the way its template's
  ``run_capsule.py`` does (``from analysis_pipeline_utils.utils_analysis_wrapper import
  run_analysis_jobs``); measured to the end of that import alone, which is less than
  its real start-up.
- **the example capsule**: the repository's own ``code/`` and ``data/`` (the capsule a
  scientist starts from and copies), in a fresh git repository, from launch to the
  exit of ``python run_capsule.py --plan 1``; beside it, in the same venv and the same
  run, the import of aind-data-schema's ``Metadata`` module, which the plan never needs
  (target: the plan at most 0.3 of it). Both with bytecode cached.

Prints a markdown table of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FRAMEWORK = REPO / "code" / "analysis_wrapper"
UPSTREAM_VENV = REPO / ".ci" / ".venv-upstream"
UPSTREAM_PACKAGE = "analysis-pipeline-utils==0.2.8"
UPSTREAM_IMPORT = "from analysis_pipeline_utils.utils_analysis_wrapper import run_analysis_jobs"

CAPSULE_SCRIPT = """
import os, sys, time
from pathlib import Path
from analysis_wrapper import AnalysisParameters, Job, run_analysis_jobs

class Parameters(AnalysisParameters):
    threshold: float = 0.5

def run_analysis(job: Job, parameters: Parameters, results_dir: Path) -> None:
    Path(os.environ["FIRST_JOB_AT"]).write_text(repr(time.time()))
    os._exit(0)

if __name__ == "__main__":
    run_analysis_jobs(run_analysis, parameters_model=Parameters)
"""


def make_capsule(root: Path) -> Path:
    """A one-job capsule in a fresh git repository; returns its run_capsule.py."""
    (root / "code").mkdir(parents=True)
    shutil.copytree(
        FRAMEWORK, root / "code" / FRAMEWORK.name, ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "data" / "job_dict").mkdir(parents=True)
    script = root / "code" / "run_capsule.py"
    script.write_text(CAPSULE_SCRIPT)
    job = {"s3_location": ["s3://bucket/asset"], "distributed_parameters": {"threshold": 0.1}}
    (root / "data" / "job_dict" / "job.json").write_text(json.dumps(job))
    (root / "data" / "analysis_parameters.json").write_text(
        json.dumps({"fixed_parameters": {"analysis_name": "cold start"}})
    )
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.org",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.org"}  # fmt: skip
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)
    return script


def time_wrapper(script: Path, rounds: int, *, write_bytecode: bool = False) -> list[float]:
    """Seconds from launch to the first call of run_analysis, per round.

    Python writes no bytecode cache unless ``write_bytecode``; it reads one if present.
    """
    times = []
    marker = script.parent.parent / "first_job_at"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    if not write_bytecode:
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
    for _ in range(rounds):
        marker.unlink(missing_ok=True)
        env = {**environment, "FIRST_JOB_AT": str(marker)}
        started = time.time()
        subprocess.run(
            [sys.executable, str(script), "--dry_run", "1"],
            cwd=script.parent,
            env=env,
            check=True,
            capture_output=True,
        )
        times.append(float(marker.read_text()) - started)
    return times


def make_example_capsule(root: Path) -> Path:
    """The repository's capsule (its code/ and data/) in a fresh git repository."""
    shutil.copytree(REPO / "code", root / "code", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "data", root / "data")
    (root / "results").mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.org",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.org"}  # fmt: skip
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)
    return root / "code" / "run_capsule.py"


def time_launch(argv: list[str], cwd: Path, rounds: int) -> list[float]:
    """Seconds from launch to exit of ``argv``, per round, writing bytecode as it goes."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, env=environment, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def time_example(work: Path, rounds: int) -> tuple[float, float]:
    """Medians of the example's ``--plan 1`` and of importing ``Metadata``, interleaved."""
    script = make_example_capsule(work / "example")
    plan = [sys.executable, str(script), "--plan", "1"]
    metadata = [sys.executable, "-c", "from aind_data_schema.core.metadata import Metadata"]
    time_launch(plan, script.parent, 1)  # warm-up: caches and bytecode
    time_launch(metadata, work, 1)
    plans: list[float] = []
    imports: list[float] = []
    for _ in range(rounds):  # alternate, so a busy moment weighs on both alike
        plans += time_launch(plan, script.parent, 1)
        imports += time_launch(metadata, work, 1)
    return statistics.median(plans), statistics.median(imports)


def ensure_upstream() -> Path:
    """Install upstream's library into its own venv once; return its python."""
    python = UPSTREAM_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(UPSTREAM_VENV)], check=True)
        subprocess.run(
            [str(UPSTREAM_VENV / "bin" / "pip"), "install", "-q", UPSTREAM_PACKAGE], check=True
        )
    return python


def time_upstream(python: Path, rounds: int) -> list[float]:
    """Seconds from launch to the end of upstream's import, per round."""
    times = []
    for _ in range(rounds):
        started = time.time()
        subprocess.run(
            [str(python), "-c", f"{UPSTREAM_IMPORT}\nimport time; print(repr(time.time()))"],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "DOCDB_HOST": "unused.example.org"},
        )
        times.append(time.time() - started)
    return times


def main() -> None:
    """Measure both and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-upstream", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aw-cold-") as work:
        script = make_capsule(Path(work) / "capsule")
        time_wrapper(script, 1)  # warm the file cache, as a second run would be
        from_source = statistics.median(time_wrapper(script, args.rounds))
        assert not list(script.parent.rglob("__pycache__")), "bytecode was written"
        time_wrapper(script, 1, write_bytecode=True)
        cached = statistics.median(time_wrapper(script, args.rounds))
        example_plan, metadata_import = time_example(Path(work), args.rounds)
    print("| measurement | median s | note |")
    print("|---|---|---|")
    print(
        f"| this wrapper: launch to first job, bytecode cached | {cached:.3f} | target <= 0.25 s |"
    )
    print(
        f"| this wrapper: launch to first job, compiled from source | {from_source:.3f} "
        "| each Code Ocean run |"
    )
    print(
        f"| the example capsule: `run_capsule.py --plan 1`, launch to exit | {example_plan:.3f} | |"
    )
    print(f"| importing aind-data-schema's Metadata, same venv | {metadata_import:.3f} | |")
    print(
        f"| ratio (example plan / Metadata import) | {example_plan / metadata_import:.2f} "
        "| target <= 0.30 |"
    )
    if not args.no_upstream:
        python = ensure_upstream()
        time_upstream(python, 1)
        theirs = statistics.median(time_upstream(python, args.rounds))
        print(f"| upstream {UPSTREAM_PACKAGE}: launch to end of import | {theirs:.3f} | |")
        print(
            f"| ratio (ours / upstream), bytecode cached as upstream's is | {cached / theirs:.2f} "
            "| target <= 0.20 |"
        )
        print(f"| ratio (ours / upstream), ours from source | {from_source / theirs:.2f} | |")


if __name__ == "__main__":
    main()
