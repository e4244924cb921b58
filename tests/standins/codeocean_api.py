"""A local stand-in for the Code Ocean REST API, spoken to by the real ``codeocean`` SDK.

Plain HTTP on 127.0.0.1, in a thread of the test process. It serves the routes the
wrapper reads (``GET /api/v1/{computations,capsules,pipelines,data_assets}/{id}``),
checks HTTP Basic credentials the way Code Ocean does (user = token, empty password),
answers 401 for a wrong token and 404 for an unknown id with a JSON ``message``, and
can emulate a server error or a server too old for the SDK's ``Min-Server-Version``.
Every request is recorded (method, path, headers) so tests can check where the token
went. :func:`seed` fills it with responses shaped as Code Ocean returns them.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_PREFIX = "/api/v1/"
ROUTES = ("computations", "capsules", "pipelines", "data_assets")


@dataclass
class Recorded:
    """One request the stand-in received."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class CodeOceanStandIn:
    """The stand-in's state: what it serves, to whom, and what it was asked.

    Parameters
    ----------
    token : str
        The only API token it accepts.
    server_version : str or None
        Emulate a server of this version: a ``Min-Server-Version`` header asking for a
        newer one is refused with 400, as older Code Ocean servers do.
    """

    token: str
    server_version: str | None = None
    resources: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {route: {} for route in ROUTES}
    )
    failures: dict[str, int] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to put in ``CODEOCEAN_DOMAIN``."""
        assert self._server is not None, "start() the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, route: str, document: dict[str, Any]) -> None:
        """Serve ``document`` at ``/api/v1/<route>/<document['id']>``."""
        self.resources[route][document["id"]] = document

    def fail(self, route: str, resource_id: str, status: int) -> None:
        """Answer ``status`` for one resource (e.g. 500 for a failed lookup)."""
        self.failures[f"{route}/{resource_id}"] = status

    def start(self) -> CodeOceanStandIn:
        """Listen on a free port of 127.0.0.1, in a daemon thread."""
        standin = self

        class Handler(_Handler):
            state = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; later requests are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> CodeOceanStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


class _Handler(BaseHTTPRequestHandler):
    state: CodeOceanStandIn

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: pytest captures nothing useful from an access log."""

    def do_GET(self) -> None:
        """Serve one resource, after the checks Code Ocean makes."""
        state = self.state
        state.requests.append(Recorded("GET", self.path, dict(self.headers.items())))
        if not self._authorised():
            self._reply(401, {"message": "Unauthorized: invalid or missing access token"})
            return
        wanted = self.headers.get("Min-Server-Version")
        if (
            wanted
            and state.server_version
            and _version_tuple(wanted) > _version_tuple(state.server_version)
        ):
            self._reply(
                400,
                {
                    "message": f"Client requires server version {wanted}; "
                    f"this server is {state.server_version}"
                },
            )
            return
        route, _, resource_id = self.path.removeprefix(API_PREFIX).partition("/")
        resource_id = resource_id.split("?", 1)[0]
        if not self.path.startswith(API_PREFIX) or route not in ROUTES:
            self._reply(404, {"message": "Not found"})
            return
        status = state.failures.get(f"{route}/{resource_id}")
        if status is not None:
            self._reply(status, {"message": "Internal server error"})
            return
        document = state.resources[route].get(resource_id)
        if document is None:
            self._reply(404, {"message": f"{route.rstrip('s')} {resource_id} not found"})
            return
        self._reply(200, document)

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme != "Basic":
            return False
        try:
            user, _, _password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return user == self.state.token

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# --- realistic seed data ----------------------------------------------------------------
# Times are unix seconds. The release capsule has releases 1.0, 2.0 and 2.1 before the
# runs start and 2.2 after, so a run of major 2 ran 2.1.

RUN_STARTED = 1_764_000_000
OWNER = "3f2b9a7e-64c1-4d8a-9a3e-2f1c0d6b7e55"
OWNER_EMAIL = "owner@example.org"

EDITABLE_CAPSULE_ID = "9f19f5fc-d91e-4d82-8bee-176783e1ca63"
RELEASE_CAPSULE_ID = "4e1d3c2b-7a6f-4b8e-9d0c-1a2b3c4d5e6f"
DISPATCH_CAPSULE_ID = "a4b6e4fc-65b3-45f3-affc-6a0bf387d187"
PIPELINE_ID = "0b7c9d2e-3f4a-4b5c-8d6e-7f8a9b0c1d2e"
CAPSULE_NAME = "aind-analysis-wrapper"
PIPELINE_NAME = "Unit filtering pipeline"

CAPSULE_RUN = "c0a1b2c3-d4e5-4f60-8a7b-9c0d1e2f3a4b"
RELEASE_RUN = "d1b2c3d4-e5f6-4a70-8b8c-0d1e2f3a4b5c"
PIPELINE_RUN = "e2c3d4e5-f6a7-4b80-9c9d-1e2f3a4b5c6d"
UNRELEASED_PIPELINE_RUN = "f3d4e5f6-a7b8-4c90-8dae-2f3a4b5c6d7e"
AMBIGUOUS_PIPELINE_RUN = "a4e5f6a7-b8c9-4da0-9ebf-3a4b5c6d7e8f"
FAILING_RUN = "b5f6a7b8-c9d0-4eb0-8fc0-4b5c6d7e8f90"

S3_ASSET_ID = "8351747a-f472-43f9-a53b-cd1f9aa35288"
S3_ASSET_BUCKET = "codeocean-s3datasetsbucket-1u41qdg42ur9"
INTERNAL_ASSET_ID = "50fa9416-4e21-482f-8901-889322a87ae3"


def _computation(computation_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": computation_id,
        "created": RUN_STARTED,
        "name": "Run 4544861",
        "owner": OWNER,
        "owner_email": OWNER_EMAIL,
        "run_time": 42,
        "state": "running",
        "cloud_workstation": False,
        "has_results": False,
        **extra,
    }


def _process(name: str, capsule_id: str, version: int | None) -> dict[str, Any]:
    process: dict[str, Any] = {
        "name": name,
        "capsule_id": capsule_id,
        "public": False,
        "parameters": [{"name": "dry run", "param_name": "dry_run", "value": "0"}],
    }
    if version is not None:
        process["version"] = version
    return process


def seed(standin: CodeOceanStandIn) -> CodeOceanStandIn:
    """Fill the stand-in with a capsule run, a release run and pipeline runs."""
    assets = [
        {"id": S3_ASSET_ID, "mount": "ecephys_612345_2025-03-14_10-02-11"},
        {"id": INTERNAL_ASSET_ID, "mount": "analysis_parameters"},
    ]
    standin.add("computations", _computation(CAPSULE_RUN, data_assets=assets))
    standin.add("computations", _computation(RELEASE_RUN, version=2, data_assets=assets[:1]))
    wrapper = "capsule_aind_analysis_wrapper_2"
    dispatch = _process("capsule_aind_analysis_job_dispatch_1", DISPATCH_CAPSULE_ID, 1)
    standin.add(
        "computations",
        _computation(
            PIPELINE_RUN,
            processes=[dispatch, _process(wrapper, RELEASE_CAPSULE_ID, 2)],
            data_assets=assets[:1],
            nextflow_profile="default",
        ),
    )
    standin.add(
        "computations",
        _computation(
            UNRELEASED_PIPELINE_RUN,
            processes=[dispatch, _process(wrapper, EDITABLE_CAPSULE_ID, None)],
        ),
    )
    standin.add(
        "computations",
        _computation(
            AMBIGUOUS_PIPELINE_RUN,
            processes=[
                _process(wrapper, RELEASE_CAPSULE_ID, 1),
                _process("capsule_aind_analysis_wrapper_3", RELEASE_CAPSULE_ID, 2),
            ],
        ),
    )
    standin.add("computations", _computation(FAILING_RUN))
    standin.fail("computations", FAILING_RUN, 500)
    standin.add(
        "capsules",
        {
            "id": EDITABLE_CAPSULE_ID,
            "created": RUN_STARTED - 86_400 * 90,
            "name": CAPSULE_NAME,
            "status": "non_release",
            "owner": OWNER,
            "owner_email": OWNER_EMAIL,
            "slug": "7739912",
            "cloned_from_url": "https://github.com/AllenNeuralDynamics/aind-analysis-wrapper",
            "release_capsule": RELEASE_CAPSULE_ID,
            "tags": ["analysis"],
        },
    )
    standin.add(
        "capsules",
        {
            "id": RELEASE_CAPSULE_ID,
            "created": RUN_STARTED - 86_400 * 60,
            "name": CAPSULE_NAME,
            "status": "release",
            "owner": OWNER,
            "slug": "4544861",
            "original_capsule": {"id": EDITABLE_CAPSULE_ID, "major_version": 2},
            "cloned_from_url": "https://github.com/AllenNeuralDynamics/aind-analysis-wrapper",
            "versions": [
                {"major_version": 1, "minor_version": 0, "release_time": RUN_STARTED - 5_000_000},
                {"major_version": 2, "minor_version": 0, "release_time": RUN_STARTED - 2_000_000},
                {"major_version": 2, "minor_version": 1, "release_time": RUN_STARTED - 86_400},
                {"major_version": 2, "minor_version": 2, "release_time": RUN_STARTED + 3_600},
            ],
        },
    )
    standin.add(
        "capsules",
        {
            "id": DISPATCH_CAPSULE_ID,
            "created": RUN_STARTED - 86_400 * 100,
            "name": "aind-analysis-job-dispatch",
            "status": "release",
            "owner": OWNER,
            "slug": "9303168",
        },
    )
    standin.add(
        "pipelines",
        {
            "id": PIPELINE_ID,
            "created": RUN_STARTED - 86_400 * 30,
            "name": PIPELINE_NAME,
            "status": "non_release",
            "owner": OWNER,
            "slug": "1160371",
        },
    )
    standin.add(
        "data_assets",
        {
            "id": S3_ASSET_ID,
            "created": RUN_STARTED - 86_400 * 200,
            "name": "ecephys_612345_2025-03-14_10-02-11",
            "mount": "ecephys_612345_2025-03-14_10-02-11",
            "last_used": RUN_STARTED,
            "owner": OWNER,
            "state": "ready",
            "type": "dataset",
            "source_bucket": {
                "origin": "aws",
                "bucket": S3_ASSET_BUCKET,
                "prefix": S3_ASSET_ID,
                "external": True,
            },
        },
    )
    standin.add(
        "data_assets",
        {
            "id": INTERNAL_ASSET_ID,
            "created": RUN_STARTED - 86_400 * 10,
            "name": "analysis_parameters",
            "mount": "analysis_parameters",
            "last_used": RUN_STARTED,
            "owner": OWNER,
            "state": "ready",
            "type": "dataset",
        },
    )
    return standin
