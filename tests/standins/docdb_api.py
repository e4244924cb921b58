"""A local stand-in for the AIND DocDB REST API, spoken to by aind-data-access-api's client.

HTTPS on 127.0.0.1 with a self-signed certificate, in a thread of the test process,
backed by a real MongoDB wire-protocol server (SecantusDB) through pymongo. It serves
the routes ``aind_data_access_api.document_db.Client`` calls, under
``/{v1|v2}/{database}/{collection}/``:

=======  ===================  ======================================================
method   route                behaviour
=======  ===================  ======================================================
GET      ``find`` (or none)   ``filter``/``projection``/``sort``/``limit``/``skip``
                              JSON query parameters; at most ``page_cap`` records,
                              and fewer when the page would exceed a Lambda-sized
                              response, so the client's pagination is exercised
GET      ``count_documents``  ``{"total_record_count", "filtered_record_count"}``
POST     ``aggregate``        unsigned, read-only (``$out``/``$merge`` refused)
POST     ``insert_one``       SigV4; a duplicate ``_id`` is 409
POST     ``update_one``       SigV4; ``upsert`` is the string ``"True"``
POST     ``bulk_write``       SigV4; ``UpdateOne``/``InsertOne``/``DeleteOne``
DELETE   ``delete_one[many]`` SigV4
=======  ===================  ======================================================

Like API Gateway it refuses a body over 10 MiB with 413, a URL over 8,192 characters
with 414, and a write whose SigV4 signature does not verify (wrong secret, unknown
key, other region, stale date, no signature) with 403 and Gateway's messages. Every
request is recorded so tests can count round trips, and :meth:`DocDbApiStandIn.fail`
makes chosen requests fail (before or after the write happened) to test retries.
"""

from __future__ import annotations

import hmac
import json
import re
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from bson import json_util
from bson.errors import BSONError
from pymongo import DeleteOne, InsertOne, MongoClient, UpdateOne
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)

from standins.projection import is_computed, project

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
"""API Gateway's limit on a request body (10 MiB)."""
MAX_URL_CHARS = 8192
"""API Gateway's limit on the URL of an edge-optimized or private API."""
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
"""A Lambda response's limit; a ``find`` page is cut short to stay under it."""
DEFAULT_PAGE_CAP = 500
VERSIONS = ("v1", "v2")
WRITES = {
    "POST": ("insert_one", "update_one", "bulk_write"),
    "DELETE": ("delete_one", "delete_many"),
}
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
_SIGNATURE_WINDOW = timedelta(minutes=15)
_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service "
    "documentation for details."
)


class _Reply(Exception):
    """Answer the request with this status and JSON body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


@dataclass
class Call:
    """One request the stand-in answered."""

    method: str
    action: str
    status: int
    signed: bool
    url_length: int
    collection: str = ""


@dataclass
class _Fault:
    action: str
    status: int
    times: int
    after_write: bool
    message: str


@dataclass
class DocDbApiStandIn:
    """The stand-in's state: its Mongo backend, the credentials it accepts, what it saw.

    Parameters
    ----------
    mongo_uri : str
        The MongoDB server holding the data (database and collection as in the URL).
    cert_file, key_file : Path
        The TLS certificate (with SAN ``IP:127.0.0.1``) and its private key.
    access_key, secret_key, region : str
        The only AWS credentials a signed write may use, and the region of the API.
    page_cap : int
        The most records one ``find`` answers with; tests may change it.
    """

    mongo_uri: str
    cert_file: Path
    key_file: Path
    access_key: str
    secret_key: str
    region: str
    page_cap: int = DEFAULT_PAGE_CAP
    calls: list[Call] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _mongo: MongoClient[dict[str, Any]] | None = None
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._server is not None, "start() the stand-in first"
        port: int = self._server.server_address[1]
        return port

    @property
    def host(self) -> str:
        """What to put in ``DOCDB_HOST``: ``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    @property
    def mongo(self) -> MongoClient[dict[str, Any]]:
        """The backing MongoDB client (tests may look at the data directly)."""
        assert self._mongo is not None, "start() the stand-in first"
        return self._mongo

    def start(self) -> None:
        """Listen on a free loopback port, serving from a daemon thread."""
        self._mongo = MongoClient(self.mongo_uri, serverSelectionTimeoutMS=5000)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        server = _TlsServer(("127.0.0.1", 0), _Handler, context)
        server.standin = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="docdb-api-standin", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the backend connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._mongo is not None:
            self._mongo.close()
            self._mongo = None

    def reset(self) -> None:
        """Forget recorded calls and pending faults; restore the page cap."""
        with self._lock:
            self.calls.clear()
            self._faults.clear()
            self.page_cap = DEFAULT_PAGE_CAP

    def fail(
        self,
        action: str,
        status: int,
        *,
        times: int = 1,
        after_write: bool = False,
        message: str = "",
    ) -> None:
        """Answer the next ``times`` requests for ``action`` with ``status``.

        With ``after_write`` the request is carried out first, and only its reply is
        replaced (a reply lost after the write succeeded). ``message`` is the reply's
        JSON ``message`` (``injected <status>`` when empty).
        """
        with self._lock:
            fault = _Fault(action, status, times, after_write, message or f"injected {status}")
            self._faults.append(fault)

    def calls_to(self, action: str) -> list[Call]:
        """The recorded calls of one action (``find``, ``insert_one``, ...)."""
        with self._lock:
            return [call for call in self.calls if call.action == action]

    def _take_fault(self, action: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.action == action and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)


class _TlsServer(ThreadingHTTPServer):
    """A threading HTTP server that speaks TLS; each handshake runs in its own thread."""

    daemon_threads = True
    standin: DocDbApiStandIn

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(address, handler)
        self.context = context

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls
        wrapped = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: a client that refuses the certificate is what some tests do."""


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the backing MongoDB collection."""

    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection is closed after this long
    server: _TlsServer

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        self.request.do_handshake()  # in this connection's own thread
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean: calls are recorded instead."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    # --- plumbing ------------------------------------------------------------------

    def _serve(self) -> None:
        standin = self.server.standin
        action, signed, collection = "?", False, ""
        try:
            if len(self.path) > MAX_URL_CHARS:
                self._drain()
                raise _Reply(414, {"message": "Request-URI Too Long"})
            _version, database, collection, action = self._route()
            body = self._body()
            if action in WRITES.get(self.command, ()):
                self._check_signature(body)
                signed = True
            fault = standin._take_fault(action)
            if fault is not None and not fault.after_write:
                raise _Reply(fault.status, {"message": fault.message})
            target = standin.mongo[database][collection]
            status, payload = self._dispatch(action, target, body)
            if fault is not None:
                raise _Reply(fault.status, {"message": fault.message})
        except _Reply as reply:
            status, payload = reply.status, _dumps(reply.body)
        except (ConnectionFailure, ssl.SSLError, OSError) as exc:
            status, payload = 503, _dumps({"message": f"backend unavailable: {exc}"})
        except Exception as exc:
            status, payload = 500, _dumps({"message": f"{type(exc).__name__}: {exc}"})
        standin._record(Call(self.command, action, status, signed, len(self.path), collection))
        self._send(status, payload)

    def _route(self) -> tuple[str, str, str, str]:
        segments = urlsplit(self.path).path.strip("/").split("/")
        if len(segments) == 3 and self.command == "GET":
            segments.append("find")  # the bare collection URL lists records too
        if len(segments) != 4 or segments[0] not in VERSIONS or not all(segments):
            self._drain()
            raise _Reply(404, {"message": "Not Found"})
        version, database, collection, action = segments
        known = {"GET": ("find", "count_documents"), "POST": ("aggregate",)}
        if action not in known.get(self.command, ()) + WRITES.get(self.command, ()):
            self._drain()
            raise _Reply(404, {"message": "Not Found"})
        return version, database, collection, action

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PAYLOAD_BYTES:
            self._drain()
            raise _Reply(413, {"message": "Request Too Long"})
        return self.rfile.read(length) if length else b""

    def _drain(self) -> None:
        """Read and drop the body, so the client can read the reply."""
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _check_signature(self, body: bytes) -> None:
        """Verify a SigV4 signature the way API Gateway's IAM authorisation does."""
        standin = self.server.standin
        header = self.headers.get("Authorization")
        if not header:
            raise _Reply(403, {"message": "Missing Authentication Token"})
        match = _AUTHORIZATION.fullmatch(header.strip())
        amz_date = self.headers.get("X-Amz-Date", "")
        if match is None or not amz_date:
            raise _Reply(403, {"message": "Authorization header is malformed"})
        if match["key"] != standin.access_key:
            raise _Reply(403, {"message": "The security token included in the request is invalid."})
        if match["service"] != "execute-api" or match["region"] != standin.region:
            raise _Reply(
                403,
                {"message": f"Credential should be scoped to a valid region '{standin.region}'."},
            )
        try:
            when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            raise _Reply(403, {"message": "Authorization header is malformed"}) from None
        if abs(datetime.now(timezone.utc) - when) > _SIGNATURE_WINDOW:
            raise _Reply(403, {"message": "Signature expired"})
        names = match["signed"].split(";")
        if "host" not in names or any(self.headers.get(n) is None for n in names):
            raise _Reply(403, {"message": "Authorization header is malformed"})
        request = AWSRequest(
            method=self.command,
            url=f"https://{self.headers['Host']}{self.path}",
            data=body,
            headers={name: self.headers[name] for name in names if name != "host"},
        )
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(
            Credentials(standin.access_key, standin.secret_key), "execute-api", standin.region
        )
        expected = signer.signature(
            signer.string_to_sign(request, signer.canonical_request(request)), request
        )
        if not hmac.compare_digest(expected, match["signature"]):
            raise _Reply(403, {"message": _BAD_SIGNATURE})

    # --- the routes ----------------------------------------------------------------

    def _dispatch(self, action: str, target: Any, body: bytes) -> tuple[int, bytes]:
        if action == "find":
            return 200, self._find(target)
        if action == "count_documents":
            filter_ = self._query_json("filter", {})
            counts = {
                "total_record_count": target.count_documents({}),
                "filtered_record_count": target.count_documents(filter_),
            }
            return 200, _dumps(counts)
        payload = _loads(body)
        try:
            return 200, _dumps(_BODY_ROUTES[action](target, payload))
        except DuplicateKeyError as exc:
            raise _Reply(409, {"message": _first_line(str(exc))}) from None
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            status = 409 if any(e.get("code") == 11000 for e in errors) else 400
            raise _Reply(status, {"message": "bulk write failed", "details": exc.details}) from None
        except ConnectionFailure:
            raise
        except (PyMongoError, BSONError, OverflowError, TypeError, KeyError) as exc:
            raise _Reply(400, {"message": _first_line(str(exc))}) from None

    def _query_json(self, name: str, default: Any) -> Any:
        values = parse_qs(urlsplit(self.path).query, keep_blank_values=True).get(name)
        if not values or not values[0]:
            return default
        try:
            return json.loads(values[0])
        except json.JSONDecodeError:
            raise _Reply(400, {"message": f"{name} is not valid JSON"}) from None

    def _find(self, target: Any) -> bytes:
        standin = self.server.standin
        try:
            limit = int(self._query_json("limit", 0))
            skip = int(self._query_json("skip", 0))
        except (TypeError, ValueError):
            raise _Reply(400, {"message": "limit and skip must be integers"}) from None
        filter_ = self._query_json("filter", {})
        projection = self._query_json("projection", None)
        sort = self._query_json("sort", None)
        page_size = min(limit, standin.page_cap) if limit > 0 else standin.page_cap
        # Computed fields are evaluated here, as MongoDB does (see standins.projection).
        computed = is_computed(projection)
        try:
            cursor = target.find(filter_, None if computed else projection)
            cursor = cursor.skip(skip).limit(page_size)
            if sort:
                cursor = cursor.sort(list(sort.items()))
            page: list[bytes] = []
            size = 2
            for document in cursor:
                text = _dumps(project(document, projection) if computed else document)
                if page and size + len(text) + 1 > MAX_RESPONSE_BYTES:
                    break
                page.append(text)
                size += len(text) + 1
        except (OperationFailure, ValueError) as exc:
            raise _Reply(400, {"message": _first_line(str(exc))}) from None
        return b"[" + b",".join(page) + b"]"


def _aggregate(target: Any, pipeline: Any) -> list[Any]:
    if not isinstance(pipeline, list) or not all(isinstance(s, dict) for s in pipeline):
        raise _Reply(400, {"message": "the pipeline must be a list of stages"})
    if any(name in ("$out", "$merge") for stage in pipeline for name in stage):
        raise _Reply(400, {"message": "aggregations are read-only here"})
    return list(target.aggregate(pipeline))


def _insert_one(target: Any, record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise _Reply(400, {"message": "the record must be a JSON object"})
    done = target.insert_one(record)
    return {"acknowledged": done.acknowledged, "insertedId": done.inserted_id}


def _update_one(target: Any, request: Any) -> dict[str, Any]:
    done = target.update_one(
        request["filter"], request["update"], upsert=str(request.get("upsert")) == "True"
    )
    return _public(done.raw_result)


def _bulk_write(target: Any, operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list) or not operations:
        raise _Reply(400, {"message": "bulk_write needs a non-empty list of operations"})
    requests: list[Any] = []
    for operation in operations:
        ((kind, spec),) = operation.items()
        if kind == "UpdateOne":
            upsert = str(spec.get("upsert")) == "True"
            requests.append(UpdateOne(spec["filter"], spec["update"], upsert=upsert))
        elif kind == "InsertOne":
            requests.append(InsertOne(spec.get("document", spec)))
        elif kind == "DeleteOne":
            requests.append(DeleteOne(spec["filter"]))
        else:
            raise _Reply(400, {"message": f"unsupported operation {kind}"})
    return _public(target.bulk_write(requests).bulk_api_result)


def _delete_one(target: Any, request: Any) -> dict[str, Any]:
    return {"n": target.delete_one(request["filter"]).deleted_count, "ok": 1.0}


def _delete_many(target: Any, request: Any) -> dict[str, Any]:
    return {"n": target.delete_many(request["filter"]).deleted_count, "ok": 1.0}


_BODY_ROUTES = {
    "aggregate": _aggregate,
    "insert_one": _insert_one,
    "update_one": _update_one,
    "bulk_write": _bulk_write,
    "delete_one": _delete_one,
    "delete_many": _delete_many,
}


def _public(result: dict[str, Any]) -> dict[str, Any]:
    """Drop the replica-set bookkeeping (``$clusterTime``, ``operationTime``)."""
    return {k: v for k, v in result.items() if not k.startswith("$") and k != "operationTime"}


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _Reply(400, {"message": "the body is not valid JSON"}) from None


def _dumps(value: Any) -> bytes:
    """Serialise like a pymongo-backed API: relaxed extended JSON."""
    return json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS).encode()


def _first_line(text: str) -> str:
    return text.splitlines()[0][:500] if text else ""


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1 and localhost; return (cert, key)."""
    cert, key = folder / "docdb-api-cert.pem", folder / "docdb-api-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key
