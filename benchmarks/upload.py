"""Upload throughput to a local S3 server: S3ResultStore vs put_object vs fsspec.

Starts moto's S3 server on a free loopback port (from the test servers' venv, made by
``make test``), then times, side by side in one run, three ways of uploading a result
folder:

- ``S3ResultStore.publish``: this package (boto3's transfer manager, many files at
  once, large files in parts; plus its manifest and bookkeeping requests);
- a plain sequential ``put_object`` loop over the files;
- ``fsspec``/``s3fs`` ``put(folder, target, recursive=True)``: the upstream way.

Two workloads: 200 files of 256 KiB, and one file of 200 MiB. Each is run several
rounds; within a round the three methods take turns, and the objects are deleted after
each upload (moto keeps everything in memory). Each method makes its client once and
reuses it, as a run publishing many jobs does; an untimed warm-up round goes first. The
table shows the median of the rounds. Loopback figures measure client overhead and
moto, not real S3 rates.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/upload.py --help``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import s3fs  # type: ignore[import-untyped]

from analysis_wrapper.stores.manifest import build_manifest
from analysis_wrapper.stores.s3.store import S3ResultStore

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVERS_BIN = Path(
    os.environ.get("ANALYSIS_WRAPPER_SERVERS_BIN", REPO_ROOT / ".ci" / ".venv-servers" / "bin")
)
REGION = "us-west-2"
KiB, MiB = 1024, 1024 * 1024

Upload = Callable[[Path, str, str], float]  # (folder, bucket, prefix) -> seconds


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def moto_server(log_path: Path) -> Iterator[str]:
    """Run ``moto_server`` on a free port until the block ends; yield its endpoint."""
    executable = SERVERS_BIN / "moto_server"
    if not executable.exists():
        sys.exit(f"{executable} is missing; run `make test` or `make bench` first")
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(executable), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    sys.exit(f"moto_server did not start; see {log_path}")
                time.sleep(0.1)
        yield endpoint
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def make_files(folder: Path, count: int, size: int) -> Path:
    """Write ``count`` files of ``size`` random bytes under ``folder``; return it."""
    folder.mkdir(parents=True)
    for number in range(count):
        (folder / f"file{number:04d}.bin").write_bytes(os.urandom(size))
    return folder


def folder_bytes(folder: Path) -> int:
    """The total size of the files under ``folder``."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def store_upload(bucket: str) -> Upload:
    """``S3ResultStore.publish`` with its default transfer settings, one store for all."""
    store = S3ResultStore(bucket, "store")

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
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                with path.open("rb") as body:
                    key = f"{prefix}/{path.relative_to(folder).as_posix()}"
                    client.put_object(Bucket=bucket, Key=key, Body=body)
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
    """Delete every object (moto holds them in memory)."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects = [{"Key": entry["Key"]} for entry in page.get("Contents", [])]
        if objects:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


def run_workload(
    name: str,
    folder: Path,
    methods: dict[str, Upload],
    rounds: int,
    client: Any,
    bucket: str,
) -> list[dict[str, Any]]:
    """Time each method ``rounds`` times, taking turns; return one row per method."""
    size = folder_bytes(folder)
    seconds: dict[str, list[float]] = {method: [] for method in methods}
    for round_number in range(rounds):
        order = list(methods)
        order = order[round_number % len(order) :] + order[: round_number % len(order)]
        for method in order:
            prefix = f"{method.split()[0].split('.')[0]}/{uuid.uuid4().hex}/run"
            seconds[method].append(methods[method](folder, bucket, prefix))
            empty_bucket(client, bucket)
    reference = statistics.median(seconds["fsspec put"])
    rows = []
    for method, times in seconds.items():
        median = statistics.median(times)
        rows.append(
            {
                "workload": name,
                "method": method,
                "seconds": median,
                "spread": (min(times), max(times)),
                "mib_s": size / MiB / median,
                "vs_fsspec": reference / median,
            }
        )
    return rows


def machine() -> str:
    """One line about this machine and the versions that matter."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    moto = subprocess.run(
        [str(SERVERS_BIN / "python"), "-c", "import moto; print(moto.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.platform()}; "
        f"nproc {os.cpu_count()}; memory {memory:.1f} GiB; load average {load}; "
        f"Python {platform.python_version()}; boto3 {version('boto3')}; "
        f"s3transfer {version('s3transfer')}; s3fs {version('s3fs')}; moto {moto}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds-small", type=int, default=7, help="rounds of 200 x 256 KiB")
    parser.add_argument("--rounds-large", type=int, default=3, help="rounds of 1 x 200 MiB")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    try:
        small = make_files(work / "small", 200, 256 * KiB)
        large = make_files(work / "large", 1, 200 * MiB)
        with moto_server(work / "moto.log") as endpoint:
            os.environ.update(
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",
                AWS_DEFAULT_REGION=REGION,
                AWS_EC2_METADATA_DISABLED="true",
                AWS_ENDPOINT_URL=endpoint,
            )
            client = boto3.session.Session().client("s3")
            bucket = f"bench-{uuid.uuid4().hex[:12]}"
            client.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
            methods: dict[str, Upload] = {
                "S3ResultStore.publish": store_upload(bucket),
                "put_object loop": put_object_loop(client),
                "fsspec put": fsspec_put(endpoint),
            }
            # One untimed pass warms imports, each method's one client, and moto's code paths.
            run_workload("warm-up", small, methods, 1, client, bucket)
            rows = run_workload("200 x 256 KiB", small, methods, args.rounds_small, client, bucket)
            rows += run_workload("1 x 200 MiB", large, methods, args.rounds_large, client, bucket)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(machine())
    print()
    print("| workload | method | median s | min-max s | MiB/s | vs fsspec |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        low, high = row["spread"]
        print(
            f"| {row['workload']} | {row['method']} | {row['seconds']:.2f} | "
            f"{low:.2f}-{high:.2f} | {row['mib_s']:.1f} | {row['vs_fsspec']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
