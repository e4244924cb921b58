"""`results verify` end to end: the example posted, then its stored files damaged.

Each test runs on the embedded stores (SQLite + a local folder) and on MongoDB
(SecantusDB) + S3, on moto and on SeaweedFS. The example is posted once per backend;
each test damages what it needs behind the stores' backs and the stored files are put
back as they were after it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest

from conftest import CapsuleCopy, isolated_environment, make_capsule_copy
from pseudo_terminal import run_on_terminal
from servers import TEST_AWS_ENV, free_port

JOB_COUNT = 6
FILES_PER_JOB = 5
SESSION = "sessions/ecephys_612345_2025-03-14_10-02-11"
BACKENDS = ("embedded", "moto", "seaweedfs")


class Posted:
    """The example capsule after one posting run, and a way to reach its stored files."""

    def __init__(self, capsule: CapsuleCopy, env: dict[str, str]) -> None:
        self.capsule = capsule
        self.env = env
        found = self.find_json()
        self.locations = {str(record["_id"]): str(record["location"]) for record in found}
        assert len(self.locations) == JOB_COUNT

    def find_json(self) -> list[dict[str, Any]]:
        done = self.capsule.cli("results", "find", "--format", "json", env=self.env)
        assert done.returncode == 0, done.stderr
        records: list[dict[str, Any]] = json.loads(done.stdout)
        return records

    def verify(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `analysis-wrapper results verify ARGS` with the backend's settings."""
        return self.capsule.cli("results", "verify", *args, env=self.env)

    def record_keys(self) -> list[str]:
        return sorted(self.locations)

    def manifest(self, key: str) -> dict[str, Any]:
        """The manifest of ``key``'s stored result."""
        data: dict[str, Any] = json.loads(self.read(key, "manifest.json"))
        return data

    def entry(self, key: str, path: str) -> dict[str, Any]:
        """The manifest's entry for ``path``."""
        return next(f for f in self.manifest(key)["files"] if f["path"] == path)

    # What a backend provides: read, write and delete one stored file; snapshot all.

    def read(self, key: str, path: str) -> bytes:
        raise NotImplementedError

    def write(self, key: str, path: str, data: bytes) -> None:
        raise NotImplementedError

    def delete(self, key: str, path: str) -> None:
        raise NotImplementedError

    def snapshot(self) -> Any:
        raise NotImplementedError

    def restore(self, snapshot: Any) -> None:
        raise NotImplementedError


class LocalPosted(Posted):
    """Results in the capsule's embedded folder."""

    def folder(self, key: str) -> Path:
        return Path(unquote(urlsplit(self.locations[key]).path))

    def read(self, key: str, path: str) -> bytes:
        return (self.folder(key) / path).read_bytes()

    def write(self, key: str, path: str, data: bytes) -> None:
        target = self.folder(key) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def delete(self, key: str, path: str) -> None:
        (self.folder(key) / path).unlink()

    def snapshot(self) -> Path:
        saved = self.capsule.root.parent / f"saved-{uuid.uuid4().hex[:8]}"
        shutil.copytree(self.capsule.store / "results", saved)
        return saved

    def restore(self, snapshot: Path) -> None:
        shutil.rmtree(self.capsule.store / "results")
        shutil.copytree(snapshot, self.capsule.store / "results")
        shutil.rmtree(snapshot)


class S3Posted(Posted):
    """Results in an S3 bucket, records in MongoDB."""

    def __init__(self, capsule: CapsuleCopy, env: dict[str, str]) -> None:
        super().__init__(capsule, env)
        self.s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        self.bucket = env["ANALYSIS_BUCKET"].removeprefix("s3://").split("/")[0]

    def object_key(self, key: str, path: str) -> str:
        return f"{urlsplit(self.locations[key]).path.strip('/')}/{path}"

    def read(self, key: str, path: str) -> bytes:
        reply = self.s3.get_object(Bucket=self.bucket, Key=self.object_key(key, path))
        data: bytes = reply["Body"].read()
        return data

    def write(self, key: str, path: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self.object_key(key, path), Body=data)

    def delete(self, key: str, path: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.object_key(key, path))

    def snapshot(self) -> dict[str, bytes]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return {
            item["Key"]: self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
            for item in listed
        }

    def restore(self, snapshot: dict[str, bytes]) -> None:
        now = self.snapshot()
        for name in now.keys() - snapshot.keys():
            self.s3.delete_object(Bucket=self.bucket, Key=name)
        for name, data in snapshot.items():
            if now.get(name) != data:
                self.s3.put_object(Bucket=self.bucket, Key=name, Body=data)


def s3_settings(endpoint: str, mongo_uri: str) -> dict[str, str]:
    """Settings for a run on MongoDB + S3: a fresh database and a fresh bucket."""
    bucket = f"verify-{uuid.uuid4().hex[:12]}"
    boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=TEST_AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=TEST_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(
        Bucket=bucket,
        CreateBucketConfiguration={"LocationConstraint": TEST_AWS_ENV["AWS_DEFAULT_REGION"]},
    )
    return {
        **TEST_AWS_ENV,
        "AWS_ENDPOINT_URL": endpoint,
        "DOCDB_HOST": mongo_uri,
        "DOCDB_DATABASE": f"verify_{uuid.uuid4().hex[:8]}",
        "DOCDB_COLLECTION": "isi_filtering",
        "ANALYSIS_BUCKET": f"s3://{bucket}/analysis/example",
    }


def post(backend: str, request: pytest.FixtureRequest, folder: Path) -> Posted:
    """Post the example to ``backend``: embedded, or MongoDB + moto or SeaweedFS."""
    copy = make_capsule_copy(folder / "capsule")
    env: dict[str, str] = {}
    if backend != "embedded":
        server = request.getfixturevalue(f"{'moto_s3' if backend == 'moto' else backend}_server")
        env = s3_settings(f"http://127.0.0.1:{server.port}", request.getfixturevalue("mongo_uri"))
    with isolated_environment():
        done = copy.run("--dry_run", "0", env=env)
    assert done.returncode == 0, done.stderr
    return LocalPosted(copy, env) if backend == "embedded" else S3Posted(copy, env)


@pytest.fixture(scope="module")
def embedded_posted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Posted:
    return post("embedded", request, tmp_path_factory.mktemp("verify-embedded"))


@pytest.fixture(scope="module")
def moto_posted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Posted:
    return post("moto", request, tmp_path_factory.mktemp("verify-moto"))


@pytest.fixture(scope="module")
def seaweedfs_posted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Posted:
    return post("seaweedfs", request, tmp_path_factory.mktemp("verify-seaweedfs"))


@pytest.fixture(scope="module", params=BACKENDS)
def posted_once(request: pytest.FixtureRequest) -> Posted:
    """The example posted once to each backend in turn."""
    posted: Posted = request.getfixturevalue(f"{request.param}_posted")
    return posted


@pytest.fixture
def posted(posted_once: Posted) -> Iterator[Posted]:
    """The posted example; whatever a test damages is put back after it."""
    saved = posted_once.snapshot()
    yield posted_once
    posted_once.restore(saved)


def rows(stdout: str) -> dict[str, list[str]]:
    """Each record's row (by its 12-digit key) split into columns, and its detail lines."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in stdout.splitlines()[1:-1]:
        if line.startswith("    "):
            found[current].append(line.strip())
        else:
            current = line.split()[0]
            found[current] = [line]
    return found


def summary(stdout: str) -> str:
    return stdout.strip().splitlines()[-1]


def flip_a_byte(data: bytes, at: int = 100) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 0x01
    return bytes(changed)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def test_fresh_results_are_ok_by_size_and_by_sha256(posted: Posted) -> None:
    """Every freshly posted record is ok, sizes only and deep; exit 0."""
    for deep, how in (
        ("0", "by size (--deep 1 also compares sha256)"),
        ("1", "by size and sha256"),
    ):
        done = posted.verify("--deep", deep)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        lines = done.stdout.splitlines()
        assert lines[0].split() == ["key", "files", "missing", "changed", "extra", "result"]
        table = rows(done.stdout)
        assert sorted(table) == sorted(key[:12] for key in posted.record_keys())
        assert all(
            row[0].split()[1:] == [str(FILES_PER_JOB), "0", "0", "0", "ok"]
            for row in table.values()
        )
        assert summary(done.stdout) == (
            f"{JOB_COUNT} record(s), {JOB_COUNT * FILES_PER_JOB} file(s), checked {how}: "
            f"{JOB_COUNT} ok, 0 not"
        )


def test_a_deleted_file_is_missing(posted: Posted) -> None:
    """A file gone from one result: that record's row names it, with its size; exit 1."""
    key = posted.record_keys()[0]
    entry = posted.entry(key, "units.csv")
    posted.delete(key, "units.csv")
    done = posted.verify()
    assert done.returncode == 1, done.stderr
    row = rows(done.stdout)[key[:12]]
    assert row[0].split()[1:] == [str(FILES_PER_JOB), "1", "0", "0", "missing"]
    assert row[1:] == [
        f"missing  units.csv  ({entry['size']} bytes, sha256 {entry['sha256'][:12]})"
    ]
    assert summary(done.stdout).endswith("5 ok, 1 not: 1 file(s) missing")
    others = [r for k, r in rows(done.stdout).items() if k != key[:12]]
    assert all(r[0].split()[-1] == "ok" and len(r) == 1 for r in others)


def test_a_changed_byte_of_the_same_size_is_found_only_by_deep(posted: Posted) -> None:
    """One byte of a figure flipped: sizes match (exit 0); --deep 1 names both digests (exit 1)."""
    key = posted.record_keys()[1]
    original = posted.read(key, "units.png")
    posted.write(key, "units.png", flip_a_byte(original))
    sizes = posted.verify()
    assert sizes.returncode == 0, sizes.stdout
    assert summary(sizes.stdout).endswith(f"{JOB_COUNT} ok, 0 not")
    deep = posted.verify("--deep", "1")
    assert deep.returncode == 1, deep.stderr
    row = rows(deep.stdout)[key[:12]]
    assert row[0].split()[1:] == [str(FILES_PER_JOB), "0", "1", "0", "changed"]
    size = len(original)
    assert row[1:] == [
        f"changed  units.png  (manifest {size} bytes, sha256 {sha(original)}; "
        f"stored {size} bytes, sha256 {sha(flip_a_byte(original))})"
    ]
    assert summary(deep.stdout).endswith("5 ok, 1 not: 1 file(s) changed")


def test_a_file_of_another_size_is_found_without_deep(posted: Posted) -> None:
    """A table that grew by a line: found from the listing alone, its digest left unread."""
    key = posted.record_keys()[2]
    original = posted.read(key, "units.csv")
    posted.write(key, "units.csv", original + b"unit_99,0.0,true\n")
    done = posted.verify()
    assert done.returncode == 1, done.stderr
    row = rows(done.stdout)[key[:12]]
    assert row[0].split()[1:] == [str(FILES_PER_JOB), "0", "1", "0", "changed"]
    assert row[1] == (
        f"changed  units.csv  (manifest {len(original)} bytes, sha256 {sha(original)}; "
        f"stored {len(original) + 17} bytes, sha256 not read (--deep 1 reads it))"
    )
    deep = posted.verify("--deep", "1")
    assert f"sha256 {sha(original + b'unit_99,0.0,true' + bytes([10]))})" in deep.stdout


def test_an_extra_file_is_found(posted: Posted) -> None:
    """A file the manifest does not list, in a subfolder: extra, with its size; exit 1."""
    key = posted.record_keys()[3]
    posted.write(key, "notes/added later.txt", b"not part of the result\n")
    done = posted.verify("--deep", "1")
    assert done.returncode == 1, done.stderr
    row = rows(done.stdout)[key[:12]]
    assert row[0].split()[1:] == [str(FILES_PER_JOB), "0", "0", "1", "extra"]
    assert row[1:] == ["extra    notes/added later.txt  (23 bytes)"]
    assert summary(done.stdout).endswith("5 ok, 1 not: 1 file(s) extra")


def test_a_missing_or_unreadable_manifest_is_named_as_such(posted: Posted) -> None:
    """No manifest.json, and one that is not JSON: each record's row says which; exit 1."""
    gone, broken = posted.record_keys()[:2]
    posted.delete(gone, "manifest.json")
    posted.write(broken, "manifest.json", b'{"files": [')
    done = posted.verify()
    assert done.returncode == 1, done.stderr
    table = rows(done.stdout)
    assert table[gone[:12]][0].split()[1:5] == ["-", "-", "-", "-"]
    assert (
        f"manifest.json missing at {posted.locations[gone]} "
        f"(it holds {FILES_PER_JOB} other file(s))" in table[gone[:12]][0]
    )
    assert "manifest.json unreadable: " in table[broken[:12]][0]
    assert "not JSON" in table[broken[:12]][0] or "Expecting" in table[broken[:12]][0]
    assert summary(done.stdout).endswith(
        "4 ok, 2 not: 2 folder(s) not comparable (no readable manifest or location)"
    )


def test_filters_choose_the_records_checked(posted: Posted) -> None:
    """Only the records the filters select are checked: damage elsewhere is not seen."""
    inside = posted.find_json()
    chosen = [r["_id"] for r in inside if SESSION in json.dumps(r["processing"])]
    assert len(chosen) == 2
    outside = next(key for key in posted.record_keys() if key not in chosen)
    posted.delete(outside, "units.png")
    done = posted.verify("--input", SESSION, "--deep", "1")
    assert done.returncode == 0, done.stdout
    assert sorted(rows(done.stdout)) == sorted(key[:12] for key in chosen)
    assert posted.verify().returncode == 1


def test_usage_errors_exit_2(embedded_posted: Posted) -> None:
    """A --deep other than 0 or 1, an unknown parameter, an unknown flag: one line, exit 2."""
    posted_once = embedded_posted
    for args in (["--deep", "2"], ["--deep"], ["--param", "isi_cutoff=1"], ["--bogus"]):
        done = posted_once.verify(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""
    assert "'isi_violations_cutoff'" in posted_once.verify("--param", "isi_cutoff=1").stderr


@pytest.mark.parametrize("server", ["moto", "seaweedfs"])
def test_an_unreachable_s3_stops_with_one_line(server: str, request: pytest.FixtureRequest) -> None:
    """S3 gone (records still readable): exit 1, one line naming the remedy, no table."""
    posted_once: Posted = request.getfixturevalue(f"{server}_posted")
    env = {**posted_once.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    done = posted_once.capsule.cli("results", "verify", env=env)
    assert done.returncode == 1
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "cannot reach S3" in errors[0], done.stderr
    assert "check AWS_ENDPOINT_URL" in errors[0]
    assert "Traceback" not in done.stderr


def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_log(embedded_posted: Posted) -> None:
    """On a terminal, a bar over the records; in a log file, the closing progress line."""
    posted_once = embedded_posted
    logged = posted_once.verify()
    assert f"progress: {JOB_COUNT}/{JOB_COUNT} record(s) checked" in logged.stderr
    code, out, terminal = cli_on_terminal(posted_once.capsule, "results", "verify")
    assert code == 0, terminal
    assert f"{JOB_COUNT}/{JOB_COUNT}" in terminal and "record" in terminal
    assert "progress:" not in terminal
    assert summary(out).endswith(f"{JOB_COUNT} ok, 0 not")


def cli_on_terminal(capsule: CapsuleCopy, *args: str) -> tuple[int, str, str]:
    """Run `analysis-wrapper ARGS` with stderr on a pseudo-terminal: (code, stdout, terminal)."""
    return run_on_terminal([sys.executable, "-m", "analysis_wrapper", *args], capsule.root)
