"""Planning throughput, per-job overhead and executor overhead, side by side.

    python benchmarks/scale.py [--jobs 10000] [--servers]

1. Planning N jobs (load, merge, validate, key, look up), batched lookups vs one
   lookup per job (upstream's way), on the embedded store and, with --servers, on a
   MongoDB wire-protocol server (SecantusDB) that this script starts.
2. The wrapper's own cost per job for an analysis that does nothing (record,
   manifest, publish), posting to the embedded stores.
3. 1,000 trivial jobs on the process pool and on a Dask LocalCluster, 2 workers each.

Prints one table (markdown) on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "code"), str(REPO / "tests")]

from analysis_wrapper.executors import ExecutorOptions  # noqa: E402
from analysis_wrapper.identity import CodeIdentity  # noqa: E402
from analysis_wrapper.jobs import Job  # noqa: E402
from analysis_wrapper.parameters import AnalysisParameters  # noqa: E402
from analysis_wrapper.runner import Analysis, RunContext, execute_run, plan_run  # noqa: E402
from analysis_wrapper.settings import RunOptions  # noqa: E402
from analysis_wrapper.stores.base import Record, RecordStore  # noqa: E402
from analysis_wrapper.stores.local import LocalResultStore  # noqa: E402
from analysis_wrapper.stores.sqlite import SqliteRecordStore  # noqa: E402

CODE = CodeIdentity(url="https://github.com/example/bench", version="0" * 40, commit="0" * 40)


class BenchParameters(AnalysisParameters):
    """Parameters like the example's."""

    threshold: float = 0.5
    window_ms: float = 1.5
    min_count: int = 20


def do_nothing(job: Job, parameters: BenchParameters, results_dir: Path) -> dict[str, Any]:
    """An analysis that does no work, so only the wrapper's cost is measured."""
    return {"n": 1}


class OneByOne:
    """A record store whose batched lookup is one query per key (upstream's way)."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def get_many(self, keys: Iterable[str]) -> dict[str, Record]:
        """Look each key up on its own."""
        found = {}
        for key in keys:
            record = self.store.get(key)
            if record is not None:
                found[key] = record
        return found


def write_jobs(folder: Path, count: int) -> None:
    """Write ``count`` job files in the current upstream shape."""
    (folder / "job_dict").mkdir(parents=True)
    for index in range(count):
        job = {
            "s3_location": [f"s3://bench-bucket/asset_{index}"],
            "asset_name": [f"asset_{index}"],
            "docdb_record_id": [f"record-{index}"],
            "file_location": None,
            "distributed_parameters": {"threshold": (0.1, 0.5)[index % 2]},
            "group_metadata": None,
            "query": None,
            "analysis_code": None,
        }
        (folder / "job_dict" / f"job_{index:06d}.json").write_text(json.dumps(job))
    fixed = {"fixed_parameters": {"analysis_name": "bench", "analysis_tag": "v1"}}
    (folder / "analysis_parameters.json").write_text(json.dumps(fixed))


def context_for(
    inputs: Path, results: Path, records: Any, result_store: Any, *, dry_run: bool, plan: bool
) -> RunContext:
    """A run context without git or command line."""
    return RunContext(
        analysis=Analysis(do_nothing, BenchParameters),
        options=RunOptions(inputs, results, dry_run=dry_run, plan=plan),
        code=CODE,
        record_store=records,
        result_store=result_store,
        fixed_parameters={"analysis_name": "bench", "analysis_tag": "v1"},
        command_line_parameters={},
        experimenters=("bench@example.org",),
    )


def seed_records(store: RecordStore, context: RunContext, fraction: float) -> None:
    """Store small records for a share of the jobs, so lookups find some."""
    planned = plan_run(context)
    for job in planned[: int(len(planned) * fraction)]:
        assert job.key
        store.put({"_id": job.key, "name": job.key, "location": "gs://not-checked/" + job.key})


def time_plan(context: RunContext, rounds: int = 3) -> float:
    """Best of ``rounds`` planning times, in seconds."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        plan_run(context)
        best = min(best, time.perf_counter() - started)
    return best


def planning_rows(work: Path, jobs: int, mongo_uri: str | None) -> list[tuple[str, str, str]]:
    """Planning throughput, batched and one query per job, per store."""
    inputs = work / "plan-inputs"
    write_jobs(inputs, jobs)
    stores: list[tuple[str, RecordStore]] = [
        ("embedded SQLite", SqliteRecordStore(work / "plan.sqlite", "records"))
    ]
    if mongo_uri:
        from analysis_wrapper.stores.mongo import MongoRecordStore

        stores.append(("MongoDB (SecantusDB)", MongoRecordStore(mongo_uri, "bench", "records")))
    rows = []
    results = LocalResultStore(work / "unused-results")
    for name, store in stores:
        batched = context_for(inputs, work / "r", store, results, dry_run=True, plan=True)
        seed_records(store, batched, 0.5)
        seconds = time_plan(batched)
        rows.append((f"plan {jobs} jobs, {name}, batched", f"{jobs / seconds:,.0f} jobs/s", ""))
        single = context_for(inputs, work / "r", OneByOne(store), results, dry_run=True, plan=True)
        one_by_one = time_plan(single, rounds=1)
        rows.append(
            (
                f"plan {jobs} jobs, {name}, one query per job",
                f"{jobs / one_by_one:,.0f} jobs/s",
                f"batched is {one_by_one / seconds:.1f}x faster",
            )
        )
        keys = [job.key for job in plan_run(batched) if job.key]
        started = time.perf_counter()
        found = store.get_many(keys)
        many = time.perf_counter() - started
        started = time.perf_counter()
        found_one_by_one = OneByOne(store).get_many(keys)
        single_lookups = time.perf_counter() - started
        assert found.keys() == found_one_by_one.keys()
        rows.append(
            (
                f"look up {len(keys)} keys, {name}: batched vs one query per key",
                f"{many:.2f} s vs {single_lookups:.2f} s",
                f"batched is {single_lookups / many:.0f}x faster",
            )
        )
        store.close()
    return rows


def overhead_rows(work: Path, jobs: int = 200) -> list[tuple[str, str, str]]:
    """The wrapper's own cost per posted job (record, manifest, publish) on embedded stores."""
    inputs = work / "overhead-inputs"
    write_jobs(inputs, jobs)
    store = SqliteRecordStore(work / "overhead.sqlite", "records")
    context = context_for(
        inputs,
        work / "overhead-results",
        store,
        LocalResultStore(work / "overhead-store"),
        dry_run=False,
        plan=False,
    )
    planning = time_plan(context, rounds=1)
    started = time.perf_counter()
    summary = execute_run(context)
    total = time.perf_counter() - started
    assert summary.failed == 0 and len(summary.jobs) == jobs
    per_job = (total - planning) / jobs * 1000
    store.close()
    return [
        (f"wrapper overhead per job, {jobs} posted no-op jobs, embedded", f"{per_job:.1f} ms", "")
    ]


def executor_rows(work: Path, jobs: int = 1000) -> list[tuple[str, str, str]]:
    """1,000 trivial jobs on the process pool and on a Dask LocalCluster (2 workers)."""
    inputs = work / "executor-inputs"
    write_jobs(inputs, jobs)
    rows = []
    for kind in ("serial", "process", "dask"):
        store = SqliteRecordStore(work / f"{kind}.sqlite", "records", read_only=True)
        context = context_for(
            inputs, work / f"{kind}-results", store, LocalResultStore(work / "x"),
            dry_run=True, plan=False,
        )  # fmt: skip
        planning = time_plan(context, rounds=1)
        options = ExecutorOptions(kind=kind, workers=2)  # type: ignore[arg-type]
        started = time.perf_counter()
        summary = execute_run(context, options)
        total = time.perf_counter() - started
        assert summary.failed == 0, summary.as_json()["jobs"][:3]
        rows.append(
            (
                f"{jobs} trivial jobs (dry run), {kind}, 2 workers"
                if kind != "serial"
                else f"{jobs} trivial jobs (dry run), serial",
                f"{(total - planning) / jobs * 1000:.1f} ms/job",
                f"{total:.1f} s in all",
            )
        )
    return rows


def main() -> None:
    """Run every measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--servers", action="store_true", help="also measure on SecantusDB")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aw-bench-"))
    server = None
    try:
        mongo_uri = None
        if args.servers:
            from servers import SERVERS_BIN, ServerProcess, _mongo_ready

            config = work / "secantusd.toml"
            config.write_text("")
            server = ServerProcess(
                "secantusd-py",
                lambda port: [str(SERVERS_BIN / "secantusd-py"), "--config", str(config),
                              "--host", "127.0.0.1", "--port", str(port),
                              "--storage-path", str(work / "mongo"), "--log-level", "WARNING"],
                _mongo_ready,
                work / "secantus.log",
            )  # fmt: skip
            server.start()
            mongo_uri = f"mongodb://127.0.0.1:{server.port}/?directConnection=true"
        rows = planning_rows(work, args.jobs, mongo_uri)
        rows += overhead_rows(work)
        rows += executor_rows(work)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("| measurement | result | note |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
