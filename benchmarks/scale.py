"""Planning throughput, per-job overhead and executor overhead, side by side.

    python benchmarks/scale.py [--jobs 10000] [--servers] [--only SECTION]
                               [--s3-server moto|seaweedfs|both]

1. Planning N jobs (load, merge, validate, key, look up, decide), batched lookups vs
   one lookup per job (upstream's way), on the embedded store and, with --servers, on
   a MongoDB wire-protocol server (SecantusDB) that this script starts; there also the
   batched query shapes compared (``$in`` batch sizes, ``$or``, ``_id`` ranges, an
   aggregation).
2. The wrapper's own cost per job for an analysis that does nothing (claim, record,
   manifest, publish), posting to the embedded stores and, with --servers, to
   SecantusDB and moto's S3 server.
3. 1,000 trivial jobs on the process pool and on a Dask LocalCluster, 2 workers each.
4. With --servers: planning N jobs that all have records, their manifests on an S3
   server (moto's and SeaweedFS, side by side; --s3-server picks one), the manifests
   checked in a batch vs one HEAD per job.

Prints one table (markdown) on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "code"), str(REPO / "tests")]

from analysis_wrapper.config.settings import RunOptions  # noqa: E402
from analysis_wrapper.identity.key import CodeIdentity  # noqa: E402
from analysis_wrapper.job.job_file import Job  # noqa: E402
from analysis_wrapper.job.parameters import AnalysisParameters  # noqa: E402
from analysis_wrapper.run.executors import ExecutorOptions  # noqa: E402
from analysis_wrapper.run.runner import Analysis, RunContext, execute_run, plan_run  # noqa: E402
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


def write_jobs(folder: Path, count: int, first: int = 0) -> None:
    """Write ``count`` job files in the current upstream shape, numbered from ``first``."""
    (folder / "job_dict").mkdir(parents=True)
    for index in range(first, first + count):
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
    """Store small records for a share of the jobs, so lookups find some.

    Each record's location is a folder of the run's results store that holds a
    ``manifest.json``, as after a real run: planning checks each one (one ``stat``).
    """
    planned = plan_run(context)
    results = context.result_store
    assert isinstance(results, LocalResultStore)
    for job in planned[: int(len(planned) * fraction)]:
        assert job.key
        folder = results.root / job.key / "seeded"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").write_text("{}")
        location = results.location(job.key, "seeded")
        store.put({"_id": job.key, "name": job.key, "location": location})


def time_plan(context: RunContext, rounds: int = 3) -> float:
    """Best of ``rounds`` planning times, in seconds: until the plan is there.

    Freeing a plan's objects is left out: a run frees them when it ends.
    """
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        planned = plan_run(context)
        best = min(best, time.perf_counter() - started)
        del planned
    return best


def planning_rows(work: Path, jobs: int, mongo_uri: str | None) -> list[tuple[str, str, str]]:
    """Planning throughput, batched and one query per job, per store."""
    inputs = work / "plan-inputs"
    write_jobs(inputs, jobs)
    stores: list[tuple[str, RecordStore]] = [
        ("embedded SQLite", SqliteRecordStore(work / "plan.sqlite", "records"))
    ]
    if mongo_uri:
        from analysis_wrapper.stores.mongo.store import MongoRecordStore

        stores.append(("MongoDB (SecantusDB)", MongoRecordStore(mongo_uri, "bench", "records")))
    rows = []
    results = LocalResultStore(work / "plan-results")
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
                f"batched is {single_lookups / many:.1f}x faster",
            )
        )
        if name.startswith("MongoDB"):
            rows += lookup_shape_rows(store, keys)
            assert mongo_uri is not None
            rows += remote_lookup_rows(mongo_uri, keys)
        store.close()
    return rows


def remote_lookup_rows(mongo_uri: str, keys: list[str]) -> list[tuple[str, str, str]]:
    """Batched vs one query per key, with SecantusDB behind a link that adds latency.

    On loopback a round trip costs next to nothing; a DocumentDB cluster in another
    availability zone is about 1 ms away, and one reached from a laptop over a VPN
    tens of ms. :class:`LatencyProxy` delays each direction (asyncio's timer rounds a
    wait up to the next millisecond, so the round trip each query pays is measured and
    shown, not assumed). One query per key is timed on 300 keys and scaled to all of
    them; batched lookups are timed on all.
    """
    from urllib.parse import urlsplit

    from latency_proxy import LatencyProxy

    from analysis_wrapper.stores.mongo.store import MongoRecordStore

    target = urlsplit(mongo_uri)
    assert target.hostname and target.port
    rows = []
    for one_way_s in (0.0005, 0.005):
        with LatencyProxy((target.hostname, target.port), one_way_s) as proxy:
            store = MongoRecordStore(
                mongo_uri.replace(f":{target.port}/", f":{proxy.port}/"), "bench", "records"
            )
            sample = keys[:300]
            OneByOne(store).get_many(sample[:5])  # connect, and warm the pool
            started = time.perf_counter()
            OneByOne(store).get_many(sample)
            per_key_s = (time.perf_counter() - started) / len(sample)
            started = time.perf_counter()
            store.get_many(keys)
            batched_s = time.perf_counter() - started
            store.close()
        one_by_one_s = per_key_s * len(keys)
        rows.append(
            (
                f"look up {len(keys)} keys, SecantusDB through a link with added latency "
                f"(a one-key query takes {per_key_s * 1000:.1f} ms): batched vs one query per key",
                f"{batched_s:.2f} s vs {one_by_one_s:.1f} s",
                f"batched is {one_by_one_s / batched_s:.1f}x faster",
            )
        )
    return rows


def lookup_shape_rows(store: Any, keys: list[str]) -> list[tuple[str, str, str]]:
    """Batched query shapes a MongoDB-compatible server could answer, per key looked up.

    On 1,000 of the keys in a random order, as a plan asks (200 for the shapes that
    scan the collection on every query); each must find what ``get_many`` finds.
    """
    collection = store.collection_of()
    sample = random.Random(7).sample(keys, min(len(keys), 1000))
    present = set(store.get_many(sample))
    hide = {"_store": 0}

    def per_key(batch: list[str]) -> list[Any]:
        return [doc for key in batch if (doc := collection.find_one({"_id": key}, hide))]

    def in_list(batch: list[str]) -> list[Any]:
        return list(collection.find({"_id": {"$in": batch}}, hide))

    def or_of_ids(batch: list[str]) -> list[Any]:
        return list(collection.find({"$or": [{"_id": key} for key in batch]}, hide))

    def id_range(batch: list[str]) -> list[Any]:
        found = collection.find({"_id": {"$gte": batch[0], "$lte": batch[-1]}}, hide)
        asked = set(batch)
        return [doc for doc in found if doc["_id"] in asked]

    def aggregate(batch: list[str]) -> list[Any]:
        stages = [{"$match": {"_id": {"$in": batch}}}, {"$project": hide}]
        return list(collection.aggregate(stages))

    shapes: list[tuple[str, Any, int, int]] = [  # name, shape, batch, keys looked up
        ("one find_one per key", per_key, 1, len(sample)),
        ("_id $in, 50 keys per query (the store's)", in_list, 50, len(sample)),
        ("_id $in, 500 keys per query (before)", in_list, 500, len(sample)),
        (f"_id $in, all {len(sample)} keys in one query", in_list, len(sample), len(sample)),
        ("aggregate $match _id $in, 50 per query", aggregate, 50, len(sample)),
        ("$or of _id equalities, 50 per query", or_of_ids, 50, 200),
        ("_id range over 50 sorted keys, then filtered", id_range, 50, 200),
    ]
    timings = []
    for name, shape, size, count in shapes:
        # A range covers consecutive keys: the wanted keys are sorted, then batched.
        keys_here = sorted(sample[:count]) if shape is id_range else sample[:count]
        started = time.perf_counter()
        found = {
            doc["_id"]
            for start in range(0, count, size)
            for doc in shape(keys_here[start : start + size])
        }
        timings.append((name, count, (time.perf_counter() - started) / count * 1000))
        assert found == set(keys_here) & present, name
    per_key_ms = timings[0][2]
    return [
        (
            f"look up {count} keys, SecantusDB: {name}",
            f"{ms:.3f} ms/key",
            "" if index == 0 else f"{per_key_ms / ms:.1f}x as fast as one query per key",
        )
        for index, (name, count, ms) in enumerate(timings)
    ]


def overhead_rows(
    work: Path, jobs: int = 200, mongo_uri: str | None = None, bucket: str | None = None
) -> list[tuple[str, str, str]]:
    """The wrapper's own cost per posted job (claim, record, manifest, publish).

    On the embedded stores (SQLite, a local folder) and, when given, on MongoDB
    (SecantusDB) with S3 (moto's server).
    """
    inputs = work / "overhead-inputs"
    write_jobs(inputs, jobs)
    setups: list[tuple[str, RecordStore, Any]] = [
        (
            "embedded (SQLite, local folder)",
            SqliteRecordStore(work / "overhead.sqlite", "records"),
            LocalResultStore(work / "overhead-store"),
        )
    ]
    if mongo_uri and bucket:
        from analysis_wrapper.stores.mongo.store import MongoRecordStore
        from analysis_wrapper.stores.s3.store import S3ResultStore

        setups.append(
            (
                "MongoDB (SecantusDB) + S3 (moto)",
                MongoRecordStore(mongo_uri, "bench", "overhead"),
                S3ResultStore(bucket, "overhead"),
            )
        )
    warm_up = work / "overhead-warm-up"
    write_jobs(warm_up, 5, first=jobs)  # other inputs, so other keys
    rows = []
    for name, store, results in setups:
        # Untimed: the one-time imports (aind-data-schema for the record, about 1 s;
        # benchmarks/cold_start.py times those), clients, tables and indexes.
        execute_run(
            context_for(
                warm_up, work / f"warm-up-{len(rows)}", store, results, dry_run=False, plan=False
            )
        )
        context = context_for(
            inputs, work / f"overhead-results-{len(rows)}", store, results,
            dry_run=False, plan=False,
        )  # fmt: skip
        planning = time_plan(context, rounds=1)
        started = time.perf_counter()
        summary = execute_run(context)
        total = time.perf_counter() - started
        assert summary.failed == 0 and len(summary.jobs) == jobs, summary.as_json()["jobs"][:3]
        per_job = (total - planning) / jobs * 1000
        store.close()
        rows.append(
            (f"wrapper overhead per job, {jobs} posted no-op jobs, {name}", f"{per_job:.1f} ms", "")
        )
    return rows


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


MANIFEST_FOLDER = ("manifest.json", "metadata.nd.json", "key.json", "units.csv")
"""The objects of each seeded result folder, as a real publish leaves them."""


class ManifestsTrusted:
    """A result store whose batched manifest check answers at once: the plan's own cost."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def has_manifests(self, locations: Iterable[str]) -> dict[str, bool | None]:
        """Every manifest is there, without asking."""
        return dict.fromkeys(locations, True)


PER_KEY_SAMPLE = 1000
"""Sequential has_manifest calls timed for the per-key path (10,000 would take a minute)."""

S3_SERVERS = {"moto": "moto", "seaweedfs": "SeaweedFS"}
"""The S3 servers the manifests section can run on, and their names in the table."""

MANIFEST_BUCKET, MANIFEST_PREFIX = "bench-manifests", "analysis/v1"
MANIFEST_ATTEMPT = "20261126T010203Z-3f9a2c"

TRAPS = 20
"""Jobs given sibling folders whose names S3 and a tree sort apart (``<key>-0``, ``<key>.1``)."""


def manifest_rows(work: Path, jobs: int, servers: list[str]) -> list[tuple[str, str, str]]:
    """Plan ``jobs`` recorded jobs whose manifests are on S3: batched vs one HEAD per job.

    Each server starts with every job's folder already in it (four objects each: moto's
    put into its memory by ``seeded_moto.py`` before it serves, SeaweedFS's through its
    S3 API by ``seaweedfs.seed``). The batched plan is timed (best of 2), and the
    manifest checks alone (best of 2) with the CPU time the server and this process
    spent on them; the per-key path is a sample of sequential ``has_manifest`` calls,
    extrapolated to a plan: the same plan with no manifest checked (timed too), plus
    one HEAD per job. Then a check: ``has_manifests`` answers as ``has_manifest`` does,
    one by one, on a sample and on folders named to sort differently in a tree.
    """
    from servers import TEST_AWS_ENV

    for name, value in TEST_AWS_ENV.items():
        os.environ.setdefault(name, value)  # moto's test credentials, when --servers did not

    inputs = work / "manifest-inputs"
    write_jobs(inputs, jobs)
    records = SqliteRecordStore(work / "manifests.sqlite", "records")
    unused = LocalResultStore(work / "manifest-unused")
    prepared = context_for(inputs, work / "r", records, unused, dry_run=True, plan=True)
    keys = [job.key for job in plan_run(prepared) if job.key]
    folders = [f"{MANIFEST_PREFIX}/{key}/{MANIFEST_ATTEMPT}" for key in keys]
    for key, folder in zip(keys, folders, strict=True):
        records.put({"_id": key, "name": key, "location": f"s3://{MANIFEST_BUCKET}/{folder}"})
    objects = [f"{folder}/{name}" for folder in folders for name in MANIFEST_FOLDER]
    traps: list[str] = []  # pairs: a folder with its manifest, one with key.json only
    for n, key in enumerate(random.Random(7).sample(keys, min(TRAPS, len(keys)))):
        names = [f"{key}-{n}", f"{key}.{n}"][:: 1 if n % 2 else -1]
        traps += [f"{MANIFEST_PREFIX}/{name}/{MANIFEST_ATTEMPT}" for name in names]
        objects += [f"{traps[-2]}/{name}" for name in MANIFEST_FOLDER]
        objects += [f"{traps[-1]}/key.json"]
    rows: list[tuple[str, str, str]] = []
    try:
        for server in servers:
            rows += _manifest_rows_on(server, work, inputs, records, keys, objects, traps)
    finally:
        records.close()
    return rows


def _manifest_rows_on(
    kind: str,
    work: Path,
    inputs: Path,
    records: SqliteRecordStore,
    keys: list[str],
    objects: list[str],
    traps: list[str],
) -> list[tuple[str, str, str]]:
    """The manifests section's rows on one S3 server (``kind``: moto or seaweedfs)."""
    from analysis_wrapper.stores.s3.store import S3ResultStore
    from servers import SERVERS_BIN, ServerProcess, moto_ready

    jobs, label, region = len(keys), S3_SERVERS[kind], os.environ["AWS_DEFAULT_REGION"]
    load_before = os.getloadavg()[0]
    seeding = time.perf_counter()
    if kind == "moto":
        listed = work / "manifest-objects.txt"
        listed.write_text("".join(f"{name}\n" for name in objects), encoding="utf-8")
        server = ServerProcess(
            "moto_server (seeded)",
            lambda port: [str(SERVERS_BIN / "python"), str(REPO / "benchmarks" / "seeded_moto.py"),
                          "--port", str(port), "--bucket", MANIFEST_BUCKET,
                          "--objects", str(listed)],
            moto_ready,
            work / "moto-seeded.log",
        )  # fmt: skip
        server.start()
    else:
        import seaweedfs

        server = seaweedfs.weed_process(work, MANIFEST_BUCKET, region)
        server.start()
        seaweedfs.seed(server.port, MANIFEST_BUCKET, objects, region)
    seeding = time.perf_counter() - seeding
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    try:
        os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{server.port}"
        store = S3ResultStore(MANIFEST_BUCKET, MANIFEST_PREFIX)
        client = store._client()  # made now, with this endpoint
        if endpoint is None:
            del os.environ["AWS_ENDPOINT_URL"]
        else:
            os.environ["AWS_ENDPOINT_URL"] = endpoint
        locations = [store.location(key, MANIFEST_ATTEMPT) for key in keys]
        requests: dict[str, int] = {}
        client.meta.events.register(
            "before-call.s3",
            lambda model, **_: requests.__setitem__(model.name, requests.get(model.name, 0) + 1),
        )
        context = context_for(inputs, work / "r", records, store, dry_run=True, plan=True)
        assert {job.decision.action.value for job in plan_run(context)} == {"skip"}
        batched = time_plan(context, rounds=2)
        trusted = context_for(
            inputs, work / "r", records, ManifestsTrusted(store), dry_run=True, plan=True
        )
        planning = time_plan(trusted, rounds=2)

        checks = cpu = server_cpu = float("inf")
        for _ in range(2):  # the best of two, with the CPU time of that one
            requests.clear()
            cpu_at, server_at, started = (
                time.process_time(),
                _cpu_seconds(server),
                time.perf_counter(),
            )
            found = store.has_manifests(locations)
            if time.perf_counter() - started < checks:
                checks = time.perf_counter() - started
                cpu, server_cpu = time.process_time() - cpu_at, _cpu_seconds(server) - server_at
            assert set(found.values()) == {True}
        lists, heads = requests.get("ListObjectsV2", 0), requests.get("HeadObject", 0)

        sample = random.Random(13).sample(locations, min(PER_KEY_SAMPLE, len(locations)))
        head_cpu, head_server, started = (
            time.process_time(),
            _cpu_seconds(server),
            time.perf_counter(),
        )
        assert all(store.has_manifest(location) for location in sample)
        per_key = (time.perf_counter() - started) / len(sample)
        head_cpu = (time.process_time() - head_cpu) / len(sample)
        head_server = (_cpu_seconds(server) - head_server) / len(sample)

        checked = sample[:200] + [f"s3://{MANIFEST_BUCKET}/{folder}" for folder in traps]
        checked += [f"{location}-none" for location in sample[:10]]  # never written
        one_by_one = {location: store.has_manifest(location) for location in checked}
        batch = store.has_manifests(checked)
        wrong = sum(batch[location] != one_by_one[location] for location in checked)
        if wrong:
            raise AssertionError(f"{label}: has_manifests differs from has_manifest {wrong} times")
    finally:
        server.stop()
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    plan_per_key = planning + per_key * jobs
    return [
        (
            f"plan {jobs} recorded jobs, manifests on S3 ({label}), batched",
            f"{jobs / batched:,.0f} jobs/s",
            f"{batched:.2f} s; the same plan with no manifest checked: {planning:.2f} s "
            f"({jobs / planning:,.0f} jobs/s); seeding {len(objects):,} objects took "
            f"{seeding:.1f} s; {load}",
        ),
        (
            f"plan {jobs} recorded jobs, manifests on S3 ({label}), one HEAD per job "
            f"(extrapolated from {len(sample)} sequential has_manifest calls)",
            f"{jobs / plan_per_key:,.0f} jobs/s",
            f"{per_key * 1000:.2f} ms a HEAD (client CPU {head_cpu * 1000:.2f} ms, server CPU "
            f"{head_server * 1000:.2f} ms); batched is {plan_per_key / batched:.1f}x faster",
        ),
        (
            f"check {len(locations)} manifests on S3 ({label}): has_manifests alone",
            f"{checks:.2f} s, {lists} LISTs, {heads} HEADs",
            f"server CPU {server_cpu:.2f} s, client CPU {cpu:.2f} s (2 cores); "
            f"{len(locations) / checks:,.0f} manifests/s; batched == one by one on "
            f"{len(checked)} locations ({len(traps)} named to sort apart in a tree)",
        ),
    ]


def _cpu_seconds(server: Any) -> float:
    """User + system CPU seconds the server's process has used so far."""
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_bucket() -> str:
    """A bucket on the S3 server the AWS variables name."""
    import boto3  # type: ignore[import-untyped]

    region = os.environ["AWS_DEFAULT_REGION"]
    client = boto3.session.Session().client("s3", region_name=region)
    client.create_bucket(
        Bucket="bench-results", CreateBucketConfiguration={"LocationConstraint": region}
    )
    return "bench-results"


def main() -> None:
    """Run every measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--servers", action="store_true", help="also measure on SecantusDB")
    parser.add_argument(
        "--only",
        choices=["planning", "overhead", "executors", "manifests"],
        help="measure one section (manifests: plan recorded jobs whose manifests are on S3)",
    )
    parser.add_argument(
        "--s3-server",
        choices=[*S3_SERVERS, "both"],
        default="both",
        help="the S3 server(s) of the manifests section (default: both, side by side)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aw-bench-"))
    server = s3_server = None
    try:
        mongo_uri = bucket = None
        if args.servers and args.only in (None, "planning", "overhead"):
            from servers import SERVERS_BIN, TEST_AWS_ENV, ServerProcess, _mongo_ready, moto_process

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
            s3_server = moto_process("moto_server", work / "moto.log")
            s3_server.start()
            os.environ.update(TEST_AWS_ENV, AWS_ENDPOINT_URL=f"http://127.0.0.1:{s3_server.port}")
            bucket = make_bucket()
        rows = []
        if args.only in (None, "planning"):
            rows += planning_rows(work, args.jobs, mongo_uri)
        if args.only in (None, "overhead"):
            rows += overhead_rows(work, mongo_uri=mongo_uri, bucket=bucket)
        if args.only in (None, "executors"):
            rows += executor_rows(work)
        if args.only == "manifests" or (args.only is None and args.servers):
            servers = list(S3_SERVERS) if args.s3_server == "both" else [args.s3_server]
            rows += manifest_rows(work, args.jobs, servers)
    finally:
        for running in (s3_server, server):
            if running is not None:
                running.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("| measurement | result | note |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
