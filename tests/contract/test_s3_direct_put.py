"""Direct PUTs (PutObject from a boto3 client's parts) on moto and SeaweedFS, as boto3 puts.

Each test runs on both servers. A direct PUT must leave the same object as
``put_object`` does: the bytes, the key (spaces, non-ASCII, ``+``, ``%``), the
Content-Type and the CRC32 checksum. That holds for empty files, and for files
streamed from disk rather than read whole. A publish sends its small files directly and
only the manifest through ``put_object``. A refusal for good is sent again by
``put_object`` and settles the rest of the upload on boto3. A throttled one is raised
for the caller's retries, not sent again. The throttling and the redirect come from a
stand-in HTTP server on loopback, since neither server can be made to answer them.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import threading
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from analysis_wrapper.stores.manifest import MANIFEST_NAME, build_manifest
from analysis_wrapper.stores.s3.client import is_transient, new_client
from analysis_wrapper.stores.s3.direct_put import IN_MEMORY_MAX, DirectPuts
from analysis_wrapper.stores.s3.store import S3ResultStore, TransferSettings
from contract.result_store_contract import ATTEMPT, key_of, write_tree
from servers import TEST_AWS_ENV, on_each_s3_server

REGION = TEST_AWS_ENV["AWS_DEFAULT_REGION"]

s3_server, s3_endpoint = on_each_s3_server()


@pytest.fixture
def client(aws_test_env: dict[str, str]) -> Any:
    """A store's kind of client (:func:`new_client`) to the module's S3 server."""
    return new_client(max_pool_connections=8)


@pytest.fixture
def bucket(client: Any) -> str:
    name = f"direct-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


@pytest.fixture
def direct(client: Any, bucket: str) -> DirectPuts:
    puts = DirectPuts.for_bucket(client, bucket)
    assert puts is not None, "the pinned botocore has the parts direct puts use"
    return puts


def put_object_calls(client: Any) -> list[str]:
    """The keys of every ``put_object`` call ``client`` makes from now on."""
    keys: list[str] = []
    client.meta.events.register(
        "before-call.s3.PutObject", lambda params, **_: keys.append(params["url_path"])
    )
    return keys


def crc32_of(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_the_bucket_url_is_the_clients_path_style_endpoint(
    direct: DirectPuts, bucket: str, s3_endpoint: str
) -> None:
    """A custom endpoint on an IP address: path style, as boto3 addresses it."""
    assert direct.bucket_url == f"{s3_endpoint}/{bucket}"
    assert direct.region == REGION


@pytest.mark.parametrize(
    "key",
    ["plain.txt", "a folder/with space.txt", "ünïcode/名前.csv", "plus+percent%25&=;,'!().bin"],
)
def test_a_direct_put_leaves_the_object_put_object_leaves(
    client: Any, bucket: str, direct: DirectPuts, tmp_path: Path, key: str
) -> None:
    """Same key, bytes, Content-Type, ETag and CRC32 as boto3's ``put_object`` of the file."""
    data = os.urandom(3000)
    path = tmp_path / "file"
    path.write_bytes(data)
    calls = put_object_calls(client)
    direct.put(f"direct/{key}", path, "text/csv")
    assert calls == [], "the direct PUT was refused and sent again by put_object"
    with path.open("rb") as body:
        client.put_object(Bucket=bucket, Key=f"boto3/{key}", Body=body, ContentType="text/csv")
    heads = {
        way: client.head_object(Bucket=bucket, Key=f"{way}/{key}", ChecksumMode="ENABLED")
        for way in ("direct", "boto3")
    }
    listed = [entry["Key"] for entry in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(listed) == [f"boto3/{key}", f"direct/{key}"]
    for field in ("ContentLength", "ContentType", "ETag", "ChecksumCRC32"):
        assert heads["direct"][field] == heads["boto3"][field], field
    assert heads["direct"]["ChecksumCRC32"] == crc32_of(data)
    got = client.get_object(Bucket=bucket, Key=f"direct/{key}")["Body"].read()
    assert got == data


@pytest.mark.parametrize("size", [0, 1, IN_MEMORY_MAX, IN_MEMORY_MAX + 1, 3 * IN_MEMORY_MAX + 7])
def test_files_read_whole_or_streamed_arrive_intact(
    client: Any, bucket: str, direct: DirectPuts, tmp_path: Path, size: int
) -> None:
    """Up to IN_MEMORY_MAX a file is read whole, above it streamed; either way intact."""
    data = os.urandom(size)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    calls = put_object_calls(client)
    direct.put("file.bin", path)
    assert calls == [], "the direct PUT was refused and sent again by put_object"
    head = client.head_object(Bucket=bucket, Key="file.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    assert head["ChecksumCRC32"] == crc32_of(data)
    assert client.get_object(Bucket=bucket, Key="file.bin")["Body"].read() == data


def test_a_publish_puts_small_files_directly_and_the_manifest_by_put_object(
    client: Any, bucket: str, tmp_path: Path
) -> None:
    """20 files: 20 direct PUTs and 1 ``put_object`` (the manifest); without, 21 of them."""
    files = {f"part{n % 3}/file{n:02d}.txt": f"file {n}\n".encode() * (n + 1) for n in range(20)}
    folder = write_tree(tmp_path / "out", files)
    for direct_puts, expected in ((True, 1), (False, 21)):
        store = S3ResultStore(bucket, "runs", transfer=TransferSettings(direct_puts=direct_puts))
        calls = put_object_calls(store._client())
        key = key_of(f"direct {direct_puts}")
        manifest = build_manifest(key, folder)
        location = store.publish(key, ATTEMPT, folder, manifest)
        assert len(calls) == expected, calls
        assert store.read_manifest(location) == manifest
        for name, data in files.items():
            object_key = f"runs/{key}/{ATTEMPT}/{name}"
            assert client.get_object(Bucket=bucket, Key=object_key)["Body"].read() == data
        assert calls[-1].endswith(MANIFEST_NAME)


# --- what the direct PUT does with answers neither server gives on demand ------------------


class StandIn(http.server.BaseHTTPRequestHandler):
    """Answers every PUT with the status and S3 error XML of its server's ``answer``."""

    def do_PUT(self) -> None:
        server: Any = self.server
        length = int(self.headers.get("Content-Length", 0))
        server.bodies.append(self.rfile.read(length))
        status, code = server.answer
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{code} from the stand-in</Message></Error>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[Any]:
    """A loopback HTTP server answering PUTs as ``server.answer`` says, keeping their bodies."""
    server: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def puts_through(stand_in: Any, answer: tuple[int, str], client: Any, bucket: str) -> DirectPuts:
    """Direct puts into ``bucket`` sent to ``stand_in``, which answers each with ``answer``."""
    stand_in.answer = answer
    url = f"http://127.0.0.1:{stand_in.server_address[1]}/{bucket}"
    return DirectPuts(client, bucket, url, REGION)


def test_a_throttled_direct_put_is_raised_for_retries_not_sent_again(
    client: Any, bucket: str, stand_in: Any, tmp_path: Path
) -> None:
    """503 SlowDown: the ClientError boto3 raises (transient); no ``put_object`` follows."""
    puts = puts_through(stand_in, (503, "SlowDown"), client, bucket)
    calls = put_object_calls(client)
    path = tmp_path / "a.txt"
    path.write_bytes(b"throttled")
    with pytest.raises(ClientError) as raised:
        puts.put("a.txt", path)
    assert raised.value.response["Error"]["Code"] == "SlowDown"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert is_transient(raised.value)
    assert stand_in.bodies == [b"throttled"]
    assert calls == []
    assert puts.through_boto3 is False
    assert "Contents" not in client.list_objects_v2(Bucket=bucket)


def test_a_refused_direct_put_goes_to_put_object_and_the_rest_follow(
    client: Any, bucket: str, stand_in: Any, tmp_path: Path
) -> None:
    """301 PermanentRedirect: ``put_object`` sends it (to the real server) and the next too."""
    puts = puts_through(stand_in, (301, "PermanentRedirect"), client, bucket)
    calls = put_object_calls(client)
    for name in ("first.txt", "second.txt"):
        (tmp_path / name).write_bytes(name.encode())
        puts.put(name, tmp_path / name, "text/plain")
    assert stand_in.bodies == [b"first.txt"]  # the second went straight to boto3
    assert calls == ["/first.txt", "/second.txt"]
    assert puts.through_boto3 is True
    for name in ("first.txt", "second.txt"):
        got = client.get_object(Bucket=bucket, Key=name)
        assert got["Body"].read() == name.encode()
        assert got["ContentType"] == "text/plain"


def test_a_put_into_a_missing_bucket_answers_as_put_object_does(
    client: Any, s3_server: Any, tmp_path: Path
) -> None:
    """moto: the direct PUT's 404, then ``put_object``'s own NoSuchBucket is raised.

    SeaweedFS creates the bucket on a PUT, direct or not (``test_s3_store``'s
    ``test_errors_name_what_is_missing``); the object is then there.
    """
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    puts = DirectPuts.for_bucket(client, missing)
    assert puts is not None
    path = tmp_path / "a.txt"
    path.write_bytes(b"a")
    if s3_server.name == "weed mini":
        puts.put("a.txt", path)
        assert client.get_object(Bucket=missing, Key="a.txt")["Body"].read() == b"a"
        return
    calls = put_object_calls(client)
    with pytest.raises(ClientError) as raised:
        puts.put("a.txt", path)
    assert raised.value.operation_name == "PutObject"
    assert raised.value.response["Error"]["Code"] == "NoSuchBucket"
    assert not is_transient(raised.value)
    assert calls == ["/a.txt"]  # put_object was asked, and its answer stands
    assert puts.through_boto3 is False
