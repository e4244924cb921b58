"""`analysis-wrapper gc` on the embedded stores and on the S3 server.

Each test builds its store contents directly (published attempts, records, claims, raw
leftovers), ages the folders it wants old by setting file times, then runs the command
as a user would.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from analysis_wrapper.stores.claims import Claim, Owner
from analysis_wrapper.stores.local import LocalResultStore
from analysis_wrapper.stores.manifest import MANIFEST_NAME, build_manifest
from analysis_wrapper.stores.s3.store import S3ResultStore
from analysis_wrapper.stores.sqlite import SqliteRecordStore
from conftest import CapsuleCopy
from contract.record_store_contract import make_record
from contract.result_store_contract import key_of, write_tree

TABLE = "analysis_results"
HOUR = 3600.0
FILES = {"a.txt": b"aaaa", "sub/b.txt": b"bb"}


class Stores:
    """The capsule's embedded stores, written to directly."""

    def __init__(self, capsule: CapsuleCopy, tmp_path: Path) -> None:
        self.results = LocalResultStore(capsule.store / "results")
        self.records = SqliteRecordStore(capsule.store / "records.sqlite", TABLE)
        self.tmp_path = tmp_path

    def publish(self, key: str, attempt: str, *, age: float = 2 * HOUR) -> str:
        """Publish FILES as ``attempt`` of ``key``, its files ``age`` seconds old."""
        folder = write_tree(self.tmp_path / uuid.uuid4().hex, FILES)
        location = self.results.publish(key, attempt, folder, build_manifest(key, folder))
        age_folder(self.results.root / key / attempt, age)
        return location

    def record(self, key: str, location: str) -> None:
        """Store a record of ``key`` naming ``location``."""
        self.records.put(make_record(key, {"x": 1}, location=location))


def age_folder(folder: Path, seconds: float) -> None:
    """Make every file under ``folder`` look ``seconds`` old."""
    then = time.time() - seconds
    for path in folder.rglob("*"):
        os.utime(path, (then, then))


def gc(capsule: CapsuleCopy, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `analysis-wrapper gc`; assert exit 0 and no traceback; return stdout."""
    done = capsule.cli("gc", *args, env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def listed(stdout: str) -> list[str]:
    """The locations the command listed as garbage, in order."""
    return [line.split()[0] for line in stdout.splitlines() if "://" in line.split()[0]]


@pytest.fixture
def stores(capsule: CapsuleCopy, tmp_path: Path) -> Iterator[Stores]:
    opened = Stores(capsule, tmp_path)
    yield opened
    opened.records.close()


def test_lists_folders_no_record_names_and_keeps_the_rest(
    capsule: CapsuleCopy, stores: Stores
) -> None:
    """Unrecorded complete and incomplete folders are listed; recorded and young ones not."""
    done, retried, lost, crashed, fresh = (key_of(n) for n in ("done", "re", "lost", "cr", "new"))
    kept = stores.publish(done, "a1")
    stores.record(done, kept + "/")  # a trailing slash names the same folder
    stores.record(retried, stores.publish(retried, "a1"))
    superseded = stores.publish(retried, "a0")
    orphan = stores.publish(lost, "a1")
    half = stores.results.root / crashed / "a1"
    write_tree(half, {"a.txt": b"half"})
    age_folder(half, 2 * HOUR)
    young = stores.publish(fresh, "a1", age=60)

    out = gc(capsule)
    assert sorted(listed(out)) == sorted(
        [superseded, orphan, stores.results.location(crashed, "a1")]
    )
    lines = {line.split()[0]: line for line in out.splitlines()}
    [size] = [e.size for e in stores.results.list_published() if e.location == orphan]
    assert lines[orphan] == f"{orphan}  2.0 h old  3 file(s)  {size} bytes  complete"
    assert lines[stores.results.location(crashed, "a1")].endswith("1 file(s)  4 bytes  incomplete")
    assert "3 folder(s) no record points to: 7 file(s)" in out
    assert "kept 2 named by their record, 0 of keys being worked on, 1 changed in the last" in out
    assert "--delete 1" in out
    for location in (kept, superseded, orphan, young):  # listing deletes nothing
        assert stores.results.has_manifest(location) is True
    assert half.is_dir()

    assert sorted(listed(gc(capsule, "--older_than", "0"))) == sorted(
        [superseded, orphan, stores.results.location(crashed, "a1"), young]
    )


def test_delete_removes_exactly_the_listed_folders(capsule: CapsuleCopy, stores: Stores) -> None:
    """--delete 1 deletes the garbage, reports it, and leaves recorded and young folders."""
    key, other = key_of("key"), key_of("other")
    recorded = stores.publish(key, "a1")
    stores.record(key, recorded)
    garbage = [stores.publish(key, "a2"), stores.publish(other, "a1")]
    write_tree(stores.results.root / other / "a9", {"x.bin": b"\0" * 10})
    age_folder(stores.results.root / other / "a9", 2 * HOUR)
    young = stores.publish(other, "a3", age=0)
    size = sum(entry.size for entry in stores.results.list_published() if entry.location in garbage)

    out = gc(capsule, "--delete", "1")
    assert len(listed(out)) == 3
    assert f"deleted 3 folder(s), 7 file(s), {size + 10} bytes" in out
    assert sorted(entry.location for entry in stores.results.list_published()) == sorted(
        [recorded, young]
    )
    assert stores.results.read_manifest(recorded) is not None
    assert listed(gc(capsule)) == []


def test_live_claim_keeps_every_folder_of_its_key(capsule: CapsuleCopy, stores: Stores) -> None:
    """A key a worker holds now keeps its folders; an expired claim protects nothing."""
    working, stalled = key_of("working"), key_of("stalled")
    now = time.time()
    owner = Owner("elsewhere", 4242, "run-1")
    assert stores.records.insert_claim(Claim(working, owner, 1, "running", now, now, now + 600))
    assert stores.records.insert_claim(
        Claim(stalled, owner, 1, "running", now - 900, now - 900, now - 300)
    )
    held = stores.publish(working, "a1")
    abandoned = stores.publish(stalled, "a1")

    out = gc(capsule, "--delete", "1")
    assert listed(out) == [abandoned]
    assert "1 of keys being worked on" in out
    assert stores.results.has_manifest(held) is True
    assert stores.results.has_manifest(abandoned) is False


def test_old_layout_result_is_kept_and_its_later_attempt_listed(
    capsule: CapsuleCopy, stores: Stores
) -> None:
    """A record from before attempt folders names <url>/<key>: kept; a stray attempt goes."""
    key = key_of("old")
    folder = stores.results.root / key
    write_tree(folder, {"a.txt": b"old", MANIFEST_NAME: b'{"files": []}'})
    age_folder(folder, 2 * HOUR)
    stores.record(key, f"{stores.results.url}/{key}")
    attempt = stores.publish(key, "a1")

    out = gc(capsule, "--delete", "1")
    assert listed(out) == [attempt]
    assert (folder / "a.txt").read_bytes() == b"old"
    assert stores.results.has_manifest(f"{stores.results.url}/{key}") is True
    assert not (folder / "a1").exists()


def test_record_naming_another_store_keeps_its_key(capsule: CapsuleCopy, stores: Stores) -> None:
    """A record whose location is outside this store: none of its key's folders is listed."""
    key = key_of("moved")
    stores.record(key, f"s3://another-bucket/results/{key}/a1")
    here = stores.publish(key, "a1")
    out = gc(capsule)
    assert listed(out) == []
    assert f"1 of keys whose record names a folder outside {stores.results.url}" in out
    assert stores.results.has_manifest(here) is True


def test_refuses_to_delete_complete_folders_when_no_folder_has_a_record(
    capsule: CapsuleCopy, stores: Stores
) -> None:
    """No record for any folder (likely the wrong record store): --delete 1 deletes nothing."""
    location = stores.publish(key_of("unrecorded"), "a1")
    out = gc(capsule)
    assert listed(out) == [location]
    assert "warning: no folder of this store has a record" in out
    done = capsule.cli("gc", "--delete", "1")
    assert done.returncode == 2
    assert "nothing deleted" in done.stderr
    assert stores.results.has_manifest(location) is True


def test_empty_store_lists_nothing(capsule: CapsuleCopy) -> None:
    """A capsule that never published: nothing listed, and nothing created."""
    out = gc(capsule, "--delete", "1")
    assert "0 folder(s) no record points to" in out
    assert not (capsule.store / "results").exists()


@pytest.mark.parametrize(
    "args",
    [("--delete", "2"), ("--delete", "yes"), ("--older_than", "-1"), ("--older_than", "soon")],
)
def test_usage_errors_exit_2(capsule: CapsuleCopy, args: tuple[str, str]) -> None:
    """A --delete other than 0 or 1, or a negative or non-numeric age: exit 2, one line."""
    done = capsule.cli("gc", *args)
    assert done.returncode == 2
    assert args[0] in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_gc_on_s3(
    capsule: CapsuleCopy,
    stores: Stores,
    aws_test_env: dict[str, str],
    s3_endpoint: str,
    tmp_path: Path,
) -> None:
    """On S3, unrecorded attempts and a crashed try are listed and deleted; the rest stay."""
    s3: Any = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = f"gc-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    s3.put_object(Bucket=bucket, Key="prefix/README.txt", Body=b"not the store's")
    store = S3ResultStore(bucket, "prefix")
    key, other = key_of("s3 key"), key_of("s3 other")
    folder = write_tree(tmp_path / "out", FILES)
    recorded = store.publish(key, "a1", folder, build_manifest(key, folder))
    stores.record(key, recorded)
    superseded = store.publish(key, "a2", folder, build_manifest(key, folder))
    s3.put_object(Bucket=bucket, Key=f"prefix/{other}/a1/half.txt", Body=b"half")
    env = {"ANALYSIS_BUCKET": f"s3://{bucket}/prefix"}

    assert listed(gc(capsule, env=env)) == []  # every folder was written just now
    out = gc(capsule, "--older_than", "0", env=env)
    assert sorted(listed(out)) == sorted([superseded, f"{store.url}/{other}/a1"])
    out = gc(capsule, "--older_than", "0", "--delete", "1", env=env)
    assert "deleted 2 folder(s), 4 file(s)" in out
    names = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert names == sorted(
        ["prefix/README.txt", f"prefix/{key}/a1/{MANIFEST_NAME}"]
        + [f"prefix/{key}/a1/{path}" for path in FILES]
    )
    assert store.read_manifest(recorded) is not None
