"""Run a rebuilt job with the code of its commit, posting nothing.

The commit's own ``code/run_capsule.py`` runs as a program, in a process of its own,
as a dry run (``--dry_run 1``) of one job file: so the user's ``run_analysis`` and
parameters model are those of the commit, and so is the framework when the commit's
``code/`` holds it (as the template's does: Python finds ``code/analysis_wrapper``
beside the script first); otherwise the installed framework runs it. The packages are
those of the Python environment that runs ``reproduce``.

Nothing can be posted, whatever the commit's code does: the run's record store is an
empty SQLite file and its results store an empty folder, both in a temporary folder,
and its files go to the results directory given. The rest of the environment is the
one the job ran in, as far as it can be:

- the inputs: a fresh input directory holds the job file and, beside it, links to
  every entry of the data folder (``data/``, or the one given), so relative locations
  and Code Ocean mounts resolve as they did; S3 inputs are read with the AWS settings
  of this environment, through the same download cache;
- the asset records: from the server the job read them from (``METADATA_HOST``, else
  ``DOCDB_HOST``'s), although the record store is replaced;
- the code URL: the record's (``remote.origin.url`` is set for the run through git's
  environment), so a clone of a fork or a mirror gets the record's key;
- the input identity: ``INPUT_IDENTITY=content`` when the record's key held the
  inputs' versions;
- not Code Ocean: the run names its code by git (``CODE_VERSION_POLICY=commit``) and
  writes no byte code into the checkout (which would change its code tree).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..job.job_file import JOB_DIR_NAME
from ..job.parameters import PARAMETERS_FILE_NAME
from .job_rebuild import RebuiltJob

RUN_SUMMARY_NAME = "run_summary.json"
RECORDS_FILE_NAME = "records.sqlite"
OWN_STOP_WAIT_S = 2.0
"""How long an interrupted run gets to end of itself: a terminal's Ctrl-C reaches it too."""
STOP_WAIT_S = 10.0
"""How long it then gets after a Ctrl-C of its own, before it is killed."""

_CODE_OCEAN_RUN = ("CO_COMPUTATION_ID", "CO_CAPSULE_ID", "CO_PIPELINE_ID")
_KEPT_OUTPUT_LINES = 20


@dataclass(frozen=True)
class Rerun:
    """How the run of a rebuilt job ended.

    Parameters
    ----------
    key : str or None
        The key the run gave the job (``None`` when it did not get that far).
    folder : Path or None
        The job's files (``<results directory>/<key>``), when the analysis succeeded.
    error : str or None
        Why the run failed, in one line; ``None`` when it succeeded.
    """

    key: str | None
    folder: Path | None
    error: str | None = None


def prepare_input_directory(folder: Path, data_dir: Path, rebuilt: RebuiltJob) -> Path:
    """Make the run's input directory: the job file, and links to the data folder's entries.

    The data folder's own ``job_dict/`` and ``analysis_parameters.json`` are left
    out: the job file carries every parameter, validated, so no other layer may add one.

    Returns
    -------
    Path
        ``folder``.
    """
    jobs = folder / JOB_DIR_NAME
    jobs.mkdir(parents=True)
    (jobs / f"reproduce-{rebuilt.key[:12]}.json").write_text(
        json.dumps(rebuilt.job, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    if data_dir.is_dir():
        for entry in sorted(data_dir.iterdir()):
            if entry.name not in (JOB_DIR_NAME, PARAMETERS_FILE_NAME):
                (folder / entry.name).symlink_to(entry.resolve(), entry.is_dir())
    return folder


def rerun_environment(
    environ: Mapping[str, str],
    stores: Path,
    code_url: str,
    input_identity: str | None,
) -> dict[str, str]:
    """The run's environment: ``environ``, with stores that cannot post and the record's code.

    Parameters
    ----------
    environ : mapping
        The environment ``reproduce`` runs in.
    stores : Path
        An empty folder for the run's record and results stores.
    code_url : str
        The record's code URL; the run names its code by it.
    input_identity : str or None
        ``INPUT_IDENTITY`` for the run (``None``: as in ``environ``).
    """
    env = {name: value for name, value in environ.items() if name not in _CODE_OCEAN_RUN}
    # The job read its asset records from METADATA_HOST, else from DOCDB_HOST's server;
    # DOCDB_HOST is replaced below, so name that source (or none) explicitly.
    if not env.get("METADATA_HOST", "").strip():
        host = env.get("DOCDB_HOST", "").strip()
        env["METADATA_HOST"] = host if host and not host.startswith("sqlite:") else "none"
    env["DOCDB_HOST"] = "sqlite://" + (stores / RECORDS_FILE_NAME).as_posix()
    env["ANALYSIS_BUCKET"] = (stores / "results").as_posix()
    env["CODE_VERSION_POLICY"] = "commit"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if input_identity is not None:
        env["INPUT_IDENTITY"] = input_identity
    if code_url:
        # Highest-priority configuration, for this process tree only (git >= 2.31).
        count = int(env.get("GIT_CONFIG_COUNT") or 0)
        env[f"GIT_CONFIG_KEY_{count}"] = "remote.origin.url"
        env[f"GIT_CONFIG_VALUE_{count}"] = code_url
        env["GIT_CONFIG_COUNT"] = str(count + 1)
    return env


def run_commit_capsule(
    script: Path,
    input_dir: Path,
    results_dir: Path,
    env: Mapping[str, str],
    echo: Callable[[str], None],
) -> Rerun:
    """Dry-run the commit's ``run_capsule.py`` on the one job in ``input_dir``.

    Parameters
    ----------
    script : Path
        The commit's ``code/run_capsule.py``, in its checkout.
    input_dir : Path
        The run's input directory (:func:`prepare_input_directory`).
    results_dir : Path
        Where the run writes the job's files (``<key>/``) and its summary.
    env : mapping
        The run's environment (:func:`rerun_environment`).
    echo : callable
        Called with each line the run prints (its log), as it prints it.
    """
    if not script.is_file():
        return Rerun(None, None, f"the commit has no {script.name} at {script.parent}")
    results_dir.mkdir(parents=True, exist_ok=True)
    summary_file = results_dir / RUN_SUMMARY_NAME
    summary_file.unlink(missing_ok=True)  # a summary left by an earlier run says nothing
    command = [sys.executable, "-u", str(script), "--dry_run", "1"]
    command += ["--input_directory", str(input_dir), "--results_directory", str(results_dir)]
    last_lines: deque[str] = deque(maxlen=_KEPT_OUTPUT_LINES)
    with subprocess.Popen(
        command,
        cwd=script.parent,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                echo(line.rstrip("\n"))
                last_lines.append(line.strip())
            returncode = process.wait()
        except BaseException:
            _stop(process)
            raise
    return _outcome(summary_file, returncode, [line for line in last_lines if line])


def _outcome(summary_file: Path, returncode: int, last_lines: list[str]) -> Rerun:
    """Read how the run went from its ``run_summary.json``."""
    try:
        summary: dict[str, Any] = json.loads(summary_file.read_text(encoding="utf-8"))
        jobs = summary["jobs"]
    except (OSError, ValueError, KeyError, TypeError):
        said = last_lines[-1] if last_lines else "no output"
        return Rerun(None, None, f"the run exited {returncode} before its summary: {said}")
    if len(jobs) != 1:
        return Rerun(None, None, f"the run had {len(jobs)} jobs, not the one it was given")
    job = jobs[0]
    key = job.get("key")
    if job.get("status") != "succeeded" or not key:
        why = job.get("error") or job.get("reason") or f"status {job.get('status')}"
        return Rerun(key, None, f"the job {job.get('action')}: {' '.join(str(why).split())}")
    if returncode != 0:
        return Rerun(key, None, f"the run exited {returncode} although its job succeeded")
    return Rerun(key, summary_file.parent / key)


def _stop(process: subprocess.Popen[str]) -> None:
    """End an interrupted run: let it end, then send it Ctrl-C (it ends cleanly), then kill."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=OWN_STOP_WAIT_S)
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
