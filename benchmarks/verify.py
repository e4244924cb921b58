"""``results verify`` over many result folders: on a local folder and on SeaweedFS's S3.

    python benchmarks/verify.py [--records 10000] [--deep-sample 500] [--serial-sample 1000]

Builds ``--records`` result folders as a publish leaves them (five files of the
example's sizes and a manifest listing them with their sha256), breaks a few (a file
deleted, a byte changed in place, a file added, a file grown), and checks them with
the engine of ``analysis-wrapper results verify`` (``stores.verify.verify_folders``):

1. on the local results store, by size, every folder; by sha256, a sample;
2. on SeaweedFS (a production S3 server, filled through its S3 API), by size, every
   folder, with the folders in flight the command uses and one folder at a time on a
   sample (extrapolated), side by side; by sha256, a sample, both ways;
3. the same on a sample through a proxy that adds 10 ms each way, as to a bucket in
   another region.

Not on moto: its server scans every key of the bucket for each LIST of a prefix, so
10,000 folders (60,000 objects) took more than 15 minutes of its CPU.

Every pass must find exactly the broken folders it can see (a same-size change only
by sha256); the script fails otherwise. Reading the records from the record store is
not timed here (``benchmarks/scale.py`` times record queries). Prints a markdown
table on stdout.
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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "code"), str(REPO / "tests")]

from analysis_wrapper.stores.base import ResultStore  # noqa: E402
from analysis_wrapper.stores.local import LocalResultStore  # noqa: E402
from analysis_wrapper.stores.manifest import MANIFEST_NAME, build_manifest  # noqa: E402
from analysis_wrapper.stores.verify import Target, Verdict, verify_folders  # noqa: E402

if TYPE_CHECKING:
    from analysis_wrapper.stores.s3.store import S3ResultStore

FILE_SIZES = {
    "units.csv": 1_600,
    "units.png": 24_000,
    "metadata.nd.json": 6_200,
    "key.json": 900,
    "ro-crate-metadata.json": 7_100,
}
"""Each folder's files and their sizes in bytes, near the example's (±10 % a folder)."""

BUCKET, PREFIX = "bench-verify", "analysis/v1"
ATTEMPT = "20261204T010203Z-5c1d7e"

BROKEN = {"missing": 5, "changed in place": 5, "extra": 5, "grown": 5}
"""Folders broken each way; "changed in place" keeps the size (only sha256 sees it)."""


def build_tree(root: Path, count: int, seed: int = 11) -> list[str]:
    """``count`` result folders under ``root/PREFIX``; return their keys."""
    rng = random.Random(seed)
    keys = [f"{rng.getrandbits(256):064x}" for _ in range(count)]
    for key in keys:
        folder = root / PREFIX / key / ATTEMPT
        folder.mkdir(parents=True)
        for name, size in FILE_SIZES.items():
            (folder / name).write_bytes(rng.randbytes(int(size * rng.uniform(0.9, 1.1))))
        manifest = build_manifest(key, folder)
        (folder / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    return keys


def break_folders(root: Path, keys: list[str]) -> dict[str, str]:
    """Break ``BROKEN``'s folders in ``root``; return each broken key's way."""
    rng = random.Random(5)
    chosen = rng.sample(keys, sum(BROKEN.values()))
    broken: dict[str, str] = {}
    for way, count in BROKEN.items():
        for key in chosen[:count]:
            broken[key] = way
        chosen = chosen[count:]
    for key, way in broken.items():
        folder = root / PREFIX / key / ATTEMPT
        if way == "missing":
            (folder / "units.png").unlink()
        elif way == "changed in place":
            data = bytearray((folder / "units.csv").read_bytes())
            data[len(data) // 2] ^= 0xFF
            (folder / "units.csv").write_bytes(bytes(data))
        elif way == "extra":
            (folder / "notes.txt").write_text("added by hand\n", encoding="utf-8")
        else:
            with (folder / "key.json").open("ab") as handle:
                handle.write(b"\n")
    return broken


def expected_bad(broken: dict[str, str], keys: list[str], *, deep: bool) -> set[str]:
    """The keys among ``keys`` that a check must find not ok."""
    chosen = set(keys)
    return {
        key for key, way in broken.items() if key in chosen and (deep or way != "changed in place")
    }


def timed(
    store: ResultStore,
    targets: list[Target],
    *,
    deep: bool,
    serial: bool = False,
) -> tuple[float, list[Verdict]]:
    """Seconds to check ``targets`` once (the folders are many), and the verdicts."""
    options: dict[str, Any] = {"folders_in_flight": 1, "digests_in_flight": 1} if serial else {}
    started = time.perf_counter()
    verdicts = verify_folders(store, targets, deep=deep, **options)
    return time.perf_counter() - started, verdicts


def check(verdicts: list[Verdict], bad: set[str], label: str) -> None:
    """Fail unless exactly the ``bad`` keys' folders were found not ok."""
    found = {verdict.target.key for verdict in verdicts if not verdict.ok}
    if found != bad:
        raise AssertionError(
            f"{label}: found {len(found)} bad folder(s), expected {len(bad)}: "
            f"{sorted(found ^ bad)[:3]} differ"
        )


def sample_of(targets: list[Target], size: int, broken: dict[str, str]) -> list[Target]:
    """``size`` targets, the broken ones among them (so the sample is checked too)."""
    bad = [target for target in targets if target.key in broken]
    good = [target for target in targets if target.key not in broken]
    return bad + random.Random(3).sample(good, max(0, min(size, len(targets)) - len(bad)))


def megabytes(verdicts: list[Verdict], root: Path) -> float:
    """The bytes the deep pass read, in MB (the listed files' sizes)."""
    total = 0
    for verdict in verdicts:
        folder = root / PREFIX / verdict.target.key / ATTEMPT
        total += sum(
            (folder / name).stat().st_size for name in FILE_SIZES if (folder / name).exists()
        )
    return total / 1e6


Row = tuple[str, str, str]


def rows_on(
    label: str,
    store: ResultStore,
    location: Callable[[str], str],
    keys: list[str],
    broken: dict[str, str],
    root: Path,
    args: argparse.Namespace,
    requests: dict[str, int] | None = None,
) -> list[Row]:
    """Sizes over every folder and sha256 over a sample, each also one folder at a time."""
    targets = [Target(key, location(key)) for key in keys]
    files = len(FILE_SIZES) * len(targets)
    rows: list[Row] = []

    if requests is not None:
        requests.clear()
    seconds, verdicts = timed(store, targets, deep=False)
    check(verdicts, expected_bad(broken, keys, deep=False), f"{label} sizes")
    calls = (
        f"; {requests.get('ListObjectsV2', 0):,} LISTs, {requests.get('GetObject', 0):,} GETs"
        if requests is not None
        else ""
    )
    serial_targets = sample_of(targets, args.serial_sample, broken)
    serial, verdicts = timed(store, serial_targets, deep=False, serial=True)
    check(verdicts, expected_bad(broken, [t.key for t in serial_targets], deep=False), label)
    serial_all = serial / len(serial_targets) * len(targets)
    rows.append(
        (
            f"verify {len(targets):,} folders on {label}, sizes only",
            f"{seconds:.1f} s",
            f"{len(targets) / seconds:,.0f} folders/s, {files:,} files{calls}; one folder at "
            f"a time: {serial / len(serial_targets) * 1000:.2f} ms a folder (sample of "
            f"{len(serial_targets):,}), {serial_all:.0f} s for all: "
            f"{serial_all / seconds:.1f}x the time",
        )
    )

    deep_targets = sample_of(targets, args.deep_sample, broken)
    deep_keys = [target.key for target in deep_targets]
    seconds, verdicts = timed(store, deep_targets, deep=True)
    check(verdicts, expected_bad(broken, deep_keys, deep=True), f"{label} deep")
    read = megabytes(verdicts, root)
    hashed = sum(verdict.hashed for verdict in verdicts)
    serial_deep = deep_targets[: max(1, len(deep_targets) // 5)]
    one_by_one, _ = timed(store, serial_deep, deep=True, serial=True)
    per_folder = seconds / len(deep_targets)
    rows.append(
        (
            f"verify --deep 1, a sample of {len(deep_targets):,} folders on {label}",
            f"{seconds:.1f} s",
            f"{hashed:,} files read ({read:.1f} MB, {read / seconds:.1f} MB/s), "
            f"{per_folder * 1000:.2f} ms a folder: {per_folder * len(targets):.0f} s for "
            f"{len(targets):,}; one file at a time: {one_by_one / len(serial_deep) * 1000:.2f} "
            f"ms a folder ({one_by_one / len(serial_deep) / per_folder:.1f}x the time)",
        )
    )
    return rows


REMOTE_ONE_WAY_S = 0.01
"""The delay each way through the proxy: a 20 ms round trip, as to S3 in another region."""


def _store_at(port: int) -> S3ResultStore:
    """The S3 results store of the bucket, its client made for ``127.0.0.1:port``."""
    from analysis_wrapper.stores.s3.store import S3ResultStore

    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    try:
        store = S3ResultStore(BUCKET, PREFIX)
        store._client()  # made now, with this endpoint
    finally:
        if endpoint is None:
            del os.environ["AWS_ENDPOINT_URL"]
        else:
            os.environ["AWS_ENDPOINT_URL"] = endpoint
    return store


def s3_rows(
    work: Path, keys: list[str], broken: dict[str, str], args: argparse.Namespace
) -> list[Row]:
    """The rows on SeaweedFS, filled with the tree through its S3 API, near and far."""
    import seaweedfs
    from latency_proxy import LatencyProxy

    from servers import TEST_AWS_ENV

    for name, value in TEST_AWS_ENV.items():
        os.environ.setdefault(name, value)
    tree = work / "tree"
    objects = sorted(
        path.relative_to(tree).as_posix() for path in tree.rglob("*") if path.is_file()
    )
    server = seaweedfs.weed_process(work, BUCKET, os.environ["AWS_DEFAULT_REGION"])
    server.start()
    try:
        seeding = time.perf_counter()
        seaweedfs.seed(
            server.port, BUCKET, objects, os.environ["AWS_DEFAULT_REGION"],
            body=lambda key: (tree / key).read_bytes(),
        )  # fmt: skip
        seeding = time.perf_counter() - seeding
        store = _store_at(server.port)
        requests: dict[str, int] = {}
        store._client().meta.events.register(
            "before-call.s3",
            lambda model, **_: requests.__setitem__(model.name, requests.get(model.name, 0) + 1),
        )
        rows = rows_on(
            "SeaweedFS", store, lambda key: store.location(key, ATTEMPT), keys, broken, tree,
            args, requests,
        )  # fmt: skip
        with LatencyProxy(("127.0.0.1", server.port), one_way_s=REMOTE_ONE_WAY_S) as proxy:
            remote = _store_at(proxy.port)
            sample = [target.key for target in sample_of(
                [Target(key, "") for key in keys], args.serial_sample, broken
            )]  # fmt: skip
            label = f"SeaweedFS {REMOTE_ONE_WAY_S * 2000:.0f} ms away"
            rows += rows_on(
                label, remote, lambda key: remote.location(key, ATTEMPT), sample, broken, tree,
                args,
            )  # fmt: skip
    finally:
        server.stop()
    rows[0] = (
        rows[0][0],
        rows[0][1],
        f"{rows[0][2]}; seeding {len(objects):,} objects took {seeding:.1f} s",
    )
    return rows


def main() -> None:
    """Build the folders, check them on each store, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--deep-sample", type=int, default=500)
    parser.add_argument("--serial-sample", type=int, default=1_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        started = time.perf_counter()
        keys = build_tree(work / "tree", args.records)
        broken = break_folders(work / "tree", keys)
        built = time.perf_counter() - started
        local = LocalResultStore(work / "tree" / PREFIX)
        rows = [
            (
                f"build {len(keys):,} result folders ({len(FILE_SIZES)} files and a manifest each)",
                f"{built:.1f} s",
                f"{sum(BROKEN.values())} broken: "
                + ", ".join(f"{count} {way}" for way, count in BROKEN.items()),
            )
        ]
        rows += rows_on(
            "the local store",
            local,
            lambda key: local.location(key, ATTEMPT),
            keys,
            broken,
            work / "tree",
            args,
        )
        rows += s3_rows(work, keys, broken, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} cores\n")
    print("| measured | figure | detail |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
