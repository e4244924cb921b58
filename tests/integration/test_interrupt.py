"""Ctrl-C: a real capsule process gets SIGINT while a job runs, then a rerun resumes.

The capsule's analysis writes ``<job index>`` to the file ``ANALYSIS_STARTED`` names
and, for the job ``BLOCK_INDEX`` names, waits (up to a minute) for a file that never
appears: the test sends SIGINT once that job has started, as a terminal's Ctrl-C would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CapsuleCopy, make_capsule_copy

CAPSULE_SCRIPT = """
import os
import time
from pathlib import Path

from pydantic import Field

from analysis_wrapper import AnalysisParameters, run_analysis_jobs


class Parameters(AnalysisParameters):
    analysis_name: str = Field(default="interrupt test", description="Name of the analysis.")
    index: int = Field(default=0, description="Which job this is.")


def run_analysis(job, parameters, results_dir):
    started = Path(os.environ["ANALYSIS_STARTED"])
    with started.open("a", encoding="utf-8") as out:
        out.write(f"{parameters.index}\\n")
    if str(parameters.index) == os.environ.get("BLOCK_INDEX"):
        never = results_dir / "never"
        for _ in range(600):  # until SIGINT; a minute at most, so a broken test ends
            if never.exists():
                break
            time.sleep(0.1)
    (results_dir / "out.txt").write_text(str(parameters.index), encoding="utf-8")
    return {"index": parameters.index}


if __name__ == "__main__":
    run_analysis_jobs(run_analysis, parameters_model=Parameters)
"""

JOBS = 3
BLOCK = 1


def interrupt_capsule(root: Path) -> CapsuleCopy:
    """The example capsule with the blocking analysis and three job files."""
    copy = make_capsule_copy(root)
    (copy.code / "run_capsule.py").write_text(CAPSULE_SCRIPT, encoding="utf-8")
    (copy.data / "analysis_parameters.json").unlink(missing_ok=True)
    shutil.rmtree(copy.job_dir)
    copy.job_dir.mkdir()
    for index in range(JOBS):
        job = {
            "s3_location": [f"s3://example-assets/asset-{index:03d}"],
            "distributed_parameters": {"index": index},
        }
        (copy.job_dir / f"job_{index}.json").write_text(json.dumps(job), encoding="utf-8")
    copy.commit("interrupt test capsule")
    return copy


def wait_for_line(path: Path, line: str, process: subprocess.Popen[str]) -> None:
    """Wait until ``path`` holds ``line`` (the job started), or fail if the run ended."""
    for _ in range(1200):  # polled, not timed: a minute at most before the test gives up
        if path.exists() and line in path.read_text(encoding="utf-8").split():
            return
        if process.poll() is not None:
            out, _ = process.communicate()
            log = log_of(path).read_text(encoding="utf-8")
            pytest.fail(f"the run ended before job {line} started: {out}{log}")
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"job {line} did not start")


def claims_by_label(capsule: CapsuleCopy) -> dict[str, dict[str, object]]:
    """The capsule's claims by job file name, through ``analysis-wrapper status``."""
    done = capsule.cli("status", "--all", "--format", "json")
    assert done.returncode == 0, done.stderr
    return {str(claim["label"]): claim for claim in json.loads(done.stdout)}


def start(capsule: CapsuleCopy, started: Path, *flags: str) -> subprocess.Popen[str]:
    """Start a posting run whose job ``BLOCK`` waits, in a process group of its own.

    Its log goes to :func:`log_of` ``started``, which the test reads as the run goes.
    """
    env = {**os.environ, "ANALYSIS_STARTED": str(started), "BLOCK_INDEX": str(BLOCK)}
    with log_of(started).open("w", encoding="utf-8") as log:
        return subprocess.Popen(
            [sys.executable, "-u", str(capsule.code / "run_capsule.py"), "--dry_run", "0", *flags],
            cwd=capsule.code,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,  # as a shell runs a command: its own process group
            preexec_fn=_as_on_a_terminal,
        )


def log_of(started: Path) -> Path:
    """Where :func:`start` writes the run's log (stderr)."""
    return started.with_name(started.name + ".log")


def wait_for_log(started: Path, text: str, process: subprocess.Popen[str]) -> None:
    """Wait until the run has logged ``text``, or fail if it ended first."""
    for _ in range(1200):  # polled, not timed: a minute at most before the test gives up
        if text in log_of(started).read_text(encoding="utf-8"):
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended before it logged {text!r}: {process.communicate()[0]}")
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"the run did not log {text!r}")


def _as_on_a_terminal() -> None:
    """Let SIGINT interrupt the run, as a terminal's foreground command can.

    A command a non-interactive shell starts with ``&`` inherits SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler: the test suite may run so.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c(process: subprocess.Popen[str], started: Path) -> tuple[str, str]:
    """Send SIGINT to every process of the run's group, as a terminal's Ctrl-C does.

    Returns the run's stdout and log.
    """
    os.killpg(process.pid, signal.SIGINT)
    out, _ = process.communicate(timeout=120)
    return out, log_of(started).read_text(encoding="utf-8")


@pytest.mark.parametrize("executor", ["serial", "process", "dask"])
def test_ctrl_c_releases_writes_the_report_and_a_rerun_resumes(
    tmp_path: Path, executor: str
) -> None:
    """SIGINT mid-job: one line, exit 130, its claim released, a report; the rerun resumes."""
    capsule = interrupt_capsule(tmp_path / "capsule")
    started = tmp_path / "started.txt"
    process = start(capsule, started, "--executor", executor, "--workers", "1")
    wait_for_line(started, str(BLOCK), process)
    # The run counts job 0 done once its result reaches the run's process, which with
    # Dask can be after the worker has started job 1.
    wait_for_log(started, "job_0.json: succeeded", process)
    out, err = ctrl_c(process, started)

    assert process.returncode == 130, out + err
    assert out == f"interrupted: {BLOCK} done, 1 released; run again to resume\n", out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    claims = claims_by_label(capsule)
    assert claims["job_0.json"]["state"] == "done"
    assert claims[f"job_{BLOCK}.json"]["state"] == "released"
    assert "job_2.json" not in claims  # never started
    summary = json.loads((capsule.results / "run_summary.json").read_text())
    assert summary["interrupted"] is True and summary["released"] == 1
    report = (capsule.results / "report.html").read_text(encoding="utf-8")
    assert "interrupted: 1 done, 1 released" in report
    assert len(re.findall(r'<tr class="job succeeded"', report)) == BLOCK
    assert len(list(capsule.results.glob("report-*.html"))) == 1

    again = capsule.run(
        "--dry_run", "0", "--executor", executor, env={"ANALYSIS_STARTED": str(started)}
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"{JOBS} job(s): 2 ran, 1 skipped, 0 failed (posted)"
    lines = started.read_text(encoding="utf-8").split()
    assert sorted(lines) == ["0", "1", "1", "2"]  # job 0 ran once: the rerun skipped it
    assert {claim["state"] for claim in claims_by_label(capsule).values()} == {"done"}


def test_ctrl_c_stops_idle_pool_workers_without_a_traceback(tmp_path: Path) -> None:
    """Three workers, two idle once their jobs are done: Ctrl-C still prints one line."""
    capsule = interrupt_capsule(tmp_path / "capsule")
    started = tmp_path / "started.txt"
    process = start(capsule, started, "--executor", "process", "--workers", str(JOBS))
    wait_for_line(started, str(BLOCK), process)
    for _ in range(600):  # polled: until the other two jobs are recorded (a minute at most)
        states = {label: claim["state"] for label, claim in claims_by_label(capsule).items()}
        if states.get("job_0.json") == states.get("job_2.json") == "done":
            break
        time.sleep(0.1)
    else:
        process.kill()
        pytest.fail(f"the other jobs did not finish: {states}")
    out, err = ctrl_c(process, started)

    assert process.returncode == 130, out + err
    assert out == "interrupted: 2 done, 1 released; run again to resume\n", out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert claims_by_label(capsule)[f"job_{BLOCK}.json"]["state"] == "released"
