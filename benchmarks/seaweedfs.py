"""SeaweedFS (``weed mini``), a production S3 server, for the benchmarks: start it, fill it.

``weed mini`` runs master, volume server, filer and S3 gateway in one process. Every
listener gets a free loopback port (two instances, or one beside a test run, never
collide), and its Unix sockets go into the work folder, not /tmp; WebDAV, the admin
UI, Iceberg and Lance are off; so is telemetry. S3 checks
signatures with the AWS variables' credentials. Objects are put through its S3 API,
signed by botocore's own SigV4 signer as boto3 would put them (the body ``{}``, its CRC32
checksum), many at once on kept-alive connections: through a whole boto3 client the
client's request building and parsing cost more CPU than the server spends on each PUT.
"""

from __future__ import annotations

import base64
import http.client
import os
import threading
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

from botocore.auth import S3SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from servers import SERVERS_BIN, ServerProcess, free_port

BODY = b"{}"


def weed_process(work: Path, bucket: str, region: str) -> ServerProcess:
    """SeaweedFS on free loopback ports, creating ``bucket`` at start (not started yet)."""
    data = work / "weed"
    data.mkdir(exist_ok=True)
    if not (SERVERS_BIN / "weed").exists():
        raise SystemExit(f"{SERVERS_BIN / 'weed'} is missing: run `make bench` (it installs it)")

    def command(port: int) -> list[str]:
        ports = {
            name: free_port()
            for name in (
                "s3.port.grpc", "master.port", "master.port.grpc", "volume.port",
                "volume.port.grpc", "filer.port", "filer.port.grpc", "admin.port",
                "admin.port.grpc",
            )
        }  # fmt: skip
        return [  # env: weed puts its Unix sockets in TMPDIR (the work folder, removed after)
            "/usr/bin/env", f"TMPDIR={data}", str(SERVERS_BIN / "weed"), "mini", f"-dir={data}",
            f"-s3.localSocket={data}/s3.sock", f"-filer.localSocket={data}/filer.sock",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={port}", "-s3.port.iceberg=0",
            "-s3.port.lance=0", "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
            f"-bucket={bucket}", *(f"-{name}={value}" for name, value in ports.items()),
        ]  # fmt: skip

    def ready(port: int) -> None:
        _put(http.client.HTTPConnection("127.0.0.1", port, timeout=5), bucket, "ready", region)

    return ServerProcess("weed mini", command, ready, work / "weed.log")


def seed(port: int, bucket: str, keys: Iterable[str], region: str, threads: int = 16) -> None:
    """Put every key (body ``{}``) into ``bucket`` through the S3 API, ``threads`` at once."""
    local = threading.local()

    def put(key: str) -> None:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        _put(local.connection, bucket, key, region)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, keys))


def _put(connection: http.client.HTTPConnection, bucket: str, key: str, region: str) -> None:
    """One PutObject, signed by botocore's SigV4 signer (its CRC32 checksum as boto3 sends)."""
    path = f"/{bucket}/{quote(key, safe='/~')}"
    request = AWSRequest(
        method="PUT",
        url=f"http://{connection.host}:{connection.port}{path}",
        data=BODY,
        headers={
            "x-amz-checksum-crc32": base64.b64encode(zlib.crc32(BODY).to_bytes(4, "big")).decode()
        },
    )
    credentials = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    S3SigV4Auth(credentials, "s3", region).add_auth(request)
    connection.request("PUT", path, body=BODY, headers=dict(request.headers.items()))
    reply = connection.getresponse()
    text = reply.read()
    if reply.status != 200:
        raise RuntimeError(f"PUT {path}: HTTP {reply.status} {text[:200]!r}")
