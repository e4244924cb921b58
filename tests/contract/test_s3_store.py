"""The result store contract bound to S3ResultStore on moto and SeaweedFS, plus what only it does.

Every test publishes into a bucket of its own (uuid-named), so tests never see each
other's objects. Below the contract: ANALYSIS_BUCKET forms through the factory,
multipart and many-file uploads, has_manifest across buckets, leftovers of a failed
try, listing and deleting over many objects, errors (missing bucket, wrong secret on a
moto server that enforces auth, unreachable endpoint) without secrets, and the S3
server stopped in the middle of an upload, then started again; and what the S3 code
relies on of a server, with what SeaweedFS does otherwise than AWS S3. The tests on
wrong credentials and outages use moto servers of their own; the tests that stop a
server use one of their own, so the session's S3 server (and other modules' buckets)
are never disturbed.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from analysis_wrapper.common.retry import RetryPolicy
from analysis_wrapper.config.settings import Capsule, RunOptions, StoreSettings
from analysis_wrapper.errors import ConfigError, StoreError
from analysis_wrapper.identity.key import CodeIdentity
from analysis_wrapper.job.job_file import Job
from analysis_wrapper.job.parameters import AnalysisParameters
from analysis_wrapper.report.progress import ByteProgress
from analysis_wrapper.run.context import Analysis, RunContext
from analysis_wrapper.run.runner import execute_run
from analysis_wrapper.stores.factory import open_result_store
from analysis_wrapper.stores.manifest import MANIFEST_NAME, build_manifest
from analysis_wrapper.stores.s3 import client as client_module
from analysis_wrapper.stores.s3 import contents as s3_contents
from analysis_wrapper.stores.s3 import manifests as s3_manifests
from analysis_wrapper.stores.s3.client import is_transient
from analysis_wrapper.stores.s3.store import S3ResultStore, TransferSettings
from analysis_wrapper.stores.s3.upload import ProgressSubscriber
from analysis_wrapper.stores.sqlite import SqliteRecordStore
from analysis_wrapper.stores.verify import Target, verify_folders
from conftest import CapsuleCopy, without_retry_waits
from contract.result_store_contract import ATTEMPT, ResultStoreContract, key_of, write_tree
from servers import TEST_AWS_ENV, ServerProcess, free_port, moto_process, on_each_s3_server

REGION = TEST_AWS_ENV["AWS_DEFAULT_REGION"]
FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)
MiB = 1024 * 1024

# Every test on the session's S3 server runs on moto, then on SeaweedFS.
s3_server, s3_endpoint = on_each_s3_server()


@functools.cache
def s3_client(endpoint: str, key: str = "testing", secret: str = "testing") -> Any:
    """A plain boto3 client, independent of the store under test (one per server)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def make_bucket(client: Any, name: str | None = None) -> str:
    """Create a bucket (a fresh uuid name unless given) and return its name."""
    bucket = name or f"test-{uuid.uuid4().hex[:24]}"
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    return bucket


def tree_reader(client: Any) -> Callable[[str], dict[str, bytes]]:
    """A ``read_tree`` for the contract: every object under an ``s3://`` URL."""

    def read_tree(url: str) -> dict[str, bytes]:
        parts = urlsplit(url)
        assert parts.scheme == "s3", url
        folder = parts.path.strip("/")
        prefix = f"{folder}/" if folder else ""
        found: dict[str, bytes] = {}
        pages = client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=parts.netloc, Prefix=prefix):
            for entry in page.get("Contents", []):
                body = client.get_object(Bucket=parts.netloc, Key=entry["Key"])["Body"].read()
                found[entry["Key"][len(prefix) :]] = body
        return found

    return read_tree


def raw_writer(client: Any, bucket: str, prefix: str) -> Callable[[str, bytes], None]:
    """A ``put_raw`` for the contract: one object under ``s3://bucket/prefix``."""

    def put_raw(relative: str, data: bytes) -> None:
        client.put_object(
            Bucket=bucket, Key=f"{prefix}/{relative}" if prefix else relative, Body=data
        )

    return put_raw


def object_keys(client: Any, bucket: str, prefix: str = "") -> list[str]:
    """Every object key in ``bucket`` under ``prefix``, sorted."""
    reply = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(entry["Key"] for entry in reply.get("Contents", []))


@pytest.fixture
def client(aws_test_env: dict[str, str]) -> Any:
    """A boto3 client to the session's S3 server (the test AWS variables are set)."""
    return s3_client(aws_test_env["AWS_ENDPOINT_URL"])


@pytest.fixture
def bucket(client: Any) -> str:
    """A fresh, empty bucket on the session's S3 server."""
    return make_bucket(client)


# --- the contract, bound ---------------------------------------------------------------


class TestS3ResultStore(ResultStoreContract):
    """The result store contract in a fresh bucket, under a two-level prefix."""

    @pytest.fixture
    def store(self, bucket: str) -> S3ResultStore:
        return S3ResultStore(bucket, "team/results")

    @pytest.fixture
    def read_tree(self, client: Any) -> Any:
        return tree_reader(client)

    @pytest.fixture
    def put_raw(self, client: Any, bucket: str) -> Any:
        return raw_writer(client, bucket, "team/results")


class TestS3ResultStoreAtBucketTop(ResultStoreContract):
    """The result store contract in a fresh bucket, with no prefix at all."""

    @pytest.fixture
    def store(self, bucket: str) -> S3ResultStore:
        return S3ResultStore(bucket, "")

    @pytest.fixture
    def read_tree(self, client: Any) -> Any:
        return tree_reader(client)

    @pytest.fixture
    def put_raw(self, client: Any, bucket: str) -> Any:
        return raw_writer(client, bucket, "")


# --- what the S3 code relies on of a server, on each server ------------------------------
#
# Where SeaweedFS answers otherwise than AWS S3, the test says so, and what the product
# does about it; moto answers as AWS does in all of these.


@pytest.fixture
def on_seaweedfs(s3_server: ServerProcess) -> bool:
    """Whether this test runs on SeaweedFS (else on moto)."""
    return s3_server.name == "weed mini"


def put_many(client: Any, bucket: str, keys: list[str], body: bytes = b"") -> None:
    """Put every key, 8 at once (one by one, 1,000 PUTs take seconds)."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=body), keys))


def test_a_conditional_put_writes_only_a_new_key(client: Any, bucket: str) -> None:
    """``IfNoneMatch="*"``: a new key is written, an existing one is refused with 412, kept.

    SeaweedFS honours it as AWS S3 does (s3rver, for one, ignores it). The stores do not
    depend on it: claims live in the record store, and a publish writes its manifest last,
    after its files, in a folder of its own attempt.
    """
    assert client.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"


def test_conditional_puts_racing_for_a_key_let_exactly_one_win(client: Any, bucket: str) -> None:
    """4 writers race for each of 50 keys with ``IfNoneMatch="*"``: one wins each, its body kept."""
    start = threading.Barrier(4)

    def writer(number: int) -> list[str]:
        start.wait()
        won = []
        for n in range(50):
            try:
                client.put_object(
                    Bucket=bucket, Key=f"race/{n}", Body=str(number).encode(), IfNoneMatch="*"
                )
                won.append(f"race/{n}")
            except ClientError as exc:
                # AWS answers 409 ConditionalRequestConflict to a write racing another.
                assert exc.response["Error"]["Code"] in (
                    "PreconditionFailed",
                    "ConditionalRequestConflict",
                )
        return won

    with ThreadPoolExecutor(4) as pool:
        winners = list(pool.map(writer, range(4)))
    assert sorted(key for won in winners for key in won) == sorted(f"race/{n}" for n in range(50))
    for number, won in enumerate(winners):
        for key in won:
            assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == str(number).encode()


def test_a_read_pinned_to_an_etag_fails_once_the_object_changed(client: Any, bucket: str) -> None:
    """``IfMatch`` (how an input is read pinned to what was looked up): 412 once replaced."""
    etag = client.put_object(Bucket=bucket, Key="k", Body=b"one")["ETag"]
    assert client.get_object(Bucket=bucket, Key="k", IfMatch=etag)["Body"].read() == b"one"
    client.put_object(Bucket=bucket, Key="k", Body=b"two")
    with pytest.raises(ClientError) as refused:
        client.get_object(Bucket=bucket, Key="k", IfMatch=etag)
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_etags_are_md5s_and_multipart_ones_count_their_parts(
    client: Any, bucket: str, tmp_path: Path
) -> None:
    """A PUT's ETag is its body's MD5; a multipart upload's the MD5 of its parts' MD5s, ``-N``.

    As on AWS S3, on both servers, in HEAD and in listings: inputs' versions are ETags.
    """
    data = os.urandom(12 * MiB + 1)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    client.upload_file(str(path), bucket, "big.bin", Config=config)
    client.put_object(Bucket=bucket, Key="small.bin", Body=data[:1000])
    parts = [data[start : start + 5 * MiB] for start in range(0, len(data), 5 * MiB)]
    joined = b"".join(hashlib.md5(part).digest() for part in parts)
    expected = {
        "big.bin": f'"{hashlib.md5(joined).hexdigest()}-3"',
        "small.bin": f'"{hashlib.md5(data[:1000]).hexdigest()}"',
    }
    assert {key: client.head_object(Bucket=bucket, Key=key)["ETag"] for key in expected} == expected
    listed = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert {entry["Key"]: entry["ETag"] for entry in listed} == expected


def test_listings_page_at_1000_keys(client: Any, bucket: str) -> None:
    """Over 1,000 keys: pages of 1,000 in byte order, then the rest, by continuation token.

    ``MaxKeys`` above 1,000: AWS S3 still answers 1,000 keys at most; **moto and SeaweedFS
    answer as many as asked**. The stores never ask for more than 1,000.
    """
    keys = [f"many/{n:04d}" for n in range(1001)]
    put_many(client, bucket, keys)
    first = client.list_objects_v2(Bucket=bucket, Prefix="many/")
    assert (first["KeyCount"], first["IsTruncated"]) == (1000, True)
    assert [entry["Key"] for entry in first["Contents"]] == keys[:1000]
    rest = client.list_objects_v2(
        Bucket=bucket, Prefix="many/", ContinuationToken=first["NextContinuationToken"]
    )
    assert [entry["Key"] for entry in rest["Contents"]] == keys[1000:]
    assert rest["IsTruncated"] is False
    asked_more = client.list_objects_v2(Bucket=bucket, Prefix="many/", MaxKeys=1001)
    assert asked_more["KeyCount"] == 1001  # AWS S3: 1000


def test_errors_name_what_is_missing(client: Any, bucket: str, on_seaweedfs: bool) -> None:
    """A missing key: GET ``NoSuchKey``, HEAD a bare 404; a missing bucket: ``NoSuchBucket``.

    A PUT into a missing bucket: AWS S3 (and moto) answer ``NoSuchBucket``; **SeaweedFS
    creates the bucket** and writes the object. A publish never relies on that answer:
    its first request is a LIST, which SeaweedFS does refuse with ``NoSuchBucket``
    (``test_missing_bucket_fails_fast_naming_bucket_and_remedy`` checks that nothing
    is created).
    """

    def error(call: Callable[[], Any]) -> tuple[str, int]:
        with pytest.raises(ClientError) as raised:
            call()
        reply = raised.value.response
        return reply["Error"]["Code"], reply["ResponseMetadata"]["HTTPStatusCode"]

    missing = f"missing-{uuid.uuid4().hex[:16]}"
    assert error(lambda: client.get_object(Bucket=bucket, Key="nope")) == ("NoSuchKey", 404)
    assert error(lambda: client.head_object(Bucket=bucket, Key="nope")) == ("404", 404)
    assert error(lambda: client.list_objects_v2(Bucket=missing)) == ("NoSuchBucket", 404)
    assert error(lambda: client.get_object(Bucket=missing, Key="k")) == ("NoSuchBucket", 404)
    assert error(lambda: client.head_object(Bucket=missing, Key="k")) == ("404", 404)
    if on_seaweedfs:
        client.put_object(Bucket=missing, Key="k", Body=b"x")
        assert client.get_object(Bucket=missing, Key="k")["Body"].read() == b"x"
    else:
        assert error(lambda: client.put_object(Bucket=missing, Key="k", Body=b"x")) == (
            "NoSuchBucket",
            404,
        )
    where = {"LocationConstraint": REGION}
    assert error(lambda: client.create_bucket(Bucket="b1", CreateBucketConfiguration=where)) == (
        "InvalidBucketName",
        400,
    )


def test_a_key_keeps_its_slashes_except_doubled_ones_on_seaweedfs(
    client: Any, bucket: str, on_seaweedfs: bool
) -> None:
    """Keys come back as written; **SeaweedFS folds ``//`` into ``/``** (AWS S3 keeps it).

    The stores never write such a key: a prefix loses its outer slashes, and a result
    file's key is its path relative to the folder.
    """
    names = ["sp ace/é.txt", "plus+sign", "pct%20", "q?x=1", "dir/", "a//b"]
    for name in names:
        client.put_object(Bucket=bucket, Key=name, Body=b"1")
    stored = sorted(entry["Key"] for entry in client.list_objects_v2(Bucket=bucket)["Contents"])
    expected = [name.replace("//", "/") if on_seaweedfs else name for name in names]
    assert stored == sorted(expected)


# --- ANALYSIS_BUCKET through the factory -------------------------------------------------


@pytest.mark.parametrize(
    "form",
    ["s3://{b}/team/results", "s3://{b}/team/results/", "{b}/team/results", "{b}/team/results/"],
)
def test_factory_opens_s3_bucket_with_prefix(
    client: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """s3://bucket/prefix[/] and upstream's bucket/prefix[/] give the same store and objects."""
    monkeypatch.setenv("ANALYSIS_BUCKET", form.format(b=bucket))
    store = open_result_store(StoreSettings(), Capsule(tmp_path / "capsule"))
    assert isinstance(store, S3ResultStore)
    assert store.url == f"s3://{bucket}/team/results"
    key = key_of("factory")
    folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
    location = store.publish(key, ATTEMPT, folder, build_manifest(key, folder))
    assert location == f"s3://{bucket}/team/results/{key}/{ATTEMPT}"
    assert object_keys(client, bucket) == [
        f"team/results/{key}/{ATTEMPT}/a.txt",
        f"team/results/{key}/{ATTEMPT}/{MANIFEST_NAME}",
    ]
    assert not (tmp_path / "capsule").exists()


@pytest.mark.parametrize("form", ["s3://{b}", "s3://{b}/", "{b}", "{b}/"])
def test_factory_bucket_without_prefix_publishes_at_top(
    client: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """A bucket with no prefix puts each key's folder at the top of the bucket."""
    monkeypatch.setenv("ANALYSIS_BUCKET", form.format(b=bucket))
    store = open_result_store(StoreSettings(), Capsule(tmp_path))
    assert store.url == f"s3://{bucket}"
    key = key_of("top")
    folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
    location = store.publish(key, ATTEMPT, folder, build_manifest(key, folder))
    assert location == f"s3://{bucket}/{key}/{ATTEMPT}"
    assert object_keys(client, bucket) == [
        f"{key}/{ATTEMPT}/a.txt",
        f"{key}/{ATTEMPT}/{MANIFEST_NAME}",
    ]


@pytest.mark.parametrize(
    "value", ["s3://AKIAEXAMPLE:s3cret-key@bucket/prefix", "AKIAEXAMPLE:s3cret-key@bucket/x"]
)
def test_credentials_in_analysis_bucket_are_refused_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """A bucket name holding credentials is a ConfigError that never shows the secret."""
    monkeypatch.setenv("ANALYSIS_BUCKET", value)
    with pytest.raises(ConfigError, match="not a valid S3 bucket name") as raised:
        open_result_store(StoreSettings(), Capsule(tmp_path))
    assert "s3cret-key" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


# --- uploads -----------------------------------------------------------------------------


def test_large_file_goes_up_in_parts(client: Any, bucket: str, tmp_path: Path) -> None:
    """A file over the multipart threshold is a multipart object (ETag '-3'), intact."""
    store = S3ResultStore(
        bucket,
        "big",
        transfer=TransferSettings(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB),
    )
    large = os.urandom(12 * MiB + 17)
    key = key_of("large")
    folder = write_tree(tmp_path / "out", {"large.bin": large, "small.txt": b"small"})
    manifest = build_manifest(key, folder)
    location = store.publish(key, ATTEMPT, folder, manifest)
    base = f"big/{key}/{ATTEMPT}"
    head = client.head_object(Bucket=bucket, Key=f"{base}/large.bin")
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentLength"] == len(large)
    assert "-" not in client.head_object(Bucket=bucket, Key=f"{base}/small.txt")["ETag"]
    body = client.get_object(Bucket=bucket, Key=f"{base}/large.bin")["Body"].read()
    assert body == large
    assert store.read_manifest(location) == manifest


def upload_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The progress lines of uploads that were logged."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("uploading ")]


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_publish_without_a_terminal_logs_bytes_up_to_the_total(
    client: Any, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Log lines give the bytes sent of the total and a rate; the last one, all of them."""
    caplog.set_level(logging.INFO, logger="analysis_wrapper")
    settings = TransferSettings(
        multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, progress_interval_s=0
    )
    store = S3ResultStore(bucket, "progress", transfer=settings)
    key = key_of("progress lines")
    folder = write_tree(
        tmp_path / "out", {"large.bin": os.urandom(12 * MiB), "half.bin": os.urandom(MiB // 2)}
    )
    store.publish(key, ATTEMPT, folder, build_manifest(key, folder), progress=ByteProgress)
    lines = upload_lines(caplog)
    prefix = f"uploading s3://{bucket}/progress/{key}/{ATTEMPT}/: "
    assert len(lines) >= 3, lines  # 12.5 MiB read in 1 MiB chunks: many steps
    assert all(line.startswith(prefix) and " of 12.5 MiB (" in line for line in lines)
    assert all(line.endswith("/s") for line in lines)
    assert lines[-1].startswith(prefix + "12.5 MiB of 12.5 MiB (100%), ")
    percents = [int(line.split(" (")[1].split("%")[0]) for line in lines]
    assert max(percents) == 100 == percents[-1]  # never above the total


def test_publish_on_a_terminal_draws_a_bar_over_bytes(
    client: Any,
    bucket: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal, a publish over the size limit draws a bar in bytes, and logs no lines."""
    caplog.set_level(logging.INFO, logger="analysis_wrapper")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    settings = TransferSettings(progress_bar_min_bytes=3 * MiB, progress_interval_s=0)
    store = S3ResultStore(bucket, "bar", transfer=settings)
    key = key_of("progress bar")
    folder = write_tree(tmp_path / "out", {"a.bin": os.urandom(2 * MiB), "b.bin": os.urandom(MiB)})
    store.publish(key, ATTEMPT, folder, build_manifest(key, folder), progress=ByteProgress)
    shown = terminal.getvalue()
    assert f"s3://{bucket}/bar/{key}/{ATTEMPT}/" in shown
    assert "3.00M" in shown  # the total, in bytes scaled by 1024
    assert "B/s" in shown
    assert upload_lines(caplog) == []


def test_publish_below_the_size_limit_draws_no_bar(
    client: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result under 64 MiB (the default limit) gets no bar, even on a terminal."""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    store = S3ResultStore(bucket, "small")
    key = key_of("no bar")
    folder = write_tree(tmp_path / "out", {"a.bin": os.urandom(2 * MiB)})
    location = store.publish(
        key, ATTEMPT, folder, build_manifest(key, folder), progress=ByteProgress
    )
    assert store.has_manifest(location) is True
    assert terminal.getvalue() == ""


def test_publish_shows_no_progress_unless_given_a_display(
    client: Any,
    bucket: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store imports no progress display: without one, a large publish is silent."""
    caplog.set_level(logging.INFO, logger="analysis_wrapper")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    settings = TransferSettings(progress_bar_min_bytes=MiB, progress_interval_s=0)
    store = S3ResultStore(bucket, "silent", transfer=settings)
    key = key_of("no display")
    folder = write_tree(tmp_path / "out", {"a.bin": os.urandom(2 * MiB)})
    location = store.publish(key, ATTEMPT, folder, build_manifest(key, folder))
    assert store.has_manifest(location) is True
    assert terminal.getvalue() == ""
    assert upload_lines(caplog) == []


class FakeTransfer:
    """What the subscriber reads of a transfer manager's future: its id and its outcome."""

    def __init__(self, transfer_id: int, error: Exception | None = None) -> None:
        self.meta = types.SimpleNamespace(transfer_id=transfer_id)
        self.error = error

    def result(self) -> None:
        if self.error is not None:
            raise self.error


def test_a_failed_file_gives_its_bytes_back() -> None:
    """Bytes of a file whose upload failed are taken back: the next round sends it again."""
    progress = ByteProgress(300, "x", stream=io.StringIO(), interval_s=3600)
    subscriber = ProgressSubscriber(progress)
    ok, failed = FakeTransfer(1), FakeTransfer(2, ConnectionError("reset"))
    subscriber.on_progress(ok, 100)
    subscriber.on_progress(failed, 80)
    subscriber.on_progress(failed, -30)  # a request rewound
    assert progress.done == 150
    subscriber.on_done(ok)
    subscriber.on_done(failed)
    assert progress.done == 100
    again = FakeTransfer(3)
    subscriber.on_progress(again, 200)
    subscriber.on_done(again)
    assert progress.done == progress.total


def test_many_small_files_all_arrive(client: Any, bucket: str, tmp_path: Path) -> None:
    """300 small files in nested folders all arrive, each with its own bytes (by MD5 ETag)."""
    files = {f"part{n % 7}/file{n:03d}.txt": f"file {n}\n".encode() * (n + 1) for n in range(300)}
    key = key_of("many")
    store = S3ResultStore(bucket, "many")
    folder = write_tree(tmp_path / "out", files)
    manifest = build_manifest(key, folder)
    location = store.publish(key, ATTEMPT, folder, manifest)
    base = f"many/{key}/{ATTEMPT}"
    etags: dict[str, str] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{base}/"):
        etags.update({entry["Key"]: entry["ETag"].strip('"') for entry in page["Contents"]})
    assert sorted(etags) == sorted(f"{base}/{name}" for name in [*files, MANIFEST_NAME])
    for name, data in files.items():
        assert etags[f"{base}/{name}"] == hashlib.md5(data).hexdigest(), name
    assert len(manifest["files"]) == 300
    assert store.read_manifest(location) == manifest


def test_content_type_follows_file_name(client: Any, bucket: str, tmp_path: Path) -> None:
    """Objects carry a Content-Type guessed from their names; the manifest is JSON."""
    store = S3ResultStore(bucket, "")
    key = key_of("types")
    folder = write_tree(tmp_path / "out", {"units.csv": b"a,b\n", "figure.png": b"\x89PNG"})
    store.publish(key, ATTEMPT, folder, build_manifest(key, folder))
    types = {
        name: client.head_object(Bucket=bucket, Key=f"{key}/{ATTEMPT}/{name}")["ContentType"]
        for name in ("units.csv", "figure.png", MANIFEST_NAME)
    }
    assert types == {
        "units.csv": "text/csv",
        "figure.png": "image/png",
        MANIFEST_NAME: "application/json",
    }


# --- leftovers of failed attempts (upstream defect D2) -----------------------------------


def test_a_crashed_try_of_the_same_attempt_is_replaced_exactly(
    client: Any, bucket: str, tmp_path: Path
) -> None:
    """Objects a crashed try left in the attempt's folder are overwritten or deleted."""
    key = key_of("crashed")
    client.put_object(Bucket=bucket, Key=f"r/{key}/{ATTEMPT}/a.txt", Body=b"half-written")
    client.put_object(Bucket=bucket, Key=f"r/{key}/{ATTEMPT}/only_in_crashed/x.bin", Body=b"x")
    client.put_object(Bucket=bucket, Key=f"r/{key}/{ATTEMPT}/{MANIFEST_NAME}", Body=b"{}")
    client.put_object(Bucket=bucket, Key=f"r/{key}/other-attempt/a.txt", Body=b"other")
    store = S3ResultStore(bucket, "r")
    folder = write_tree(tmp_path / "out", {"a.txt": b"complete", "b.txt": b"b"})
    manifest = build_manifest(key, folder)
    location = store.publish(key, ATTEMPT, folder, manifest)
    assert object_keys(client, bucket) == [
        f"r/{key}/{ATTEMPT}/a.txt",
        f"r/{key}/{ATTEMPT}/b.txt",
        f"r/{key}/{ATTEMPT}/{MANIFEST_NAME}",
        f"r/{key}/other-attempt/a.txt",
    ]
    body = client.get_object(Bucket=bucket, Key=f"r/{key}/{ATTEMPT}/a.txt")["Body"].read()
    assert body == b"complete"
    assert store.read_manifest(location) == manifest


def test_bad_local_file_changes_nothing_remote(client: Any, bucket: str, tmp_path: Path) -> None:
    """A publish that fails on an unreadable local file leaves every earlier object intact."""
    key = key_of("keep earlier")
    store = S3ResultStore(bucket, "r")
    first = write_tree(tmp_path / "first", {"a.txt": b"first"})
    manifest = build_manifest(key, first)
    location = store.publish(key, ATTEMPT, first, manifest)
    before = object_keys(client, bucket)
    second = write_tree(tmp_path / "second", {"a.txt": b"second"})
    os.symlink(tmp_path / "missing", second / "broken_link")
    for attempt in (ATTEMPT, "another"):
        with pytest.raises(StoreError, match="broken_link"):
            store.publish(key, attempt, second, build_manifest(key, second))
    assert object_keys(client, bucket) == before
    assert store.read_manifest(location) == manifest
    body = client.get_object(Bucket=bucket, Key=f"r/{key}/{ATTEMPT}/a.txt")["Body"].read()
    assert body == b"first"


def test_pruning_an_attempt_never_reaches_a_sibling_sharing_its_start(
    client: Any, bucket: str, tmp_path: Path
) -> None:
    """Pruning <key>/<attempt>/ never reaches a sibling whose name merely starts with it."""
    key = key_of("sibling")
    client.put_object(Bucket=bucket, Key=f"{key}/{ATTEMPT}/stale.txt", Body=b"pruned")
    client.put_object(Bucket=bucket, Key=f"{key}/{ATTEMPT}-other/keep.txt", Body=b"keep")
    client.put_object(Bucket=bucket, Key=f"{key}/{ATTEMPT}x", Body=b"keep")
    store = S3ResultStore(bucket, "")
    folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
    store.publish(key, ATTEMPT, folder, build_manifest(key, folder))
    assert object_keys(client, bucket) == sorted(
        [
            f"{key}/{ATTEMPT}-other/keep.txt",
            f"{key}/{ATTEMPT}x",
            f"{key}/{ATTEMPT}/a.txt",
            f"{key}/{ATTEMPT}/{MANIFEST_NAME}",
        ]
    )


# --- list_published and delete at scale ---------------------------------------------------


def test_list_published_pages_through_many_objects(client: Any, bucket: str) -> None:
    """Over 1,000 objects (several LIST pages) are all counted, and delete batches them."""
    key = key_of("paged")
    names = [f"f{n:04d}.txt" for n in range(1203)]
    put_many(client, bucket, [f"p/{key}/{ATTEMPT}/{name}" for name in names], b"12")
    client.put_object(Bucket=bucket, Key=f"p/{key}/{ATTEMPT}/{MANIFEST_NAME}", Body=b"{}")
    client.put_object(Bucket=bucket, Key=f"p/{key}/kept/a.txt", Body=b"a")
    store = S3ResultStore(bucket, "p")
    listed = {entry.location: entry for entry in store.list_published()}
    location = store.location(key, ATTEMPT)
    assert sorted(listed) == sorted([location, f"{store.url}/{key}/kept"])
    assert (listed[location].files, listed[location].size) == (1204, 2 * 1203 + 2)
    assert listed[location].complete
    assert store.delete(location) == 1204
    assert object_keys(client, bucket) == [f"p/{key}/kept/a.txt"]


def test_delete_refuses_another_bucket(client: Any, bucket: str, tmp_path: Path) -> None:
    """A location in another bucket, or outside the prefix, is refused and nothing goes."""
    key = key_of("mine")
    store = S3ResultStore(bucket, "p")
    folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
    location = store.publish(key, ATTEMPT, folder, build_manifest(key, folder))
    for other in (
        location.replace(f"s3://{bucket}/", "s3://another-bucket/"),
        location.replace("/p/", "/q/"),
        f"s3://{bucket}/{key}/{ATTEMPT}",
    ):
        with pytest.raises(StoreError, match="not a published folder"):
            store.delete(other)
    assert store.has_manifest(location) is True


# --- has_manifest ------------------------------------------------------------------------


def test_has_manifest_looks_in_any_bucket(client: Any, tmp_path: Path) -> None:
    """has_manifest checks a location in another bucket; unknown buckets read as False."""
    elsewhere, here = make_bucket(client), make_bucket(client)
    old_store = S3ResultStore(elsewhere, "old/prefix")
    key = key_of("moved")
    folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
    old_location = old_store.publish(key, ATTEMPT, folder, build_manifest(key, folder))
    store = S3ResultStore(here, "new")
    assert store.has_manifest(old_location) is True
    assert store.has_manifest(old_location + "/") is True
    assert store.has_manifest(old_store.location(key_of("never"), ATTEMPT)) is False
    assert store.read_manifest(old_location) is not None
    assert store.has_manifest(f"s3://{elsewhere}") is False
    assert store.has_manifest(f"s3://no-such-bucket-{uuid.uuid4().hex[:12]}/{key}") is False
    assert store.has_manifest(f"s3://None/{key}") is False
    assert store.has_manifest(f"file:///tmp/{key}") is None
    assert store.has_manifest(f"gs://{elsewhere}/{key}") is None


# --- pickling: the store sent to a spawned process (as the process pool does) -----------


def _publish_in_a_spawned_process(
    store: S3ResultStore, key: str, folder: str
) -> tuple[str, dict[str, Any] | None, bool | None]:
    """In the child: publish ``folder`` through the parent's store and read it back."""
    location = store.publish(key, ATTEMPT, Path(folder), build_manifest(key, Path(folder)))
    return location, store.read_manifest(location), store.has_manifest(location)


def test_store_sent_to_a_spawned_process_publishes_there(
    client: Any, bucket: str, tmp_path: Path
) -> None:
    """A used store (its client made, its lock taken) travels to a spawned worker.

    The worker makes its own client from the same environment, publishes and reads;
    the parent sees the files and the manifest.
    """
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    store = S3ResultStore(bucket, "team/results")
    assert store.has_manifest(store.location(key_of("nothing"), ATTEMPT)) is False  # a client
    assert b"botocore" not in pickle.dumps(store)
    key = key_of("spawned")
    folder = write_tree(tmp_path / "out", {"units.csv": b"1,2\n", "nested/figure.png": b"png"})
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        future = pool.submit(_publish_in_a_spawned_process, store, key, str(folder))
        location, manifest, present = future.result(timeout=300)
    assert location == store.location(key, ATTEMPT)
    assert manifest == store.read_manifest(location) and present is True
    assert manifest is not None and manifest["key"] == key
    published = sorted(tree_reader(client)(location))
    assert published == [MANIFEST_NAME, "nested/figure.png", "units.csv"]


def test_the_store_client_reads_dates_as_a_plain_boto3_client(
    client: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its faster timestamp parser gives the same LastModified, listed and in headers."""
    for n in range(5):
        client.put_object(Bucket=bucket, Key=f"dates/{n}.json", Body=b"{}")
    ours = S3ResultStore(bucket, "dates")._client()

    def listed(s3: Any) -> list[tuple[str, str]]:
        reply = s3.list_objects_v2(Bucket=bucket, Prefix="dates/")
        return [(entry["Key"], repr(entry["LastModified"])) for entry in reply["Contents"]]

    assert listed(ours) == listed(client)
    for key, _ in listed(client):
        theirs = client.head_object(Bucket=bucket, Key=key)["LastModified"]
        assert repr(ours.head_object(Bucket=bucket, Key=key)["LastModified"]) == repr(theirs)
    # And the listing's dates were ours to parse: botocore's parser saw only the header.
    seen: list[object] = []
    parse = client_module.botocore_parse_timestamp
    monkeypatch.setattr(
        client_module, "botocore_parse_timestamp", lambda v: seen.append(v) or parse(v)
    )
    listed(ours)
    assert seen == []
    ours.head_object(Bucket=bucket, Key="dates/0.json")
    assert len(seen) == 1


# --- has_manifests: many manifests at once ------------------------------------------------


class Requests:
    """Counts the requests a store's client sends, by operation (botocore's own events)."""

    def __init__(self, store: S3ResultStore) -> None:
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        store._client().meta.events.register("before-call.s3", self.count)

    def count(self, model: Any, **_: Any) -> None:
        with self.lock:
            self.counts[model.name] = self.counts.get(model.name, 0) + 1

    def total(self) -> int:
        return sum(self.counts.values())


def seed_folders(client: Any, bucket: str, prefix: str, count: int) -> dict[str, bool]:
    """``count`` result folders of 3 files (one in 3 without its manifest), 8 puts at once.

    Returns each folder's location and whether its manifest is there.
    """
    objects: list[str] = []
    complete: dict[str, bool] = {}
    for n in range(count):
        folder = f"{prefix}/{key_of(('seeded', n))}/{ATTEMPT}"
        names = ["key.json", "units.csv"] + ([MANIFEST_NAME] if n % 3 else ["metadata.nd.json"])
        objects += [f"{folder}/{name}" for name in names]
        complete[f"s3://{bucket}/{folder}"] = bool(n % 3)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: client.put_object(Bucket=bucket, Key=name, Body=b"{}"), objects))
    return complete


@pytest.fixture(scope="module")
def seeded(s3_endpoint: str) -> tuple[str, dict[str, bool]]:
    """A bucket of 600 result folders, 1,800 objects (so listings cross pages)."""
    client = s3_client(s3_endpoint)
    bucket = make_bucket(client)
    return bucket, seed_folders(client, bucket, "team/results", 600)


def test_has_manifests_of_many_folders_lists_pages_not_keys(
    aws_test_env: dict[str, str], seeded: tuple[str, dict[str, bool]]
) -> None:
    """600 neighbouring folders (1,800 objects) are answered in under 60 requests, no HEAD."""
    bucket, complete = seeded
    store = S3ResultStore(bucket, "team/results")
    requests = Requests(store)
    missing = [store.location(key_of(("absent", n)), ATTEMPT) for n in range(50)]
    answers = store.has_manifests([*complete, *missing])
    assert answers == {**complete, **dict.fromkeys(missing, False)}
    assert requests.counts.get("HeadObject", 0) == 0
    assert 0 < requests.total() < len(complete) / 10, requests.counts


def test_has_manifests_of_folders_far_apart_heads_them_in_flight(
    aws_test_env: dict[str, str], seeded: tuple[str, dict[str, bool]]
) -> None:
    """One folder in 40: listings would answer a few each, so the rest are HEADs; all right."""
    bucket, complete = seeded
    store = S3ResultStore(bucket, "team/results")
    sparse = dict(sorted(complete.items())[::40])
    assert set(sparse.values()) == {True, False}
    requests = Requests(store)
    assert store.has_manifests(sparse) == sparse
    assert requests.counts.get("ListObjectsV2", 0) >= 1
    assert requests.total() <= len(sparse) + 1, requests.counts


def test_has_manifests_by_listings_alone_with_tiny_pages(
    aws_test_env: dict[str, str],
    seeded: tuple[str, dict[str, bool]],
    client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pages of 5 keys, never a HEAD: seeks across many pages and past keys before a target."""
    bucket, complete = seeded
    monkeypatch.setattr(s3_manifests, "PAGE", 5)
    monkeypatch.setattr(s3_manifests, "SPARSE_TARGETS", 0)
    chosen = dict(sorted(complete.items())[:120:3])
    crowded = next(location for location, found in chosen.items() if found)
    for n in range(12):  # sort after "manifest.jso", before "manifest.json"
        client.put_object(
            Bucket=bucket, Key=f"{crowded[len(f's3://{bucket}/') :]}/manifest.jso{n:02d}"
        )
    store = S3ResultStore(bucket, "team/results")
    requests = Requests(store)
    assert store.has_manifests(chosen) == chosen
    assert requests.counts.get("HeadObject", 0) == 0
    assert requests.counts["ListObjectsV2"] > 120 * 3 // 5 // 3


def test_has_manifests_across_buckets_and_odd_names(client: Any, tmp_path: Path) -> None:
    """Other buckets, old layout, missing and impossible buckets: what has_manifest says."""
    elsewhere, here = make_bucket(client), make_bucket(client)
    old_store = S3ResultStore(elsewhere, "old/prefix")
    key = key_of("moved")
    folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
    moved = old_store.publish(key, ATTEMPT, folder, build_manifest(key, folder))
    client.put_object(Bucket=elsewhere, Key=f"{key}/{MANIFEST_NAME}", Body=b"{}")  # old layout
    client.put_object(Bucket=here, Key=MANIFEST_NAME, Body=b"{}")  # at a bucket's top
    store = S3ResultStore(here, "new")
    locations = [
        moved,
        moved + "/",
        old_store.location(key_of("never"), ATTEMPT),
        f"s3://{elsewhere}/{key}",
        f"s3://{elsewhere}",
        f"s3://{here}",
        f"s3://{here}/",
        store.location(key, ATTEMPT),
        f"s3://no-such-bucket-{uuid.uuid4().hex[:12]}/{key}",
        f"s3://None/{key}",
        f"s3://key:s3cret@{here}/{key}",
        f"s3:///{key}",
        f"file:///tmp/{key}",
        f"gs://{elsewhere}/{key}",
    ]
    expected = {location: store.has_manifest(location) for location in locations}
    assert [expected[location] for location in locations[:6]] == [True] * 2 + [False, True] * 2
    assert store.has_manifests(locations) == expected


def test_has_manifests_of_an_unreachable_s3_is_one_transient_store_error(
    aws_test_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed port: one StoreError line after the policy's attempts, no secret in it."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unreachable-s3cret-value")
    sleeps = Sleeps()
    store = S3ResultStore("some-bucket", "p", retry_policy=FAST, sleep=sleeps)
    locations = [store.location(key_of(n), ATTEMPT) for n in range(300)]
    with pytest.raises(StoreError, match="cannot reach S3") as raised:
        store.has_manifests(locations)
    message = str(raised.value)
    assert raised.value.transient is True
    assert "manifest" in message and "\n" not in message
    assert "unreachable-s3cret-value" not in message
    assert len(sleeps.waits) == FAST.attempts - 1  # the first chunk failed alone


# --- list_folder, file_sha256 and results verify: the requests they cost ------------------


def test_list_folder_pages_through_a_folder_and_asks_nothing_else(
    aws_test_env: dict[str, str], client: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of 3 keys: a folder of 10 objects is 4 LISTs, no HEAD and no GET."""
    monkeypatch.setattr(s3_contents, "LIST_PAGE", 3)
    store = S3ResultStore(bucket, "team/results")
    location = store.location(key_of("paged"), ATTEMPT)
    folder = f"team/results/{key_of('paged')}/{ATTEMPT}"
    names = {f"part-{n:02d}/data.bin" if n % 2 else f"file-{n:02d}.txt": n for n in range(10)}
    for name, size in names.items():
        client.put_object(Bucket=bucket, Key=f"{folder}/{name}", Body=b"x" * size)
    requests = Requests(store)
    assert store.list_folder(location) == names
    assert requests.counts == {"ListObjectsV2": 4}


def test_list_folder_leaves_out_folder_marker_objects(
    aws_test_env: dict[str, str], client: Any, bucket: str
) -> None:
    """Empty ``name/`` objects (as consoles make for folders) are not files of the folder."""
    store = S3ResultStore(bucket, "")
    folder = f"{key_of('markers')}/{ATTEMPT}"
    for name in (f"{folder}/", f"{folder}/sub/", f"{folder}/sub/a.txt"):
        client.put_object(Bucket=bucket, Key=name, Body=b"" if name.endswith("/") else b"a")
    assert store.list_folder(store.location(key_of("markers"), ATTEMPT)) == {"sub/a.txt": 1}


def test_verify_costs_a_list_and_a_manifest_get_per_folder(
    aws_test_env: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    """12 folders of 3 files: 12 LISTs and 12 GETs, no HEAD; deep adds one GET per file."""
    store = S3ResultStore(bucket, "team/results")
    folder = write_tree(tmp_path / "out", {"a.txt": b"a", "b/c.txt": b"cc", "d.bin": b"\0" * 9})
    targets = [
        Target(key, store.publish(key, ATTEMPT, folder, build_manifest(key, folder)))
        for key in (key_of(("verified", n)) for n in range(12))
    ]
    requests = Requests(store)
    verdicts = verify_folders(store, targets)
    assert [verdict.ok for verdict in verdicts] == [True] * 12
    assert [verdict.target for verdict in verdicts] == targets
    assert requests.counts == {"ListObjectsV2": 12, "GetObject": 12}
    requests.counts.clear()
    deep = verify_folders(store, targets, deep=True)
    assert [(verdict.ok, verdict.hashed) for verdict in deep] == [(True, 3)] * 12
    assert requests.counts == {"ListObjectsV2": 12, "GetObject": 12 + 36}


def test_verify_reports_a_bucket_gone_and_stops_at_an_unreachable_store(
    aws_test_env: dict[str, str], bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record's bucket deleted since: that record's row. No S3 at all: one error, no rows."""
    store = S3ResultStore(bucket, "team/results", retry_policy=FAST)
    folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
    kept = Target(key_of("kept"), store.publish(key_of("kept"), ATTEMPT, folder, {"files": []}))
    gone = Target(key_of("gone"), f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x/{ATTEMPT}")
    verdicts = verify_folders(store, [gone, kept])
    assert verdicts[0].problem is not None and "does not exist" in verdicts[0].problem
    assert verdicts[1].problem is None and [f.path for f in verdicts[1].extra] == ["a.txt"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    unreachable = S3ResultStore(bucket, "team/results", retry_policy=FAST)
    with pytest.raises(StoreError, match="cannot reach S3") as stopped:
        verify_folders(unreachable, [kept] * 40)
    assert stopped.value.transient


# --- errors ------------------------------------------------------------------------------


class Sleeps:
    """Records the waits a retry policy asks for, without waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_missing_bucket_fails_fast_naming_bucket_and_remedy(
    aws_test_env: dict[str, str], client: Any, tmp_path: Path
) -> None:
    """A bucket that does not exist: one StoreError line, no retry, no object anywhere.

    Nor a bucket: SeaweedFS would create one for a PUT (test_errors_name_what_is_missing),
    but a publish lists first, and stops at the LIST's ``NoSuchBucket``.
    """
    missing = f"missing-{uuid.uuid4().hex[:16]}"
    sleeps = Sleeps()
    store = S3ResultStore(missing, "p", sleep=sleeps)
    folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
    with pytest.raises(StoreError) as raised:
        store.publish(key_of("m"), ATTEMPT, folder, build_manifest(key_of("m"), folder))
    message = str(raised.value)
    assert f"s3://{missing}/p" in message
    assert "NoSuchBucket" in message
    assert "create the bucket or fix ANALYSIS_BUCKET" in message
    assert "\n" not in message
    assert sleeps.waits == []
    assert raised.value.transient is False  # the job is not tried again either
    with pytest.raises(StoreError, match="NoSuchBucket") as raised:
        store.read_manifest(store.location(key_of("m"), ATTEMPT))
    assert raised.value.transient is False
    with pytest.raises(StoreError, match="NoSuchBucket") as raised:
        list(store.list_published())
    assert raised.value.transient is False
    assert missing not in {entry["Name"] for entry in client.list_buckets()["Buckets"]}


def test_unreachable_endpoint_fails_after_bounded_retries(
    aws_test_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A closed port: StoreError after exactly the policy's attempts, naming the endpoint."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unreachable-s3cret-value")
    sleeps = Sleeps()
    store = S3ResultStore("some-bucket", "p", retry_policy=FAST, sleep=sleeps)
    folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
    with (
        caplog.at_level(logging.DEBUG, logger="analysis_wrapper"),
        pytest.raises(StoreError) as raised,
    ):
        store.publish(key_of("u"), ATTEMPT, folder, build_manifest(key_of("u"), folder))
    message = str(raised.value)
    assert f"cannot reach S3 at {endpoint}" in message
    assert "after 3 attempts" in message
    assert "AWS_ENDPOINT_URL" in message
    assert len(sleeps.waits) == FAST.attempts - 1
    assert all(0 <= wait <= FAST.max_delay_s for wait in sleeps.waits)
    assert raised.value.transient is True  # the job may be tried again later
    with pytest.raises(StoreError, match="cannot reach") as raised:
        store.has_manifest("s3://some-bucket/p/x")
    assert raised.value.transient is True
    assert "unreachable-s3cret-value" not in message + caplog.text


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [
        ("SlowDown", 503, True),
        ("InternalError", 500, True),
        ("ServiceUnavailable", 503, True),
        ("Throttling", 400, True),
        ("RequestTimeout", 400, True),
        ("Whatever", 502, True),
        ("TooManyRequests", 429, True),
        ("AccessDenied", 403, False),
        ("SignatureDoesNotMatch", 403, False),
        ("NoSuchBucket", 404, False),
        ("InvalidBucketName", 400, False),
        ("EntityTooLarge", 400, False),
    ],
)
def test_which_s3_errors_are_retried(code: str, status: int, transient: bool) -> None:
    """Throttling and 5xx are retried; denial, missing bucket and bad requests are not."""
    error = ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )
    assert is_transient(error) is transient


# --- wrong credentials on a server that checks them ---------------------------------------


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A moto S3 server that enforces IAM auth after its first 4 requests.

    moto accepts any key by default; with INITIAL_NO_AUTH_ACTION_COUNT it checks the
    signature against the keys it issued and the user's policies, as AWS does.
    """
    server = moto_process(
        "moto_server (auth enforced)", tmp_path_factory.mktemp("moto-auth") / "moto.log"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "4")
        server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_setup(auth_server: ServerProcess) -> dict[str, str]:
    """A bucket and a user allowed s3:* on it, made in the 4 unauthenticated requests."""
    endpoint = f"http://127.0.0.1:{auth_server.port}"
    bucket = make_bucket(s3_client(endpoint))
    iam = boto3.session.Session().client(
        "iam",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    iam.create_user(UserName="analysis")
    key = iam.create_access_key(UserName="analysis")["AccessKey"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName="analysis", PolicyName="s3", PolicyDocument=json.dumps(policy))
    return {
        "endpoint": endpoint,
        "bucket": bucket,
        "key_id": key["AccessKeyId"],
        "secret": key["SecretAccessKey"],
    }


def use_credentials(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, key_id: str, secret: str
) -> None:
    """Point boto3's default chain at ``endpoint`` with these credentials."""
    for name, value in TEST_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)


def test_right_credentials_publish_on_auth_server(
    auth_setup: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With the issued key and secret, the auth-enforcing server accepts a publish."""
    use_credentials(monkeypatch, auth_setup["endpoint"], auth_setup["key_id"], auth_setup["secret"])
    store = S3ResultStore(auth_setup["bucket"], "ok")
    folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
    location = store.publish(key_of("ok"), ATTEMPT, folder, build_manifest(key_of("ok"), folder))
    assert store.has_manifest(location) is True


def test_wrong_secret_fails_fast_with_one_line_and_no_secret(
    auth_setup: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wrong secret: HTTP 403 SignatureDoesNotMatch, no retry, the remedy, no secret shown."""
    wrong = "wrong-" + auth_setup["secret"][6:]
    use_credentials(monkeypatch, auth_setup["endpoint"], auth_setup["key_id"], wrong)
    sleeps = Sleeps()
    store = S3ResultStore(auth_setup["bucket"], "denied", sleep=sleeps)
    folder = write_tree(tmp_path / "out", {"a.txt": b"a"})
    with (
        caplog.at_level(logging.DEBUG, logger="analysis_wrapper"),
        pytest.raises(StoreError) as raised,
    ):
        store.publish(key_of("d"), ATTEMPT, folder, build_manifest(key_of("d"), folder))
    message = str(raised.value)
    assert f"results store s3://{auth_setup['bucket']}/denied" in message
    assert "SignatureDoesNotMatch" in message or "HTTP 403" in message
    assert "check the AWS credentials" in message
    assert "\n" not in message
    assert sleeps.waits == []
    assert raised.value.transient is False
    for secret in (wrong, auth_setup["secret"]):
        assert secret not in message
        assert secret not in caplog.text
    with pytest.raises(StoreError, match="access denied"):
        store.has_manifest(f"s3://{auth_setup['bucket']}/ok/{key_of('ok')}/{ATTEMPT}")
    reader = s3_client(auth_setup["endpoint"], auth_setup["key_id"], auth_setup["secret"])
    assert object_keys(reader, auth_setup["bucket"], "denied/") == []


def test_unknown_key_id_is_denied(
    auth_setup: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An access key the server never issued: InvalidAccessKeyId, named with the remedy."""
    use_credentials(monkeypatch, auth_setup["endpoint"], "AKIANOTISSUED0000000", "testing")
    store = S3ResultStore(auth_setup["bucket"], "x")
    with pytest.raises(
        StoreError, match=r"InvalidAccessKeyId.*check the AWS credentials"
    ) as raised:
        store.read_manifest(store.location(key_of("x"), ATTEMPT))
    assert raised.value.transient is False


def test_has_manifests_where_listing_is_denied_heads_each_as_has_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user who may read objects but not list the bucket gets has_manifest's answers."""
    server = moto_process("moto_server (no s3:ListBucket)", tmp_path / "moto.log")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "5")
        server.start()
    try:
        endpoint = f"http://127.0.0.1:{server.port}"
        bucket = make_bucket(s3_client(endpoint))
        present = f"r/{key_of('readable')}/{ATTEMPT}"
        s3_client(endpoint).put_object(Bucket=bucket, Key=f"{present}/{MANIFEST_NAME}", Body=b"{}")
        iam = boto3.session.Session().client(
            "iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )  # fmt: skip
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="reader", PolicyName="get", PolicyDocument=json.dumps(policy))
        use_credentials(monkeypatch, endpoint, key["AccessKeyId"], key["SecretAccessKey"])
        store = S3ResultStore(bucket, "r")
        with pytest.raises(StoreError, match="access denied"):
            list(store.list_published())  # listing is refused indeed
        locations = [f"s3://{bucket}/{present}", store.location(key_of("absent"), ATTEMPT)]
        expected = {location: store.has_manifest(location) for location in locations}
        assert expected[locations[0]] is True
        assert store.has_manifests(locations) == expected
    finally:
        server.stop()


# --- the S3 server stops in the middle of an upload ---------------------------------------


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A moto server of this test's own, which it may stop and start."""
    server = moto_process("moto_server (private)", tmp_path / "moto.log")
    server.start()
    yield server
    server.stop()


def test_server_stopped_mid_upload_then_republish_completes(
    private_server: ServerProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """S3 stops mid-upload: StoreError, the earlier attempt intact; back up: a retry completes."""
    endpoint = f"http://127.0.0.1:{private_server.port}"
    use_credentials(monkeypatch, endpoint, "testing", "testing")
    admin = s3_client(endpoint)
    bucket = make_bucket(admin)
    store = S3ResultStore(bucket, "r", retry_policy=FAST)
    key = key_of("fault")
    earlier = write_tree(tmp_path / "earlier", {"old.txt": b"old"})
    store.publish(key, "earlier", earlier, build_manifest(key, earlier))
    files = {f"f{n:03d}.bin": os.urandom(256 * 1024) for n in range(200)}
    folder = write_tree(tmp_path / "out", files)
    manifest = build_manifest(key, folder)

    seen: list[str] = []

    def stop_when_files_arrive() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            names = object_keys(admin, bucket, f"r/{key}/")
            if sum(name.endswith(".bin") for name in names) >= 10:
                seen.extend(names)
                private_server.stop()
                return
            time.sleep(0.01)

    stopper = threading.Thread(target=stop_when_files_arrive)
    stopper.start()
    try:
        with pytest.raises(StoreError, match="cannot reach S3") as raised:
            store.publish(key, ATTEMPT, folder, manifest)
    finally:
        stopper.join()
    assert "after 3 attempts" in str(raised.value)
    assert raised.value.transient is True
    assert seen, "the upload ended before the server was stopped"
    assert f"r/{key}/{ATTEMPT}/{MANIFEST_NAME}" not in seen
    assert f"r/{key}/earlier/{MANIFEST_NAME}" in seen  # another attempt: never touched
    assert sum(name.endswith(".bin") for name in seen) < len(files)

    private_server.start()  # empty again: moto keeps objects in memory
    make_bucket(admin, bucket)
    location = store.location(key, ATTEMPT)
    assert store.has_manifest(location) is False
    assert store.publish(key, ATTEMPT, folder, manifest) == location
    assert store.has_manifest(location) is True
    assert store.read_manifest(location) == manifest
    assert len(object_keys(admin, bucket, f"r/{key}/{ATTEMPT}/")) == len(files) + 1


def test_outage_within_the_retry_budget_is_ridden_out(
    private_server: ServerProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The server is down at the first request and back before the retry: publish succeeds."""
    endpoint = f"http://127.0.0.1:{private_server.port}"
    use_credentials(monkeypatch, endpoint, "testing", "testing")
    admin = s3_client(endpoint)
    bucket = f"test-{uuid.uuid4().hex[:24]}"
    waits: list[float] = []

    def restart_server(seconds: float) -> None:
        waits.append(seconds)
        if private_server.process is not None and private_server.process.poll() is not None:
            private_server.start()
            make_bucket(admin, bucket)

    private_server.stop()
    store = S3ResultStore(bucket, "r", retry_policy=FAST, sleep=restart_server)
    key = key_of("outage")
    folder = write_tree(tmp_path / "out", {"a.txt": b"a", "b/c.txt": b"c"})
    manifest = build_manifest(key, folder)
    location = store.publish(key, ATTEMPT, folder, manifest)
    assert location == store.location(key, ATTEMPT)
    assert len(waits) == 1
    assert store.read_manifest(location) == manifest


# --- the runner tries a job again only after a transient S3 failure ----------------------


class CountedParameters(AnalysisParameters):
    analysis_name: str = "s3-retries"


def runs_of_one_job(folder: Path, result_store: S3ResultStore) -> tuple[int, int]:
    """Run one job publishing to ``result_store`` (two retries allowed).

    Returns how many times its analysis ran and the tries its claim counted.
    """
    calls: list[int] = []

    def analysis(job: Job, parameters: CountedParameters, results_dir: Path) -> dict[str, Any]:
        calls.append(1)
        (results_dir / "out.txt").write_text("out")
        return {}

    (folder / "data" / "job_dict").mkdir(parents=True)
    (folder / "data" / "job_dict" / "job.json").write_text('{"s3_location": ["s3://b/a"]}')
    context = RunContext(
        analysis=Analysis(analysis, CountedParameters),
        options=RunOptions(folder / "data", folder / "results", dry_run=False, transient_retries=2),
        code=CodeIdentity(url="https://example.org/repo", version="0" * 40),
        record_store=SqliteRecordStore(folder / "records.sqlite", "t"),
        result_store=result_store,
        fixed_parameters={},
        command_line_parameters={},
        experimenters=("test@example.org",),
    )
    (result,) = execute_run(context).jobs
    assert result.status.value == "failed" and result.key is not None
    claim = context.record_store.get_claims([result.key])[result.key]  # type: ignore[attr-defined]
    return len(calls), claim.attempts


def test_the_runner_tries_a_job_again_only_when_s3_failed_transiently(
    aws_test_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A missing bucket fails the job at its first try; an unreachable S3 gets every try.

    The tries are the publish's: the analysis, which succeeded, runs once.
    """
    without_retry_waits(monkeypatch)
    missing = S3ResultStore(f"missing-{uuid.uuid4().hex[:16]}", "p", sleep=Sleeps())
    assert runs_of_one_job(tmp_path / "missing", missing) == (1, 1)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    unreachable = S3ResultStore("some-bucket", "p", retry_policy=FAST, sleep=Sleeps())
    assert runs_of_one_job(tmp_path / "unreachable", unreachable) == (1, 3)


# --- end to end: the capsule publishing to S3 -------------------------------------------


def test_capsule_run_publishes_to_s3_and_skips_on_rerun(
    capsule: CapsuleCopy, client: Any, bucket: str, aws_test_env: dict[str, str], tmp_path: Path
) -> None:
    """The example publishes to <prefix>/<key>/<attempt>/; a lost manifest reruns elsewhere.

    Re-runs skip; a key whose manifest was deleted runs again into a new attempt folder.
    """
    data = tmp_path / "data"
    shutil.copytree(capsule.data, data)
    for path in sorted(data.glob("job_dict/*.json"))[2:]:
        path.unlink()
    args = ("--dry_run", "0", "--input_directory", str(data))
    env = {**aws_test_env, "ANALYSIS_BUCKET": f"s3://{bucket}/analysis/v1"}

    def run(expected: tuple[int, int, int]) -> dict[str, Any]:
        done = capsule.run(*args, env=env)
        assert done.returncode == 0, done.stderr
        summary: dict[str, Any] = json.loads((capsule.results / "run_summary.json").read_text())
        assert (summary["ran"], summary["skipped"], summary["failed"]) == expected
        return summary

    def attempts(key: str) -> list[str]:
        names = object_keys(client, bucket, f"analysis/v1/{key}/")
        return sorted({name.split("/")[3] for name in names})

    summary = run((2, 0, 0))
    read_tree = tree_reader(client)
    for job in summary["jobs"]:
        [attempt] = attempts(job["key"])
        location = f"s3://{bucket}/analysis/v1/{job['key']}/{attempt}"
        published = read_tree(location)
        manifest = json.loads(published[MANIFEST_NAME])
        assert sorted(published) == sorted([MANIFEST_NAME, *(f["path"] for f in manifest["files"])])
        assert json.loads(published["metadata.nd.json"])["location"] == location
    assert not (capsule.store / "results").exists()
    run((0, 2, 0))
    orphan = sorted(job["key"] for job in summary["jobs"])[0]
    [lost] = attempts(orphan)
    client.delete_object(Bucket=bucket, Key=f"analysis/v1/{orphan}/{lost}/{MANIFEST_NAME}")
    third = run((1, 1, 0))
    assert [job["key"] for job in third["jobs"] if job["status"] == "succeeded"] == [orphan]
    [new] = [attempt for attempt in attempts(orphan) if attempt != lost]
    store = S3ResultStore(bucket, "analysis/v1")
    assert store.has_manifest(f"s3://{bucket}/analysis/v1/{orphan}/{new}") is True
    assert store.has_manifest(f"s3://{bucket}/analysis/v1/{orphan}/{lost}") is False
