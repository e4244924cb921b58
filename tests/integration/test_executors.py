"""The example runs the same on every executor: process pool, Dask LocalCluster, external Dask."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlsplit

from conftest import CapsuleCopy
from servers import DaskCluster

JOB_COUNT = 6


def summary_of(capsule: CapsuleCopy) -> dict[str, object]:
    return json.loads((capsule.results / "run_summary.json").read_text())


def stored_locations(capsule: CapsuleCopy) -> dict[str, str]:
    """Each record's location, by key, read with plain sqlite3."""
    with sqlite3.connect(capsule.store / "records.sqlite") as db:
        rows = db.execute("SELECT _id, document FROM analysis_results").fetchall()
    return {key: json.loads(document)["location"] for key, document in rows}


def stored_keys(capsule: CapsuleCopy) -> set[str]:
    with sqlite3.connect(capsule.store / "records.sqlite") as db:
        return {row[0] for row in db.execute("SELECT _id FROM analysis_results")}


def assert_posted_every_job(capsule: CapsuleCopy) -> None:
    """Six records, each with a complete result folder whose manifest lists its files."""
    summary = summary_of(capsule)
    assert (summary["ran"], summary["skipped"], summary["failed"]) == (JOB_COUNT, 0, 0)
    keys = stored_keys(capsule)
    assert keys == {job["key"] for job in summary["jobs"]}  # type: ignore[attr-defined]
    for key, location in stored_locations(capsule).items():
        folder = Path(unquote(urlsplit(location).path))  # the attempt's folder
        assert folder.parent == (capsule.store / "results" / key).resolve()
        manifest = json.loads((folder / "manifest.json").read_text())
        assert {entry["path"] for entry in manifest["files"]} == {
            "units.csv",
            "units.png",
            "metadata.nd.json",
            "key.json",
            "ro-crate-metadata.json",
        }


def after_loading_the_session(capsule: CapsuleCopy, lines: str) -> None:
    """Insert ``lines`` into the capsule's ``run_analysis``, after it loads the session."""
    script = capsule.code / "run_capsule.py"
    source = script.read_text()
    marker = next(line for line in source.splitlines(True) if "session = load_session(" in line)
    script.write_text(source.replace(marker, marker + lines))


def test_process_pool_posts_every_job_then_skips(capsule: CapsuleCopy) -> None:
    """--executor process --workers 2 posts all six jobs; a second run skips them."""
    done = capsule.run("--dry_run", "0", "--executor", "process", "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert_posted_every_job(capsule)
    again = capsule.run("--dry_run", "0", "--executor", "process", "--workers", "2")
    assert again.returncode == 0, again.stderr
    assert summary_of(capsule)["skipped"] == JOB_COUNT


def test_process_pool_isolates_a_failing_job(capsule: CapsuleCopy) -> None:
    """A job that raises in a pool worker fails alone; the others are posted; exit 1."""
    after_loading_the_session(
        capsule,
        '    if "654321" in session["subject_id"]:\n        raise RuntimeError("bad probe")\n',
    )
    capsule.commit("one session fails")
    done = capsule.run("--dry_run", "0", "--executor", "process", "--workers", "2")
    assert done.returncode == 1
    summary = summary_of(capsule)
    assert (summary["ran"], summary["failed"]) == (4, 2)
    failed = [job for job in summary["jobs"] if job["status"] == "failed"]  # type: ignore[attr-defined]
    assert all("RuntimeError: bad probe" in job["error"] for job in failed)
    assert len(stored_keys(capsule)) == 4


def test_dask_local_cluster_posts_every_job(capsule: CapsuleCopy) -> None:
    """--executor dask with no scheduler starts a LocalCluster and posts all six jobs."""
    done = capsule.run("--dry_run", "0", "--executor", "dask", "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert_posted_every_job(capsule)


def test_dask_local_cluster_keeps_dask_errors_off_the_terminal(capsule: CapsuleCopy) -> None:
    """A worker's own ERROR lines (a heartbeat retried under load) do not reach a run's stderr."""
    after_loading_the_session(
        capsule,
        "    import logging\n"
        "    try:\n"
        '        raise OSError("Stream is closed")\n'
        "    except OSError:\n"
        '        logging.getLogger("distributed.worker").exception(\n'
        '            "Failed to communicate with scheduler during heartbeat."\n'
        "        )\n",
    )
    capsule.commit("a worker logs what Dask logs under load")
    done = capsule.run("--dry_run", "0", "--executor", "dask", "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert_posted_every_job(capsule)
    assert "heartbeat" not in done.stderr
    assert "Traceback" not in done.stderr


def test_external_dask_cluster_posts_every_job(
    capsule: CapsuleCopy, dask_cluster: DaskCluster
) -> None:
    """--scheduler_address runs the jobs on separately started scheduler and worker processes."""
    done = capsule.run(
        "--dry_run", "0", "--executor", "dask", "--scheduler_address", dask_cluster.address
    )
    assert done.returncode == 0, done.stderr
    assert_posted_every_job(capsule)


def test_dask_scheduler_address_from_environment(
    capsule: CapsuleCopy, dask_cluster: DaskCluster
) -> None:
    """DASK_SCHEDULER_ADDRESS stands in for --scheduler_address."""
    done = capsule.run(
        "--dry_run", "0", "--executor", "dask",
        env={"DASK_SCHEDULER_ADDRESS": dask_cluster.address},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_posted_every_job(capsule)


def test_unreachable_scheduler_is_a_configuration_error(capsule: CapsuleCopy) -> None:
    """A scheduler nobody runs gives exit 2 and one line naming the address."""
    from servers import free_port

    address = f"tcp://127.0.0.1:{free_port()}"
    done = capsule.run(
        "--executor", "dask", "--scheduler_address", address,
        env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"},
    )  # fmt: skip
    assert done.returncode == 2
    assert address in done.stderr
    assert "Traceback" not in done.stderr


def test_workers_must_be_positive(capsule: CapsuleCopy, tmp_path: Path) -> None:
    """--workers 0 is a usage error (exit 2)."""
    done = capsule.run("--executor", "process", "--workers", "0")
    assert done.returncode == 2
    assert "--workers" in done.stderr
