"""Upload throughput to two local S3 servers: S3ResultStore vs the best boto3 client vs fsspec.

Starts, from the test servers' venv (made by ``make test`` or ``make bench``), moto's S3
server (one Python process) and SeaweedFS's ``weed mini`` (a production S3 server
written in Go), each on free loopback ports through the tests' own helpers, and times,
side by side in one run, on each server, six ways of uploading a result folder:

- ``S3ResultStore.publish``: this package (small files as direct PUTs from the store
  client's parts, many at once; large files in parts by boto3's transfer manager;
  plus its manifest and bookkeeping requests), and the same with every small file's
  PUT by boto3's ``put_object`` instead (``direct_puts=False``), what it did before;
- a plain sequential ``put_object`` loop over the files;
- ``fsspec``/``s3fs`` ``put(folder, target, recursive=True)``: the upstream way;
- ``put_object`` from a pool of threads sharing one client (``--threads``, a
  connection each): the best plain boto3 client found (see BENCHMARKS.md for what
  else was tried);
- a PUT per file over ``http.client`` from the same number of threads, signed by
  botocore's SigV4 signer with no boto3 client around it: the floor of a client's
  cost, which says how much of a PUT's time is the server's.

Three workloads: 200 files of 256 KiB, 2,000 files of 16 KiB, one file of 200 MiB.
Each is run several rounds; within a round the methods take turns, and the objects
are deleted after each upload (moto keeps everything in memory). Each method makes its
client once and reuses it, as a run publishing many jobs does; an untimed warm-up
round goes first. The table shows the median of the rounds, in objects and MB (10^6
bytes) a second. Loopback figures measure client overhead and the servers, sharing
this machine's cores, not real S3 rates.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/upload.py --help``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "code"), str(REPO_ROOT / "tests")]

import boto3  # type: ignore[import-untyped]  # noqa: E402
import s3fs  # type: ignore[import-untyped]  # noqa: E402
from botocore.config import Config  # type: ignore[import-untyped]  # noqa: E402

from analysis_wrapper.stores.manifest import build_manifest  # noqa: E402
from analysis_wrapper.stores.s3.store import S3ResultStore, TransferSettings  # noqa: E402
from servers import (  # noqa: E402
    SERVERS_BIN,
    TEST_AWS_ENV,
    TEST_CREDENTIALS,
    ServerProcess,
    moto_process,
    weed_process,
)

REGION = TEST_AWS_ENV["AWS_DEFAULT_REGION"]
KiB, MiB = 1024, 1024 * 1024
SERVERS = ("moto", "seaweedfs")
PUBLISH = "S3ResultStore.publish"
PUBLISH_BY_BOTO3 = f"{PUBLISH}, put_object for each file (direct_puts=False)"

Upload = Callable[[Path, str, str], float]  # (folder, bucket, prefix) -> seconds


@contextmanager
def s3_server(kind: str, work: Path) -> Iterator[str]:
    """Run moto or SeaweedFS on free loopback ports until the block ends; yield its endpoint."""
    server: ServerProcess
    if kind == "moto":
        server = moto_process("moto_server", work / "moto.log")
    else:
        server = weed_process(work, "ready-check", TEST_CREDENTIALS, REGION)
    executable = Path(server.command(server.port)[0])
    if not executable.exists():
        sys.exit(f"{executable} is missing; run `make test` or `make bench` first")
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def make_files(folder: Path, count: int, size: int) -> Path:
    """Write ``count`` files of ``size`` random bytes under ``folder``; return it."""
    folder.mkdir(parents=True)
    for number in range(count):
        (folder / f"file{number:04d}.bin").write_bytes(os.urandom(size))
    return folder


def folder_files(folder: Path) -> list[Path]:
    """The files under ``folder``, sorted."""
    return sorted(path for path in folder.rglob("*") if path.is_file())


def store_upload(bucket: str, *, direct_puts: bool = True) -> Upload:
    """``S3ResultStore.publish``, one store for all: its defaults, or every PUT by boto3."""
    store = S3ResultStore(bucket, "store", transfer=TransferSettings(direct_puts=direct_puts))

    def upload(folder: Path, bucket: str, prefix: str) -> float:
        key = hashlib.sha256(prefix.encode()).hexdigest()  # a key is 64 hex digits
        manifest = build_manifest(key, folder)  # hashing is not upload: done first
        started = time.perf_counter()
        store.publish(key, uuid.uuid4().hex[:12], folder, manifest)
        return time.perf_counter() - started

    return upload


def put_object_loop(client: Any) -> Upload:
    """One ``put_object`` after the other, the naive way."""

    def upload(folder: Path, bucket: str, prefix: str) -> float:
        started = time.perf_counter()
        for path in folder_files(folder):
            with path.open("rb") as body:
                key = f"{prefix}/{path.relative_to(folder).as_posix()}"
                client.put_object(Bucket=bucket, Key=key, Body=body)
        return time.perf_counter() - started

    return upload


def threaded_put(threads: int) -> Upload:
    """``put_object`` of every file from ``threads`` threads sharing one client.

    A file above 64 MiB would need parts; the workloads' large file is one PUT here,
    which both servers take.
    """
    client = boto3.session.Session().client(
        "s3", config=Config(max_pool_connections=threads, retries={"total_max_attempts": 1})
    )
    pool = ThreadPoolExecutor(threads)

    def put(folder: Path, bucket: str, prefix: str, path: Path) -> None:
        with path.open("rb") as body:
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            client.put_object(Bucket=bucket, Key=key, Body=body)

    def upload(folder: Path, bucket: str, prefix: str) -> float:
        started = time.perf_counter()
        list(pool.map(lambda path: put(folder, bucket, prefix, path), folder_files(folder)))
        return time.perf_counter() - started

    return upload


def raw_signed_put(endpoint: str, threads: int) -> Upload:
    """Each file one PUT over ``http.client``, signed by botocore's SigV4 signer alone.

    No boto3 client (no request building, event hooks or response parsing): the floor
    of what a client built on botocore's parts costs, with the CRC32 header boto3
    sends. Whole files in memory, no retries: a measure, not a store.
    """
    import http.client
    import threading
    from urllib.parse import urlsplit

    from servers import signed_put

    address = urlsplit(endpoint)
    local = threading.local()
    pool = ThreadPoolExecutor(threads)

    def put(folder: Path, bucket: str, prefix: str, path: Path) -> None:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(
                str(address.hostname), address.port, timeout=120
            )
        key = f"{prefix}/{path.relative_to(folder).as_posix()}"
        signed_put(local.connection, bucket, key, path.read_bytes(), TEST_CREDENTIALS, REGION)

    def upload(folder: Path, bucket: str, prefix: str) -> float:
        started = time.perf_counter()
        list(pool.map(lambda path: put(folder, bucket, prefix, path), folder_files(folder)))
        return time.perf_counter() - started

    return upload


def fsspec_put(endpoint: str) -> Upload:
    """``s3fs.S3FileSystem.put(folder, target, recursive=True)``, as upstream copies results."""
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)

    def upload(folder: Path, bucket: str, prefix: str) -> float:
        started = time.perf_counter()
        fs.put(str(folder), f"{bucket}/{prefix}", recursive=True)
        return time.perf_counter() - started

    return upload


def empty_bucket(client: Any, bucket: str) -> None:
    """Delete every object (moto holds them in memory, SeaweedFS on disk)."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
        if objects:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


def run_workload(
    server: str,
    name: str,
    folder: Path,
    methods: dict[str, Upload],
    rounds: int,
    client: Any,
    bucket: str,
) -> list[dict[str, Any]]:
    """Time each method ``rounds`` times, taking turns; return one row per method."""
    files = folder_files(folder)
    size = sum(path.stat().st_size for path in files)
    seconds: dict[str, list[float]] = {method: [] for method in methods}
    for round_number in range(rounds):
        order = list(methods)
        order = order[round_number % len(order) :] + order[: round_number % len(order)]
        for method in order:
            prefix = f"{method.split()[0].split('.')[0]}/{uuid.uuid4().hex}/run"
            seconds[method].append(methods[method](folder, bucket, prefix))
            empty_bucket(client, bucket)
    reference = statistics.median(seconds["fsspec put"])
    best = min(
        statistics.median(seconds[method])
        for method in methods
        if not method.startswith(PUBLISH)  # the store's two ways are not clients to beat
    )
    rows = []
    for method, times in seconds.items():
        median = statistics.median(times)
        rows.append(
            {
                "server": server,
                "workload": name,
                "method": method,
                "seconds": median,
                "spread": (min(times), max(times)),
                "objects_s": len(files) / median,
                "mb_s": size / 1e6 / median,
                "vs_fsspec": reference / median,
                "vs_best": best / median,
            }
        )
    return rows


def server_version(kind: str) -> str:
    """The version of moto or SeaweedFS in the servers' venv."""
    if kind == "moto":
        command = [str(SERVERS_BIN / "python"), "-c", "import moto; print(moto.__version__)"]
    else:
        command = [str(SERVERS_BIN / "weed"), "version"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    words = done.stdout.split()
    return words[2] if kind != "moto" and len(words) > 2 else done.stdout.strip()


def machine() -> str:
    """One line about this machine and the versions that matter."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.platform()}; "
        f"nproc {os.cpu_count()}; memory {memory:.1f} GiB; load average {load}; "
        f"Python {platform.python_version()}; boto3 {version('boto3')}; "
        f"s3transfer {version('s3transfer')}; s3fs {version('s3fs')}; "
        f"moto {server_version('moto')}; SeaweedFS {server_version('seaweedfs')}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds-small", type=int, default=5, help="rounds of 200 x 256 KiB")
    parser.add_argument("--rounds-many", type=int, default=3, help="rounds of 2,000 x 16 KiB")
    parser.add_argument("--rounds-large", type=int, default=3, help="rounds of 1 x 200 MiB")
    parser.add_argument("--threads", type=int, default=16, help="the thread pool's threads")
    parser.add_argument("--servers", choices=[*SERVERS, "both"], default="both")
    args = parser.parse_args(argv)
    servers = SERVERS if args.servers == "both" else (args.servers,)
    work = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    rows: list[dict[str, Any]] = []
    before = machine()
    try:
        workloads = [
            ("200 x 256 KiB", make_files(work / "small", 200, 256 * KiB), args.rounds_small),
            ("2,000 x 16 KiB", make_files(work / "many", 2000, 16 * KiB), args.rounds_many),
            ("1 x 200 MiB", make_files(work / "large", 1, 200 * MiB), args.rounds_large),
        ]
        os.environ.update(TEST_AWS_ENV)
        for kind in servers:
            (work / kind).mkdir()
            with s3_server(kind, work / kind) as endpoint:
                os.environ["AWS_ENDPOINT_URL"] = endpoint
                client = boto3.session.Session().client("s3")
                bucket = f"bench-{uuid.uuid4().hex[:12]}"
                client.create_bucket(
                    Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
                )
                methods: dict[str, Upload] = {
                    PUBLISH: store_upload(bucket),
                    PUBLISH_BY_BOTO3: store_upload(bucket, direct_puts=False),
                    "put_object loop": put_object_loop(client),
                    "fsspec put": fsspec_put(endpoint),
                    f"put_object, {args.threads} threads": threaded_put(args.threads),
                    f"signed PUT over http.client, {args.threads} threads": raw_signed_put(
                        endpoint, args.threads
                    ),
                }
                # An untimed pass warms imports, each method's client, the server's code.
                run_workload(kind, "warm-up", workloads[0][1], methods, 1, client, bucket)
                for name, folder, rounds in workloads:
                    rows += run_workload(kind, name, folder, methods, rounds, client, bucket)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(before)
    print(f"after: load average {', '.join(f'{value:.2f}' for value in os.getloadavg())}")
    print()
    columns = ("median s", "min-max s", "objects/s", "MB/s", "vs fsspec", "vs best")
    print(f"| server | workload | method | {' | '.join(columns)} |")
    print(f"|---|---|---|{'---:|' * len(columns)}")
    for row in rows:
        low, high = row["spread"]
        print(
            f"| {row['server']} | {row['workload']} | {row['method']} | {row['seconds']:.2f} | "
            f"{low:.2f}-{high:.2f} | {row['objects_s']:.0f} | {row['mb_s']:.1f} | "
            f"{row['vs_fsspec']:.2f} | {row['vs_best']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
