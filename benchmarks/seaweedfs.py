"""SeaweedFS (``weed mini``), a production S3 server, for the benchmarks: start it, fill it.

The server is started by the tests' own helper (:func:`servers.weed_process`: every
listener on a free loopback port, its sockets in the work folder, signatures checked
with the AWS variables' credentials). Objects are put through its S3 API, signed by
botocore's own SigV4 signer as boto3 would put them (the body ``{}``, its CRC32
checksum), many at once on kept-alive connections: through a whole boto3 client the
client's request building and parsing cost more CPU than the server spends on each PUT.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from servers import SERVERS_BIN, ServerProcess, signed_put
from servers import weed_process as _weed_process

BODY = b"{}"


def credentials() -> tuple[str, str]:
    """The access key id and secret of the AWS variables (the benchmark's own)."""
    return os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]


def weed_process(work: Path, bucket: str, region: str) -> ServerProcess:
    """SeaweedFS on free loopback ports, creating ``bucket`` at start (not started yet)."""
    if not (SERVERS_BIN / "weed").exists():
        raise SystemExit(f"{SERVERS_BIN / 'weed'} is missing: run `make bench` (it installs it)")
    return _weed_process(work, bucket, credentials(), region)


def seed(
    port: int,
    bucket: str,
    keys: Iterable[str],
    region: str,
    threads: int = 16,
    body: Callable[[str], bytes] | None = None,
) -> None:
    """Put every key into ``bucket`` through the S3 API, ``threads`` at once.

    Each object's body is ``body(key)``, or ``{}`` without ``body``.
    """
    local = threading.local()
    signer = credentials()

    def put(key: str) -> None:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        signed_put(
            local.connection, bucket, key, BODY if body is None else body(key), signer, region
        )

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, keys))
