"""`analysis-wrapper dispatch`: job files from a CSV or --input, crossed with a grid."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from conftest import CapsuleCopy

SESSIONS = [
    "ecephys_612345_2025-03-14_10-02-11",
    "ecephys_612345_2025-03-15_09-48-30",
    "ecephys_654321_2025-04-02_14-20-05",
]


def write_csv(path: Path) -> Path:
    """A CSV naming the example's three sessions, with subject and asset columns."""
    lines = ["location,subject,asset_name,docdb_record_id"]
    for index, session in enumerate(SESSIONS):
        lines.append(f"sessions/{session},{session.split('_')[1]},{session},id-{index}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def jobs_in(folder: Path) -> dict[str, dict[str, Any]]:
    """Every job file under ``folder/job_dict``, by name."""
    return {p.name: json.loads(p.read_text()) for p in sorted((folder / "job_dict").glob("*.json"))}


def test_csv_crossed_with_grid_is_idempotent(capsule: CapsuleCopy, tmp_path: Path) -> None:
    """3 CSV rows x 2 distributed_parameters = 6 job files; a second dispatch writes the same."""
    table = write_csv(tmp_path / "assets.csv")
    out = tmp_path / "out"
    args = ["dispatch", "--csv", str(table), "--location-column", "location", "--dir", str(out)]
    args += ["--parameters", str(capsule.data / "analysis_parameters.json")]
    done = capsule.cli(*args)
    assert done.returncode == 0, done.stderr
    jobs = jobs_in(out)
    assert len(jobs) == 6
    pairs = {
        (j["s3_location"][0], j["distributed_parameters"]["isi_violations_cutoff"])
        for j in jobs.values()
    }
    assert pairs == {(f"sessions/{s}", c) for s in SESSIONS for c in (0.1, 0.5)}
    assert {tuple(j["docdb_record_id"]) for j in jobs.values()} == {("id-0",), ("id-1",), ("id-2",)}
    again = capsule.cli(*args)
    assert again.returncode == 0, again.stderr
    assert jobs_in(out) == jobs

    grouped = tmp_path / "grouped"
    by_subject = capsule.cli(*args[:-4], "--dir", str(grouped), "--group-by", "subject")
    assert by_subject.returncode == 0, by_subject.stderr
    groups = jobs_in(grouped)
    assert len(groups) == 2  # no analysis_parameters.json in grouped/: no grid
    sizes = sorted(len(j["s3_location"]) for j in groups.values())
    assert sizes == [1, 2]
    assert {j["group_metadata"]["subject"] for j in groups.values()} == {"612345", "654321"}


def test_bad_column_and_location_exit_2(capsule: CapsuleCopy, tmp_path: Path) -> None:
    """A missing CSV column or an invalid --input is a usage error naming it; nothing written."""
    table = write_csv(tmp_path / "assets.csv")
    out = tmp_path / "out"
    done = capsule.cli("dispatch", "--csv", str(table), "--dir", str(out))
    assert done.returncode == 2
    assert "'s3_location'" in done.stderr and "location" in done.stderr
    bad = capsule.cli("dispatch", "--input", "../outside", "--dir", str(out))
    assert bad.returncode == 2
    assert "../outside" in bad.stderr
    assert not (out / "job_dict").exists()


def test_skip_done_leaves_out_posted_jobs(capsule: CapsuleCopy) -> None:
    """After a posting run, --skip-done leaves out its 6 jobs and keeps only new cutoffs."""
    posted = capsule.run("--dry_run", "0")
    assert posted.returncode == 0, posted.stderr
    inputs = [arg for s in SESSIONS for arg in ("--input", f"sessions/{s}")]
    none = capsule.cli("dispatch", *inputs, "--skip-done")
    assert none.returncode == 0, none.stderr
    assert "wrote 0 job file(s)" in none.stdout
    assert "6 left out" in none.stdout

    grid = capsule.root / "grid.json"
    grid.write_text(
        json.dumps(
            {
                "distributed_parameters": [
                    {"isi_violations_cutoff": 0.5},
                    {"isi_violations_cutoff": 0.3},
                ]
            }
        )
    )
    some = capsule.cli("dispatch", *inputs, "--parameters", str(grid), "--skip-done")
    assert some.returncode == 0, some.stderr
    assert "wrote 3 job file(s)" in some.stdout and "3 left out" in some.stdout
    new = [j for j in jobs_in(capsule.data).values() if j["asset_name"] == []]
    assert len(new) == 3
    assert {j["distributed_parameters"]["isi_violations_cutoff"] for j in new} == {0.3}

    plan = capsule.run("--plan", "1")
    assert plan.returncode == 0, plan.stderr
    assert "plan for 9 job(s): 3 run, 6 skip" in plan.stdout


def test_skip_done_reads_input_versions_as_a_run_does(capsule: CapsuleCopy) -> None:
    """Under INPUT_IDENTITY=content, --skip-done keys hold the inputs' versions.

    Done jobs are left out; after one session's files change, that session's jobs are
    written again and the others still left out.
    """
    content = {"INPUT_IDENTITY": "content"}
    posted = capsule.run("--dry_run", "0", env=content)
    assert posted.returncode == 0, posted.stderr
    inputs = [arg for s in SESSIONS for arg in ("--input", f"sessions/{s}")]

    none = capsule.cli("dispatch", *inputs, "--skip-done", env=content)
    assert none.returncode == 0, none.stderr
    assert "wrote 0 job file(s)" in none.stdout and "6 left out" in none.stdout

    # Location-only keys are other keys: nothing recorded under them.
    by_location = capsule.cli("dispatch", *inputs, "--skip-done", env={"INPUT_IDENTITY": ""})
    assert by_location.returncode == 0, by_location.stderr
    assert "wrote 6 job file(s)" in by_location.stdout

    changed = next(
        p for p in sorted((capsule.data / "sessions" / SESSIONS[0]).rglob("*")) if p.is_file()
    )
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    some = capsule.cli("dispatch", *inputs, "--skip-done", env=content)
    assert some.returncode == 0, some.stderr
    assert "wrote 2 job file(s)" in some.stdout and "4 left out" in some.stdout

    # The run agrees: the example's 6 job files plus the 6 dispatched ones (same keys,
    # a key's second file skipped as a duplicate); only the changed session's 2 run.
    plan = capsule.run("--plan", "1", env=content)
    assert plan.returncode == 0, plan.stderr
    assert "plan for 12 job(s): 2 run, 10 skip" in plan.stdout
    running = [line for line in plan.stdout.splitlines() if " run " in line]
    assert len(running) == 2 and all(line.startswith(SESSIONS[0]) for line in running)
