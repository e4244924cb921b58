"""`analysis-wrapper dispatch`: job files from a CSV or --input, crossed with a grid."""

from __future__ import annotations

import json
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
