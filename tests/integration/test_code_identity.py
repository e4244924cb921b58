"""Code identity that follows the code: commits that change no code run nothing again.

The key holds the digest of the git trees of code/ and environment/ (the project's
code paths), not the commit; the record keeps the commit. Records of key scheme 1,
which keyed the commit, are done when their commit's code tree is today's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from conftest import CapsuleCopy, git

JOB_COUNT = 6


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def summary(capsule: CapsuleCopy) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((capsule.results / "run_summary.json").read_text())
    return result


def add_job(capsule: CapsuleCopy, name: str, cutoff: float) -> None:
    """A new job file: one more parameter value on an existing session."""
    first = sorted(capsule.job_dir.glob("*.json"))[0]
    job = json.loads(first.read_text())
    job["distributed_parameters"] = {"isi_violations_cutoff": cutoff}
    (capsule.job_dir / name).write_text(json.dumps(job, indent=2))


def test_a_committed_job_file_runs_only_the_new_job(capsule: CapsuleCopy) -> None:
    """Post, add a job file and edit notes, commit, post: one job runs, six are skipped."""
    ok(capsule.run("--dry_run", "0"))
    assert (summary(capsule)["ran"], summary(capsule)["skipped"]) == (JOB_COUNT, 0)
    first_keys = {job["key"] for job in summary(capsule)["jobs"]}

    add_job(capsule, "added_session_cutoff-0.30.json", 0.3)
    (capsule.root / "NOTES.md").write_text("added a cutoff\n")
    # Uncommitted job files and notes are not code: posting is not refused.
    ok(capsule.run("--plan", "1"))
    capsule.commit("one more job")
    second = ok(capsule.run("--dry_run", "0"))
    done = summary(capsule)
    assert (done["ran"], done["skipped"], done["failed"]) == (1, JOB_COUNT, 0), second.stderr
    ran = [job for job in done["jobs"] if job["action"] == "run"]
    assert ran[0]["job_file"].endswith("added_session_cutoff-0.30.json")
    assert {job["key"] for job in done["jobs"] if job["action"] == "skip"} == first_keys

    # A change to the analysis's code is a change of every key.
    model = capsule.code / "example_analysis_model.py"
    model.write_text(model.read_text() + "\n# tuned\n")
    capsule.commit("change the analysis")
    ok(capsule.run("--dry_run", "0"))
    assert summary(capsule)["ran"] == JOB_COUNT + 1


def scheme_1_key(record: dict[str, Any]) -> str:
    """The key key scheme 1 gave a record's job, written out here as scheme 1 defined it."""
    code = record["processing"]["data_processes"][0]["code"]
    parameters = dict(code["parameters"])
    files = parameters.pop("file_location", [])
    preimage = {
        "key_scheme": 1,
        "code": {"url": code["url"], "version": code["version"]},
        "input_data": sorted(asset["url"] for asset in code["input_data"]),
        "file_location": sorted(files),
        "parameters": parameters,
    }
    text = json.dumps(preimage, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def as_scheme_1(env: dict[str, str]) -> list[str]:
    """Rewrite the stored records as key scheme 1 wrote them; return their new ids."""
    client: MongoClient[dict[str, Any]] = MongoClient(env["DOCDB_HOST"])
    try:
        records = client[env["DOCDB_DATABASE"]][env["DOCDB_COLLECTION"]]
        ids = []
        for record in list(records.find()):
            records.delete_one({"_id": record["_id"]})
            del record["code_identity"]
            record["_id"] = record["name"] = scheme_1_key(record)
            records.insert_one(record)
            ids.append(record["_id"])
        # Their claims were taken under the old keys: none is under today's.
        client[env["DOCDB_DATABASE"]][env["DOCDB_COLLECTION"] + "_claims"].drop()
        return ids
    finally:
        client.close()


def test_records_of_key_scheme_1_are_done_while_their_commits_code_is_todays(
    capsule: CapsuleCopy, mongo_uri: str, tmp_path: Path
) -> None:
    """Scheme-1 records are done while their commit's code tree is today's.

    Skipped after a commit that leaves code/ alone; run after one that changes it, and
    when their result folder has lost its manifest.
    """
    env = {
        "DOCDB_HOST": mongo_uri,
        "DOCDB_DATABASE": f"analysis_{tmp_path.name[-8:]}",
        "DOCDB_COLLECTION": "scheme_1",
        "ANALYSIS_BUCKET": (tmp_path / "bucket").as_uri(),
    }
    ok(capsule.run("--dry_run", "0", env=env))
    old_ids = as_scheme_1(env)
    assert len(old_ids) == JOB_COUNT

    (capsule.root / "NOTES.md").write_text("not code\n")
    capsule.commit("notes")
    plan_dir = tmp_path / "plan"
    ok(capsule.run("--plan", "1", "--results_directory", str(plan_dir), env=env))
    plan = json.loads((plan_dir / "plan.json").read_text())
    reasons = sorted(entry["reason"] for entry in plan)
    assert [entry["action"] for entry in plan] == ["skip"] * JOB_COUNT, reasons
    assert reasons == sorted(
        f"done under key scheme 1, record {record_id[:12]} (its commit "
        f"{git(capsule.root, 'rev-parse', 'HEAD~1').strip()[:12]} has today's code)"
        for record_id in old_ids
    )

    # One result folder loses its manifest: that job is not done.
    manifest = next((tmp_path / "bucket").rglob("manifest.json"))
    manifest.unlink()
    ok(capsule.run("--plan", "1", "--results_directory", str(plan_dir), env=env))
    plan = json.loads((plan_dir / "plan.json").read_text())
    assert sorted(entry["action"] for entry in plan) == ["run"] + ["skip"] * (JOB_COUNT - 1)

    shutil.copy(capsule.code / "run_capsule.py", capsule.code / "helper_copy.py")
    capsule.commit("new code")
    ok(capsule.run("--plan", "1", "--results_directory", str(plan_dir), env=env))
    plan = json.loads((plan_dir / "plan.json").read_text())
    assert [entry["action"] for entry in plan] == ["run"] * JOB_COUNT
    assert all("code.tree none (a scheme-1 record)" in entry["reason"] for entry in plan), plan
