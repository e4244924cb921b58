"""SeaweedFS (``weed mini``), a production S3 server, for the benchmarks: start it, fill it.

``weed mini`` runs master, volume server, filer and S3 gateway in one process. Every
listener gets a free loopback port (two instances, or one beside a test run, never
collide), and its Unix sockets go into the work folder, not /tmp; WebDAV, the admin
UI, Iceberg and Lance are off; so is telemetry. S3 checks
signatures with the AWS variables' credentials. Objects are put through its S3 API,
signed, as boto3 would put them (the body ``{}``, its CRC32 checksum), many at once on
kept-alive connections: through boto3 the client's signing and parsing cost more CPU
than the server spends on each PUT.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import os
import threading
import time
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

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
    """One signed PutObject (SigV4, unsigned payload, CRC32 checksum as boto3 sends)."""
    path = f"/{bucket}/{quote(key, safe='/~')}"
    now = time.gmtime()
    stamp, day = time.strftime("%Y%m%dT%H%M%SZ", now), time.strftime("%Y%m%d", now)
    headers = {
        "host": f"{connection.host}:{connection.port}",
        "x-amz-checksum-crc32": base64.b64encode(zlib.crc32(BODY).to_bytes(4, "big")).decode(),
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
        "x-amz-date": stamp,
    }
    signed = ";".join(headers)
    lines = [f"{name}:{value}" for name, value in headers.items()]
    canonical = "\n".join(["PUT", path, "", *lines, "", signed, "UNSIGNED-PAYLOAD"])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    signing_key = f"AWS4{os.environ['AWS_SECRET_ACCESS_KEY']}".encode()
    for part in (day, region, "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={os.environ['AWS_ACCESS_KEY_ID']}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    del headers["host"]
    connection.request("PUT", path, body=BODY, headers=headers)
    reply = connection.getresponse()
    text = reply.read()
    if reply.status != 200:
        raise RuntimeError(f"PUT {path}: HTTP {reply.status} {text[:200]!r}")
