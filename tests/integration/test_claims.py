"""Every job runs once with many workers; a crash loses nothing; a stalled worker is fenced.

Real runner processes over one set of jobs, on the embedded stores (one SQLite file,
one results folder) and on the servers (SecantusDB for records and claims, moto's S3
server for results). The test capsule (claims_capsule/run_capsule.py) logs each
analysis that starts and tags every file it writes with its attempt's random token,
so a result folder mixing two attempts, or an analysis run twice, shows.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest
from pymongo import MongoClient

from conftest import CapsuleCopy, make_capsule_copy

TEST_CAPSULE = Path(__file__).parent / "claims_capsule" / "run_capsule.py"
TABLE = "analysis_results"


def claims_capsule(root: Path, jobs: int) -> CapsuleCopy:
    """The example capsule with the counting analysis and ``jobs`` job files."""
    copy = make_capsule_copy(root)
    shutil.copy(TEST_CAPSULE, copy.code / "run_capsule.py")
    (copy.data / "analysis_parameters.json").unlink(missing_ok=True)
    shutil.rmtree(copy.job_dir)
    copy.job_dir.mkdir()
    for index in range(jobs):
        job = {
            "s3_location": [f"s3://example-assets/asset-{index:03d}"],
            "distributed_parameters": {"index": index},
        }
        (copy.job_dir / f"job_{index:03d}.json").write_text(json.dumps(job), encoding="utf-8")
    copy.commit("claims test capsule")
    return copy


@pytest.fixture
def servers_env(mongo_uri: str, s3_endpoint: str, aws_test_env: dict[str, str]) -> dict[str, str]:
    """Stores on the servers: a fresh database and a fresh bucket."""
    bucket = f"claims-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    return {
        **aws_test_env,
        "DOCDB_HOST": mongo_uri,
        "DOCDB_DATABASE": f"claims_{uuid.uuid4().hex[:8]}",
        "DOCDB_COLLECTION": TABLE,
        "ANALYSIS_BUCKET": f"s3://{bucket}/results",
    }


@pytest.fixture(params=["embedded", "servers"])
def stores_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Run once on the embedded stores and once on the servers."""
    if request.param == "embedded":
        return {}
    env: dict[str, str] = request.getfixturevalue("servers_env")
    return env


class Stores:
    """Reads what the runners left, straight from SQLite/Mongo and the folder/bucket."""

    def __init__(self, capsule: CapsuleCopy, env: dict[str, str]) -> None:
        self.capsule = capsule
        self.env = env

    def records(self) -> list[dict[str, Any]]:
        if "DOCDB_HOST" in self.env:
            client: MongoClient[dict[str, Any]] = MongoClient(self.env["DOCDB_HOST"])
            try:
                return list(client[self.env["DOCDB_DATABASE"]][TABLE].find())
            finally:
                client.close()
        path = self.capsule.store / "records.sqlite"
        with sqlite3.connect(path) as connection:
            rows = connection.execute(f'SELECT document FROM "{TABLE}"').fetchall()
        return [json.loads(document) for (document,) in rows]

    def claims(self) -> list[dict[str, Any]]:
        if "DOCDB_HOST" in self.env:
            client: MongoClient[dict[str, Any]] = MongoClient(self.env["DOCDB_HOST"])
            try:
                return list(client[self.env["DOCDB_DATABASE"]][f"{TABLE}_claims"].find())
            finally:
                client.close()
        path = self.capsule.store / "records.sqlite"
        with sqlite3.connect(path) as connection:
            rows = connection.execute(f'SELECT document FROM "{TABLE}__claims"').fetchall()
        return [json.loads(document) for (document,) in rows]

    def files(self) -> dict[str, bytes]:
        """Every file in the results store, by path relative to the store's root."""
        if "ANALYSIS_BUCKET" in self.env:
            bucket, _, prefix = self.env["ANALYSIS_BUCKET"].removeprefix("s3://").partition("/")
            client = boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"])
            found: dict[str, bytes] = {}
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix + "/"
            ):
                for item in page.get("Contents", []):
                    body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                    found[item["Key"].removeprefix(prefix + "/")] = body
            return found
        root = self.capsule.store / "results"
        if not root.exists():
            return {}
        return {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in root.rglob("*")
            if path.is_file()
        }

    def root_url(self) -> str:
        if "ANALYSIS_BUCKET" in self.env:
            return self.env["ANALYSIS_BUCKET"]
        return (self.capsule.store / "results").resolve().as_uri()


def relative_folder(location: str, root_url: str) -> str:
    """A record's location as a folder path relative to the store's root."""
    if location.startswith("file://"):
        location = Path(unquote(urlsplit(location).path)).as_uri()
    assert location.startswith(root_url + "/"), (location, root_url)
    return location.removeprefix(root_url + "/").rstrip("/")


def check_results(stores: Stores, jobs: int) -> list[dict[str, Any]]:
    """Each job has one record; its folder holds exactly its manifest's files, one attempt's."""
    records = stores.records()
    indexes = Counter(
        r["processing"]["data_processes"][0]["code"]["parameters"]["index"] for r in records
    )
    assert indexes == Counter(range(jobs)), "each job exactly one record"
    files = stores.files()
    by_folder: dict[str, dict[str, bytes]] = {}
    for path, data in files.items():
        if "/" not in path:
            continue
        key, attempt, *rest = path.split("/")
        if not rest or key.startswith("."):
            continue  # a staging leftover of a killed publish: never a record's folder
        by_folder.setdefault(f"{key}/{attempt}", {})["/".join(rest)] = data
    root = stores.root_url()
    for record in records:
        folder = relative_folder(record["location"], root)
        assert folder.split("/")[0] == record["_id"]
        tree = dict(by_folder.get(folder, {}))
        assert "manifest.json" in tree, f"record {record['_id'][:12]} points to no manifest"
        manifest = json.loads(tree.pop("manifest.json"))
        listed = {f["path"]: (f["size"], f["sha256"]) for f in manifest["files"]}
        stored = {p: (len(b), hashlib.sha256(b).hexdigest()) for p, b in tree.items()}
        assert listed == stored, f"{folder}: manifest and files differ"
        token = record["processing"]["data_processes"][0]["output_parameters"]["token"]
        parts = [b for p, b in tree.items() if p.rsplit("/", 1)[-1].startswith("part-")]
        assert parts and {b.split(b"\n", 1)[0].decode() for b in parts} == {token}
    for folder, tree in by_folder.items():  # every attempt, recorded or not: never mixed
        tokens = {b.split(b"\n", 1)[0] for p, b in tree.items() if "part-" in p}
        assert len(tokens) <= 1, f"{folder} holds files of {len(tokens)} attempts"
    return records


def start_runner(
    capsule: CapsuleCopy, env: dict[str, str], results: Path, *flags: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-u",
            str(capsule.code / "run_capsule.py"),
            "--dry_run",
            "0",
            "--results_directory",
            str(results),
            *flags,
        ],
        cwd=capsule.code,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def logged(log: Path) -> list[tuple[int, int, str]]:
    if not log.exists():
        return []
    lines = log.read_text(encoding="utf-8").split()
    return [
        (int(i), int(p), t) for i, p, t in zip(lines[::3], lines[1::3], lines[2::3], strict=True)
    ]


# --- many workers at once ----------------------------------------------------------


def test_four_runners_over_the_same_jobs_run_each_once(
    tmp_path: Path, stores_env: dict[str, str]
) -> None:
    """4 processes, 40 jobs: 40 analyses, 40 records, no folder mixes two attempts."""
    jobs = 40
    capsule = claims_capsule(tmp_path / "capsule", jobs)
    log = tmp_path / "analyses.log"
    env = {**stores_env, "ANALYSIS_LOG": str(log), "ANALYSIS_SECONDS": "0.05"}
    runners = [
        start_runner(capsule, env, tmp_path / f"results-{n}", "--lease_seconds", "30")
        for n in range(4)
    ]
    outcomes = [finish(runner) for runner in runners]
    for code, output in outcomes:
        assert code == 0, output
    started = Counter(index for index, _, _ in logged(log))
    assert started == Counter(range(jobs)), "each analysis ran exactly once"
    summaries = [
        json.loads((tmp_path / f"results-{n}" / "run_summary.json").read_text()) for n in range(4)
    ]
    assert sum(s["ran"] for s in summaries) == jobs
    assert all(s["failed"] == 0 for s in summaries)
    assert sum(s["ran"] + s["skipped"] for s in summaries) == 4 * jobs
    assert len({pid for _, pid, _ in logged(log)}) > 1, "the work was shared"
    check_results(Stores(capsule, stores_env), jobs)
    assert {c["state"] for c in Stores(capsule, stores_env).claims()} == {"done"}


# --- kill -9 at chosen points ------------------------------------------------------

CRASH_POINTS = ("analysis", "upload", "record")


def killed_state(stores: Stores, job_file: str) -> str:
    """Where the killed job's result stood: which of its files reached the store."""
    (claim,) = [c for c in stores.claims() if c["label"] == job_file]
    assert claim["state"] == "running", "a killed worker's claim is still held"
    paths = [p for p in stores.files() if p.startswith(claim["_id"] + "/")]
    manifests = [p for p in paths if p.endswith("/manifest.json")]
    if manifests:
        return "manifest published"
    return "some files published" if paths else "nothing published"


EXPECTED_STATE = {
    "analysis": {"nothing published"},
    "upload": {"nothing published", "some files published", "manifest published"},
    "record": {"manifest published"},
}


def crash_trials(tmp_path: Path, env: dict[str, str], trials: int, seed: int) -> Counter[str]:
    """Kill a runner at a chosen point, re-run, check; one fresh capsule per trial.

    Returns how often each state was seen right after a kill.
    """
    jobs = 4
    rng = random.Random(seed)
    seen: Counter[str] = Counter()
    for trial in range(trials):
        capsule = claims_capsule(tmp_path / f"capsule-{trial}", jobs)
        if env:  # the servers: a database and a prefix of the bucket per trial
            env = {
                **env,
                "DOCDB_DATABASE": f"claims_{uuid.uuid4().hex[:8]}",
                "ANALYSIS_BUCKET": env["ANALYSIS_BUCKET"].rsplit("/", 1)[0] + f"/trial-{trial}",
            }
        point = CRASH_POINTS[trial % len(CRASH_POINTS)]
        index = rng.randrange(jobs)
        log = tmp_path / f"analyses-{trial}.log"
        run_env = {
            **env,
            "ANALYSIS_LOG": str(log),
            "ANALYSIS_FILES": "6",
            "ANALYSIS_FILE_BYTES": str(rng.choice([2_000, 300_000, 2_000_000])),
        }
        crash_env = {**run_env, "CRASH_AT": f"{point}:{index}", "CRASH_DELAY": "0.08"}
        code, output = finish(start_runner(capsule, crash_env, tmp_path / f"r-{trial}-a"))
        what = f"trial {trial} (kill at {point} of job {index})"
        assert code == -signal.SIGKILL, f"{what}: the runner was not killed\n{output}"
        stores = Stores(capsule, env)
        recorded = {
            r["processing"]["data_processes"][0]["code"]["parameters"]["index"]
            for r in stores.records()
        }
        assert recorded == set(range(index)), f"{what}: jobs before it recorded, none after"
        state = killed_state(stores, f"job_{index:03d}.json")
        assert state in EXPECTED_STATE[point], f"{what}: {state}"
        seen[f"{point}: {state}"] += 1
        code, output = finish(start_runner(capsule, run_env, tmp_path / f"r-{trial}-b"))
        assert code == 0, f"{what}: the re-run failed:\n{output}"
        assert "process no longer exists" in output, f"{what}: the dead claim was not taken"
        check_results(stores, jobs)
        started = Counter(i for i, _, _ in logged(log))
        assert started == Counter({**dict.fromkeys(range(jobs), 1), index: 2}), what
    return seen


def test_kill_minus_nine_then_rerun_completes_every_job_on_the_servers(
    tmp_path: Path, servers_env: dict[str, str]
) -> None:
    """9 kills (3 at each point) on MongoDB + S3; each re-run leaves one good result per job."""
    seen = crash_trials(tmp_path, servers_env, 9, seed=4)
    assert seen["analysis: nothing published"] == 3
    assert seen["upload: some files published"] == 3, seen  # S3 acknowledged 2 of 6 files
    assert seen["record: manifest published"] == 3


def test_kill_minus_nine_then_rerun_completes_every_job_embedded(tmp_path: Path) -> None:
    """6 kills (2 at each point) on the embedded stores, with the same checks."""
    seen = crash_trials(tmp_path, {}, 6, seed=9)
    assert seen["analysis: nothing published"] == 2
    assert seen["record: manifest published"] == 2
    assert sum(n for state, n in seen.items() if state.startswith("upload")) == 2


# --- a stalled worker --------------------------------------------------------------


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_stalled_worker_cannot_publish_after_takeover(
    tmp_path: Path, stores_env: dict[str, str]
) -> None:
    """SIGSTOP a worker mid-analysis past its lease; another takes over; SIGCONT: fenced."""
    capsule = claims_capsule(tmp_path / "capsule", 1)
    log = tmp_path / "analyses.log"
    started = tmp_path / "started"
    env = {
        **stores_env,
        "ANALYSIS_LOG": str(log),
        "ANALYSIS_STARTED": str(started),
        "ANALYSIS_SECONDS": "1.0",
    }
    stalled = start_runner(capsule, env, tmp_path / "results-a", "--lease_seconds", "2")
    wait_for(started)
    os.kill(stalled.pid, signal.SIGSTOP)
    try:
        time.sleep(2.5)  # past the lease: no heartbeat can renew it while stopped
        started.unlink()
        code, output = finish(
            start_runner(
                capsule,
                {**env, "ANALYSIS_SECONDS": "0"},
                tmp_path / "results-b",
                "--lease_seconds",
                "2",
            )
        )
        assert code == 0, output
        assert "taking over from" in output
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    code, output = finish(stalled)
    assert code == 0, output
    assert "taken over" in output
    summary = json.loads((tmp_path / "results-a" / "run_summary.json").read_text())
    assert summary["ran"] == 0 and summary["jobs"][0]["action"] == "in-progress"
    runs = logged(log)
    assert [index for index, _, _ in runs] == [0, 0]  # two analyses started, one published
    stores = Stores(capsule, stores_env)
    (record,) = check_results(stores, 1)
    winner_token = record["processing"]["data_processes"][0]["output_parameters"]["token"]
    stalled_token = next(token for _, pid, token in runs if pid == stalled.pid)
    assert winner_token != stalled_token
    published = b"".join(stores.files().values())
    assert stalled_token.encode() not in published, "the stalled attempt published files"


def process_state(pid: int) -> str:
    """The one-letter state of a process (``T`` once it is stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def token_of(record: dict[str, Any]) -> str:
    token: str = record["processing"]["data_processes"][0]["output_parameters"]["token"]
    return token


def test_a_stalled_writer_cannot_replace_the_newer_record(
    tmp_path: Path, stores_env: dict[str, str]
) -> None:
    """A worker stalls between its last fence and its record; the newer record survives.

    Both runs force the job (the put replaces a record). The second takes the stalled
    worker's claim over and records; the stalled one wakes and writes: refused.
    """
    capsule = claims_capsule(tmp_path / "capsule", 1)
    log = tmp_path / "analyses.log"
    env = {**stores_env, "ANALYSIS_LOG": str(log)}
    code, output = finish(start_runner(capsule, env, tmp_path / "results-0"))
    assert code == 0, output  # the record that both forced runs replace
    lease = ("--force", "1", "--lease_seconds", "2")
    stalled = start_runner(capsule, {**env, "STALL_AT": "record:0"}, tmp_path / "results-a", *lease)
    deadline = time.monotonic() + 120
    while process_state(stalled.pid) != "T":  # stopped itself, record in hand
        assert stalled.poll() is None, stalled.communicate()[0]
        assert time.monotonic() < deadline, "the worker never reached its record write"
        time.sleep(0.05)
    try:
        time.sleep(2.5)  # past its lease: nothing renews it while stopped
        code, output = finish(start_runner(capsule, env, tmp_path / "results-b", *lease))
        assert code == 0, output
        assert "taking over from" in output
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    code, output = finish(stalled)
    assert code == 0, output
    assert "left for gc" in output
    runs = logged(log)
    assert [index for index, _, _ in runs] == [0, 0, 0]
    stalled_token = next(token for _, pid, token in runs if pid == stalled.pid)
    newest_token = runs[-1][2] if runs[-1][1] != stalled.pid else runs[-2][2]
    (record,) = Stores(capsule, stores_env).records()
    assert token_of(record) != stalled_token, "the stalled writer replaced the newer record"
    assert token_of(record) == newest_token


def test_a_hung_renewal_stops_its_job_before_publishing(
    tmp_path: Path, stores_env: dict[str, str]
) -> None:
    """Renewals of one job hang past its lease: it publishes nothing, reported not done.

    The run exits 1 and lets the claim go; the other job is unaffected; the next run
    does the job.
    """
    capsule = claims_capsule(tmp_path / "capsule", 2)
    log = tmp_path / "analyses.log"
    env = {**stores_env, "ANALYSIS_LOG": str(log), "ANALYSIS_SECONDS": "4"}
    hang = {**env, "HANG_AT": "renew:0:8"}
    code, output = finish(
        start_runner(capsule, hang, tmp_path / "results-a", "--lease_seconds", "3")
    )
    assert code == 1, output
    summary = json.loads((tmp_path / "results-a" / "run_summary.json").read_text())
    by_job = {Path(job["job_file"]).name: job for job in summary["jobs"]}
    assert by_job["job_000.json"]["status"] == "failed"
    assert "not done" in by_job["job_000.json"]["error"]
    assert "lease ran out" in by_job["job_000.json"]["error"]
    assert by_job["job_001.json"]["status"] == "succeeded"
    stores = Stores(capsule, stores_env)
    assert [r["processing"]["data_processes"][0]["code"]["parameters"]["index"]
            for r in stores.records()] == [1]  # fmt: skip
    first_token = next(token for index, _, token in logged(log) if index == 0)
    assert first_token.encode() not in b"".join(stores.files().values()), "published anyway"
    code, output = finish(start_runner(capsule, {**env, "ANALYSIS_SECONDS": "0"},
                                       tmp_path / "results-b", "--lease_seconds", "3"))  # fmt: skip
    assert code == 0, output
    check_results(stores, 2)


def test_a_job_rescheduled_from_a_lost_dask_worker_runs_after_its_lease(
    tmp_path: Path, dask_worker_env: dict[str, str]
) -> None:
    """Kill -9 the Dask worker running a job: rescheduled, it runs after the lease.

    The other worker cannot see the dead process (another pid namespace, as another
    host would), so only the lease tells it the claim is dead. The run ends with the
    job done, not silently "in progress".
    """
    from servers import (
        ServerProcess,
        isolated_dask_command,
        isolated_dask_scheduler,
        wait_for_workers,
    )

    capsule = claims_capsule(tmp_path / "capsule", 1)
    log = tmp_path / "analyses.log"
    started = tmp_path / "started"
    scheduler = isolated_dask_scheduler(tmp_path, dask_worker_env)
    scheduler.start()
    address = f"tcp://127.0.0.1:{scheduler.port}"

    def worker(name: str, count: int, **env: str) -> ServerProcess:
        # A pid namespace of its own: its processes are invisible to the other worker's.
        process = ServerProcess(
            f"dask worker {name}",
            lambda _port: [
                shutil.which("unshare") or "unshare (util-linux)",
                "--pid",
                "--fork",
                "--mount-proc",
                *isolated_dask_command(
                    "worker",
                    address,
                    "--no-nanny",
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--name",
                    name,
                    "--local-directory",
                    str(tmp_path / name),
                ),
            ],
            lambda _port: wait_for_workers(scheduler.port, count),
            tmp_path / f"{name}.log",
            cwd=tmp_path,
            env={**dask_worker_env, "ANALYSIS_LOG": str(log), **env},
        )
        process.start()
        return process

    first = second = None
    try:
        first = worker("first", 1, ANALYSIS_SECONDS="120", ANALYSIS_STARTED=str(started))
        runner = start_runner(
            capsule, {}, tmp_path / "results", "--executor", "dask",
            "--scheduler_address", address, "--lease_seconds", "4",
        )  # fmt: skip
        wait_for(started)
        second = worker("second", 2, ANALYSIS_SECONDS="0")
        assert first.process is not None
        os.killpg(first.process.pid, signal.SIGKILL)  # the worker dies mid-analysis
        code, output = finish(runner)
        assert code == 0, output
        summary = json.loads((tmp_path / "results" / "run_summary.json").read_text())
        assert (summary["ran"], summary["skipped"], summary["failed"]) == (1, 0, 0), output
        assert "no longer runs it here" in (tmp_path / "second.log").read_text()
        runs = logged(log)
        assert [index for index, _, _ in runs] == [0, 0]  # the lost try, then the real one
        (record,) = check_results(Stores(capsule, {}), 1)
        assert token_of(record) == runs[-1][2]
    finally:
        for process in (second, first):
            if process is not None:
                process.stop()
        scheduler.stop()
