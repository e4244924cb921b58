"""The record store contract bound to MongoRecordStore on SecantusDB, plus what only it does.

Every test uses its own database (uuid-named), dropped afterwards. The store connects
with a user name and password (a user created on the test server for this module), so
the secret-masking checks see a real credential. Below the contract: DocumentDB
safety (retryWrites=false, the operators sent), bookkeeping, errors (unreachable
server, wrong password, a record over 16 MiB, a reply lost after an insert), read-only
use, and the database stopping before a run and between a result's upload and its
record, end to end through the runner.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pickle
import socket
import struct
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from threading import Event
from typing import Any
from urllib.parse import quote_plus, unquote, urlsplit

import pytest
from bson.errors import InvalidDocument
from pymongo import MongoClient, monitoring
from pymongo.errors import AutoReconnect, DuplicateKeyError, NetworkTimeout, OperationFailure

from analysis_wrapper import capsule as capsule_module
from analysis_wrapper.common.retry import RetryPolicy
from analysis_wrapper.config.settings import Capsule
from analysis_wrapper.errors import FencedOutError, RecordExistsError, StoreError
from analysis_wrapper.run.runner import Analysis
from analysis_wrapper.stores.base import INPUT_URL_PATH, Record, RecordQuery, RecordStore
from analysis_wrapper.stores.claims import Claim, Failure
from analysis_wrapper.stores.mongo.store import (
    BATCH_SIZE,
    BOOKKEEPING_FIELD,
    EPOCH_PATH,
    MongoRecordStore,
)
from conftest import CapsuleCopy
from contract.claim_store_contract import (
    ClaimStoreContract,
    FakeClock,
    record_by,
    sample_claim,
    worker,
)
from contract.record_store_contract import (
    RecordStoreContract,
    key_of,
    make_record,
    with_inputs,
)
from servers import ServerProcess, free_port

TABLE = "analysis_results"
PARAMETERS = "processing.data_processes.0.code.parameters"
FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)
Document = dict[str, Any]


def fresh_database() -> str:
    """A database name no other test uses."""
    return f"test_{uuid.uuid4().hex[:16]}"


def with_options(uri: str, **options: object) -> str:
    """Append query options to a URI that already has a ``?``."""
    return uri + "".join(f"&{name}={value}" for name, value in options.items())


@pytest.fixture(scope="module")
def mongo_user(mongo_uri: str) -> Iterator[tuple[str, str]]:
    """A user with a password that needs percent-encoding, on the test server."""
    name = f"tester-{uuid.uuid4().hex[:8]}"
    password = f"p@ss:w/rd-{uuid.uuid4().hex}"
    admin: MongoClient[Document] = MongoClient(mongo_uri, retryWrites=False)
    admin.admin.command("createUser", name, pwd=password, roles=["root"])
    yield name, password
    admin.admin.command("dropUser", name)
    admin.close()


def uri_for(port: int, user: str, password: str) -> str:
    """A URI with credentials for the server (or whatever listens) on ``port``."""
    return (
        f"mongodb://{quote_plus(user)}:{quote_plus(password)}@127.0.0.1:{port}/"
        "?directConnection=true&authSource=admin"
    )


@pytest.fixture
def secret_uri(mongo_server: ServerProcess, mongo_user: tuple[str, str]) -> str:
    """The test server's URI, with the test user's name and password."""
    return uri_for(mongo_server.port, *mongo_user)


@pytest.fixture
def admin(mongo_uri: str) -> Iterator[MongoClient[Document]]:
    """A plain client on the test server, to look behind the store's back."""
    client: MongoClient[Document] = MongoClient(mongo_uri, retryWrites=False)
    yield client
    client.close()


@pytest.fixture
def database(admin: MongoClient[Document]) -> Iterator[str]:
    """A fresh database name, dropped after the test."""
    name = fresh_database()
    yield name
    admin.drop_database(name)


# --- the contract, bound ---------------------------------------------------------------


class TestMongoRecordStore(RecordStoreContract):
    """The record store contract on a fresh database of the SecantusDB server."""

    @pytest.fixture
    def store(self, secret_uri: str, database: str) -> Iterator[MongoRecordStore]:
        store = MongoRecordStore(secret_uri, database, TABLE)
        yield store
        store.close()

    @pytest.fixture
    def store_secrets(self, mongo_user: tuple[str, str]) -> list[str]:
        return [mongo_user[1], quote_plus(mongo_user[1])]


class TestMongoClaimStore(ClaimStoreContract):
    """The claim store contract: each worker its own store on one fresh database."""

    @pytest.fixture
    def claim_stores(
        self, secret_uri: str, database: str
    ) -> Iterator[Callable[[], MongoRecordStore]]:
        opened: list[MongoRecordStore] = []

        def open_handle() -> MongoRecordStore:
            opened.append(MongoRecordStore(secret_uri, database, TABLE))
            return opened[-1]

        yield open_handle
        for store in opened:
            store.close()


# --- DocumentDB safety: retryWrites=false, and the commands sent -------------------------


class CommandLog(monitoring.CommandListener):
    """Every command a client sends, as (name, command document)."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, Document]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def named(self, name: str) -> list[Document]:
        """The commands called ``name``, in order."""
        return [command for command_name, command in self.commands if command_name == name]


def test_retry_writes_is_off_even_when_the_uri_asks_for_it(
    secret_uri: str, database: str, mongo_uri: str
) -> None:
    """With retryWrites=true in the URI, the store still sends no retryable writes."""
    listener = CommandLog()
    uri = with_options(secret_uri, retryWrites="true")
    store = MongoRecordStore(uri, database, TABLE, client_options={"event_listeners": [listener]})
    store.put(make_record(key_of("a"), {"x": 1}))
    store.put(make_record(key_of("a"), {"x": 2}), replace=True)
    assert store.client().options.retry_writes is False
    writes = listener.named("insert") + listener.named("update")
    assert len(writes) == 2
    assert all("txnNumber" not in command for command in writes)
    store.close()
    # The same check on a plain client shows what a retryable write looks like.
    control_log = CommandLog()
    control: MongoClient[Document] = MongoClient(
        with_options(mongo_uri, retryWrites="true"), event_listeners=[control_log]
    )
    control[database]["control"].insert_one({"_id": "a"})
    control.close()
    assert "txnNumber" in control_log.named("insert")[0]


def test_only_documentdb_operators_are_sent(secret_uri: str, database: str) -> None:
    """Find sends dotted equality on scalars only; get_many sends _id $in of 50 at most."""
    listener = CommandLog()
    store = MongoRecordStore(
        secret_uri, database, TABLE, client_options={"event_listeners": [listener]}
    )
    stored = key_of(5)
    store.put(make_record(stored, {"x": 1, "a.b": 2, "$y": 3, "lst": [1], "s": "v"}))
    listener.commands.clear()
    query = {"x": 1, "a.b": 2, "$y": 3, "lst": [1], "s": "v", "n": None, "big": 2**60}
    assert [r["_id"] for r in store.find(RecordQuery(parameters=query))] == []
    (find,) = listener.named("find")
    assert find["filter"] == {f"{PARAMETERS}.x": 1, f"{PARAMETERS}.s": "v", f"{PARAMETERS}.n": None}
    assert dict(find["sort"]) == {f"{BOOKKEEPING_FIELD}.written": 1, "_id": 1}
    assert find["projection"] == {BOOKKEEPING_FIELD: 0}
    listener.commands.clear()
    assert BATCH_SIZE == 50
    keys = [key_of(n) for n in range(2 * BATCH_SIZE + 20)]
    assert list(store.get_many(keys)) == [stored]
    batches = [command["filter"]["_id"]["$in"] for command in listener.named("find")]
    assert [len(batch) for batch in batches] == [50, 50, 20]
    assert [key for batch in batches for key in batch] == keys
    assert all(set(command["filter"]) == {"_id"} for command in listener.named("find"))
    store.close()


def test_bookkeeping_is_stored_but_never_returned(
    secret_uri: str, database: str, admin: MongoClient[Document]
) -> None:
    """Documents carry _store (write time, token); get, get_many and find strip it."""
    store = MongoRecordStore(secret_uri, database, TABLE)
    record = make_record(key_of("a"), {"x": 1})
    store.put(record)
    raw = admin[database][TABLE].find_one({"_id": key_of("a")})
    assert raw is not None
    assert set(raw[BOOKKEEPING_FIELD]) == {"written", "write_id"}
    assert raw[BOOKKEEPING_FIELD]["written"].endswith("Z")
    assert {k: v for k, v in raw.items() if k != BOOKKEEPING_FIELD} == record
    assert store.get(key_of("a")) == record
    assert store.get_many([key_of("a")]) == {key_of("a"): record}
    assert store.find(RecordQuery(parameters={"x": 1})) == [record]
    with pytest.raises(StoreError, match=BOOKKEEPING_FIELD):
        store.put(make_record(key_of("b"), **{BOOKKEEPING_FIELD: {"mine": 1}}))
    assert store.get(key_of("b")) is None
    store.close()


def test_store_travels_to_another_process_without_its_client(
    secret_uri: str, database: str
) -> None:
    """A used store pickles (its client left behind); the copy opens its own and reads."""
    store = MongoRecordStore(secret_uri, database, TABLE)
    record = make_record(key_of("a"), {"x": 1})
    store.put(record)
    copy = pickle.loads(pickle.dumps(store))
    assert copy.get(key_of("a")) == record
    copy.put(make_record(key_of("b")))
    assert sorted(store.get_many([key_of("a"), key_of("b")])) == sorted([key_of("a"), key_of("b")])
    assert copy.client() is not store.client()
    copy.close()
    store.close()


# --- errors ----------------------------------------------------------------------------


def test_unreachable_server_fails_after_bounded_retries_without_secret(
    mongo_user: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A closed port: StoreError after 3 attempts; the password is in no message or log."""
    caplog.set_level(logging.DEBUG)
    password = mongo_user[1]
    sleeps: list[float] = []
    store = MongoRecordStore(
        uri_for(free_port(), *mongo_user),
        fresh_database(),
        TABLE,
        server_selection_timeout_s=0.2,
        retry_policy=FAST,
        sleep=sleeps.append,
    )
    for attempt in (lambda: store.get(key_of("a")), lambda: store.put(make_record(key_of("a")))):
        with pytest.raises(StoreError) as raised:
            attempt()
        message = str(raised.value)
        assert "no server answered" in message
        assert "Connection refused" in message
        assert "(after 3 attempts)" in message
        assert raised.value.transient is True  # a job would be tried again
        assert "\n" not in message
        assert message.count("mongodb://***@127.0.0.1:") == 1
        assert password not in message
        assert quote_plus(password) not in message
    assert len(sleeps) == 4  # two waits per operation
    retries = [r for r in caplog.records if r.name == "analysis_wrapper.common.retry"]
    assert len(retries) == 4
    assert password not in caplog.text
    assert quote_plus(password) not in caplog.text
    assert password not in store.display_url
    store.close()


def test_wrong_password_fails_fast_with_one_clear_line(
    mongo_server: ServerProcess, mongo_user: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong password is code 18: one StoreError line with the remedy, no retry."""
    caplog.set_level(logging.DEBUG)
    wrong = f"Wr0ng-{uuid.uuid4().hex}"
    sleeps: list[float] = []
    store = MongoRecordStore(
        uri_for(mongo_server.port, mongo_user[0], wrong),
        fresh_database(),
        TABLE,
        retry_policy=FAST,
        sleep=sleeps.append,
    )
    with pytest.raises(StoreError) as raised:
        store.find(RecordQuery())
    message = str(raised.value)
    assert "authentication failed (code 18" in message
    assert "check the user name and password in DOCDB_HOST" in message
    assert "attempts" not in message
    assert raised.value.transient is False  # nor is a job tried again
    assert "\n" not in message
    assert wrong not in message
    assert wrong not in caplog.text
    assert sleeps == []
    store.close()


@pytest.mark.parametrize(
    "uri",
    [
        "mongodb://alice:p@ss-w0rd@127.0.0.1:1/",  # '@' in the password not percent-encoded
        "mongodb://alice:pass-w0rd@127.0.0.1:port/",
        "mongodb://alice:pass-w0rd@/",
        "mongodb://alice:pass-w0rd@127.0.0.1:1/?authSource=",
    ],
)
def test_bad_uri_fails_fast_with_one_clear_line(uri: str) -> None:
    """A malformed DOCDB_HOST is one StoreError line naming it, at once, password masked."""
    sleeps: list[float] = []
    store = MongoRecordStore(uri, fresh_database(), TABLE, sleep=sleeps.append)
    with pytest.raises(StoreError) as raised:
        store.get(key_of("a"))
    message = str(raised.value)
    assert "invalid DOCDB_HOST" in message
    assert "mongodb://***@" in message
    assert "w0rd" not in message
    assert "\n" not in message
    assert raised.value.__cause__ is None
    assert raised.value.transient is False
    assert sleeps == []
    store.close()


def test_a_stopped_server_is_a_transient_store_error_until_it_is_back(
    mongo_server: ServerProcess, secret_uri: str, database: str
) -> None:
    """The database stops under a working store: transient StoreError; back up: it works."""
    store = MongoRecordStore(
        secret_uri,
        database,
        TABLE,
        server_selection_timeout_s=0.2,
        retry_policy=FAST,
        sleep=lambda _: None,
    )
    store.put(make_record(key_of("a")))
    mongo_server.stop()
    try:
        for attempt in (
            lambda: store.get(key_of("a")),
            lambda: store.put(make_record(key_of("b"))),
            lambda: store.get_claims([key_of("a")]),
        ):
            with pytest.raises(StoreError, match=r"\(after 3 attempts\)") as raised:
                attempt()
            assert raised.value.transient is True
    finally:
        mongo_server.start()
    assert store.get(key_of("a")) is not None
    store.close()


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (AutoReconnect("connection reset"), True),
        (NetworkTimeout("timed out"), True),
        (OperationFailure("Request rate is large", code=16500), True),
        (OperationFailure("not primary", code=10107), True),
        (OperationFailure("x", code=1, details={"errorLabels": ["RetryableWriteError"]}), True),
        (OperationFailure("Authentication failed.", code=18), False),
        (OperationFailure("not authorized on db to execute command", code=13), False),
        (DuplicateKeyError("E11000 duplicate key error", code=11000), False),
        (OperationFailure("unknown operator: $expr", code=2), False),
        (InvalidDocument("cannot encode object"), False),
    ],
    ids=lambda value: repr(value)[:40] if isinstance(value, Exception) else str(value),
)
def test_which_pymongo_errors_are_transient_store_errors(
    mongo_user: tuple[str, str], error: Exception, transient: bool
) -> None:
    """Connection loss, elections and throttling are transient; refusals are not."""
    sleeps: list[float] = []
    store = MongoRecordStore(
        uri_for(free_port(), *mongo_user),
        fresh_database(),
        TABLE,
        retry_policy=FAST,
        sleep=sleeps.append,
    )

    def fails() -> None:
        raise error

    with pytest.raises(StoreError) as raised:
        store.call("read", fails)
    assert raised.value.transient is transient
    assert len(sleeps) == (FAST.attempts - 1 if transient else 0)


def test_server_message_quoting_the_password_is_masked(mongo_user: tuple[str, str]) -> None:
    """A server error that quotes the password (raw or encoded) is shown with it masked."""
    password = mongo_user[1]
    store = MongoRecordStore(uri_for(free_port(), *mongo_user), fresh_database(), TABLE)

    def fails() -> None:
        raise OperationFailure(f"bad value {password!r} (also {quote_plus(password)})", code=2)

    with pytest.raises(StoreError) as raised:
        store.call("read", fails)
    message = str(raised.value)
    assert message.endswith("bad value '***' (also ***) (code 2)")
    assert password not in message
    assert quote_plus(password) not in message


def test_record_over_16_mib_is_refused_and_nothing_is_stored(
    secret_uri: str, database: str, admin: MongoClient[Document]
) -> None:
    """A 17 MiB record gives a clear StoreError, inserted or replaced; nothing is created."""
    store = MongoRecordStore(secret_uri, database, TABLE)
    record = make_record(key_of("big"), {"x": 1})
    record["processing"]["data_processes"][0]["output_parameters"] = {"blob": "x" * (17 << 20)}
    for replace in (False, True):
        with pytest.raises(StoreError) as raised:
            store.put(record, replace=replace)
        message = str(raised.value)
        assert "16 MiB document limit" in message
        assert "output_parameters" in message
        assert not isinstance(raised.value, RecordExistsError)
        assert raised.value.transient is False
    assert store.get(key_of("big")) is None
    assert database not in admin.list_database_names()
    store.close()


class DropsOneReply:
    """A TCP proxy to the server that, once armed, drops the reply to the next write.

    The write (an ``insert`` unless :attr:`command` says otherwise) reaches the server
    and is applied; the client sees its connection closed instead of the answer, as
    after a network fault or a failover.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.armed = False
        self.command = "insert"
        self.dropped = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            drop = Event()
            for pump in (self._requests, self._replies):
                threading.Thread(target=pump, args=(client, server, drop), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, drop: Event) -> None:
        try:
            while message := _read_message(client):
                if self.armed and f"\x02{self.command}\x00".encode() in message[:64]:
                    self.armed = False
                    drop.set()
                server.sendall(message)
        except OSError:
            pass
        _close(client, server)

    def _replies(self, client: socket.socket, server: socket.socket, drop: Event) -> None:
        try:
            while message := _read_message(server):
                if drop.is_set():
                    self.dropped += 1
                    break
                client.sendall(message)
        except OSError:
            pass
        _close(client, server)

    def close(self) -> None:
        """Stop accepting connections."""
        self._listener.close()


def _read_message(sock: socket.socket) -> bytes:
    """One wire-protocol message (its first 4 bytes give its length), or b"" at the end."""
    header = _read_exactly(sock, 4)
    if not header:
        return b""
    (length,) = struct.unpack("<i", header)
    return header + _read_exactly(sock, length - 4)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def test_insert_whose_reply_was_lost_is_not_a_conflict(
    mongo_server: ServerProcess,
    mongo_user: tuple[str, str],
    database: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An insert applied but unanswered is retried and succeeds; another's record still wins."""
    proxy = DropsOneReply(mongo_server.port)
    sleeps: list[float] = []
    store = MongoRecordStore(
        uri_for(proxy.port, *mongo_user), database, TABLE, retry_policy=FAST, sleep=sleeps.append
    )
    mine = make_record(key_of("mine"), {"x": 1})
    store.put(make_record(key_of("warm up")))  # connects and creates the index
    proxy.armed = True
    store.put(mine)
    assert proxy.dropped == 1
    assert len(sleeps) == 1
    assert store.get(key_of("mine")) == mine
    assert any("retry 1 of 2" in r.getMessage() for r in caplog.records)
    # Someone else's record under the key: after the same fault, it is a conflict.
    proxy.armed = True
    with pytest.raises(RecordExistsError, match=f"{key_of('mine')}.*{database}.{TABLE}"):
        store.put(make_record(key_of("mine"), {"x": 2}))
    assert proxy.dropped == 2
    assert store.get(key_of("mine")) == mine
    store.close()
    proxy.close()


# --- read-only use ---------------------------------------------------------------------


def test_read_only_store_creates_nothing_and_reads_a_writers_records(
    secret_uri: str, database: str, admin: MongoClient[Document]
) -> None:
    """A read-only store reads as empty without creating its database, and never writes."""
    reader = MongoRecordStore(secret_uri, database, TABLE, read_only=True)
    assert reader.get(key_of("a")) is None
    assert reader.get_many([key_of("a"), key_of("b")]) == {}
    assert reader.find(RecordQuery()) == []
    assert reader.find(RecordQuery(parameters={"x": 1})) == []
    with pytest.raises(StoreError, match="read-only") as raised:
        reader.put(make_record(key_of("a")))
    assert not isinstance(raised.value, RecordExistsError)
    assert database not in admin.list_database_names()
    writer = MongoRecordStore(secret_uri, database, TABLE)
    record = make_record(key_of("a"), {"x": 1})
    writer.put(record)
    assert reader.get(key_of("a")) == record
    assert reader.find(RecordQuery(parameters={"x": 1})) == [record]
    indexes_before = sorted(admin[database][TABLE].index_information())
    with pytest.raises(StoreError, match="read-only"):
        reader.put(make_record(key_of("b")), replace=True)
    assert writer.get(key_of("b")) is None
    assert sorted(admin[database][TABLE].index_information()) == indexes_before
    reader.close()
    writer.close()


@pytest.mark.parametrize("database", ["", "a.b", "a b", "a/b", "x" * 64])
def test_unusable_database_name_is_a_config_error(database: str) -> None:
    """A database name MongoDB or DocumentDB refuses is a ConfigError naming DOCDB_DATABASE."""
    from analysis_wrapper.errors import ConfigError

    with pytest.raises(ConfigError, match="DOCDB_DATABASE"):
        MongoRecordStore("mongodb://127.0.0.1:1/", database, TABLE)


# --- the database stops, end to end through the runner ------------------------------------


def folder_of(location: str) -> Path:
    """The local folder a ``file://`` location names."""
    return Path(unquote(urlsplit(location).path))


def check_completed_run(records: dict[str, Record], keys: set[str], bucket: Path) -> None:
    """Every key has a record whose folder holds its manifest and its metadata, unchanged.

    The folder is one publish attempt's: ``<bucket>/<key>/<attempt>``.
    """
    from aind_data_schema.core.metadata import Metadata

    assert set(records) == keys
    for key, record in records.items():
        folder = folder_of(record["location"])
        assert folder.parent.resolve() == (bucket / key).resolve()
        assert (folder / "manifest.json").is_file()
        metadata = json.loads((folder / "metadata.nd.json").read_text(encoding="utf-8"))
        assert metadata == {name: value for name, value in record.items() if name != "_id"}
        assert BOOKKEEPING_FIELD not in record
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # no acquisition files, by design
            Metadata.model_validate(metadata)


def summary_of(capsule: CapsuleCopy) -> dict[str, Any]:
    """The capsule's last run_summary.json."""
    summary: dict[str, Any] = json.loads((capsule.results / "run_summary.json").read_text())
    return summary


def test_run_with_database_down_fails_cleanly_then_completes(
    capsule: CapsuleCopy,
    mongo_server: ServerProcess,
    mongo_user: tuple[str, str],
    database: str,
    tmp_path: Path,
) -> None:
    """Database stopped: exit 1, one error line, nothing published; started: every job runs."""
    password = mongo_user[1]
    bucket = tmp_path / "bucket"
    env = {
        "DOCDB_HOST": uri_for(mongo_server.port, *mongo_user),
        "DOCDB_DATABASE": database,
        "DOCDB_COLLECTION": TABLE,
        "ANALYSIS_BUCKET": bucket.as_uri(),
    }
    impatient = {**env, "DOCDB_HOST": with_options(env["DOCDB_HOST"], serverSelectionTimeoutMS=100)}
    mongo_server.stop()
    try:
        down = capsule.run("--dry_run", "0", env=impatient)
    finally:
        mongo_server.start()
    assert down.returncode == 1, down.stderr
    errors = [line for line in down.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, down.stderr
    assert "cannot read record store mongodb://***@127.0.0.1:" in errors[0]
    assert "no server answered" in errors[0]
    output = down.stdout + down.stderr
    assert password not in output
    assert quote_plus(password) not in output
    assert "Traceback" not in output
    assert not bucket.exists()

    up = capsule.run("--dry_run", "0", env=env)
    assert up.returncode == 0, up.stderr
    summary = summary_of(capsule)
    assert (summary["ran"], summary["skipped"], summary["failed"]) == (6, 0, 0)
    keys = {job["key"] for job in summary["jobs"]}
    reader = MongoRecordStore(env["DOCDB_HOST"], database, TABLE, read_only=True)
    check_completed_run(reader.get_many(keys), keys, bucket)
    reader.close()
    again = capsule.run("--dry_run", "0", env=env)
    assert again.returncode == 0, again.stderr
    assert (summary_of(capsule)["ran"], summary_of(capsule)["skipped"]) == (0, 6)


class StopsServerBeforeFirstPut:
    """A real record store whose first put stops the database server, then goes on."""

    def __init__(self, inner: MongoRecordStore, server: ServerProcess) -> None:
        self.inner = inner
        self.server = server
        self.puts = 0

    @property
    def display_url(self) -> str:
        return self.inner.display_url

    def get(self, key: str) -> Record | None:
        return self.inner.get(key)

    def get_many(self, keys: Any) -> dict[str, Record]:
        return self.inner.get_many(keys)

    def put(self, record: Record, *, replace: bool = False, epoch: int | None = None) -> None:
        self.puts += 1
        if self.puts == 1:
            self.server.stop()
        self.inner.put(record, replace=replace, epoch=epoch)

    def find(self, query: RecordQuery) -> list[Record]:
        return self.inner.find(query)

    def find_by_inputs(self, input_sets: Any) -> dict[tuple[str, ...], list[Record]]:
        return self.inner.find_by_inputs(input_sets)

    def get_claims(self, keys: Any) -> dict[str, Claim]:
        return self.inner.get_claims(keys)

    def insert_claim(self, claim: Claim) -> bool:
        return self.inner.insert_claim(claim)

    def replace_claim(self, claim: Claim, *, expected_epoch: int) -> bool:
        return self.inner.replace_claim(claim, expected_epoch=expected_epoch)

    def list_claims(self) -> list[Claim]:
        return self.inner.list_claims()

    def close(self) -> None:
        self.inner.close()


def test_database_lost_between_upload_and_record_then_rerun_completes(
    capsule: CapsuleCopy,
    mongo_server: ServerProcess,
    mongo_user: tuple[str, str],
    database: str,
    tmp_path: Path,
    admin: MongoClient[Document],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Files published, database gone before the record: jobs fail; a re-run completes them.

    The first job's files and manifest are published, then the database stops as its
    record is written. That job fails after its tries; the others fail at once, since
    their keys cannot be claimed. Nothing is recorded. With the database back, a re-run
    (once the first run's leases have expired) completes all six.
    """
    from example_analysis_model import UnitFilterOutputs, UnitFilterParameters
    from run_capsule import run_analysis

    password = mongo_user[1]
    bucket = tmp_path / "bucket"
    uri = uri_for(mongo_server.port, *mongo_user)
    for name, value in {
        "DOCDB_HOST": uri,
        "DOCDB_DATABASE": database,
        "DOCDB_COLLECTION": TABLE,
        "ANALYSIS_BUCKET": bucket.as_uri(),
    }.items():
        monkeypatch.setenv(name, value)
    analysis = Analysis(run_analysis, UnitFilterParameters, UnitFilterOutputs)
    wrapped: list[StopsServerBeforeFirstPut] = []

    def open_failing_store(settings: Any, capsule: Capsule, *, read_only: bool) -> RecordStore:
        inner = MongoRecordStore(
            uri,
            database,
            TABLE,
            read_only=read_only,
            server_selection_timeout_s=0.2,
            retry_policy=FAST,
            sleep=lambda _: None,
        )
        wrapped.append(StopsServerBeforeFirstPut(inner, mongo_server))
        return wrapped[-1]

    with monkeypatch.context() as patch:
        patch.setattr(capsule_module, "open_record_store", open_failing_store)
        try:
            code = capsule_module.main(
                analysis, ["--dry_run", "0", "--lease_seconds", "1"], Capsule(capsule.root)
            )
        finally:
            mongo_server.start()
    assert code == 1
    assert [store.puts for store in wrapped] == [1]
    summary = summary_of(capsule)
    assert (summary["ran"], summary["failed"]) == (0, 6)
    keys = {job["key"] for job in summary["jobs"]}
    for job in summary["jobs"]:
        assert "record store mongodb://***@127.0.0.1:" in job["error"]
        assert "cannot write" in job["error"]
        assert password not in job["error"]
        assert "\n" not in job["error"]
    # Published but unrecorded: one key's attempt folder, with its manifest; no record.
    (published,) = [p for p in bucket.iterdir() if p.is_dir()]
    assert published.name in keys
    (attempt,) = list(published.iterdir())
    assert (attempt / "manifest.json").is_file()
    assert admin[database][TABLE].count_documents({}) == 0
    time.sleep(1.2)  # the first run's claim on that key expires

    assert capsule_module.main(analysis, ["--dry_run", "0"], Capsule(capsule.root)) == 0
    summary = summary_of(capsule)
    assert (summary["ran"], summary["skipped"], summary["failed"]) == (6, 0, 0)
    assert {job["key"] for job in summary["jobs"]} == keys
    reader = MongoRecordStore(uri, database, TABLE, read_only=True)
    check_completed_run(reader.get_many(keys), keys, bucket)
    reader.close()


def test_find_by_inputs_uses_the_multikey_index_on_input_urls(
    secret_uri: str, database: str, admin: MongoClient[Document]
) -> None:
    """The first write indexes the input URLs, and the find_by_inputs query uses that index."""
    store = MongoRecordStore(secret_uri, database, TABLE)
    record = with_inputs(make_record(key_of("a"), {"x": 1}), ["s3://bucket/a", "s3://bucket/b"])
    store.put(record)
    keys = [list(index["key"]) for index in admin[database][TABLE].list_indexes()]
    assert [INPUT_URL_PATH] in keys
    plan = admin[database][TABLE].find({INPUT_URL_PATH: {"$in": ["s3://bucket/a"]}}).explain()
    assert "IXSCAN" in json.dumps(plan, default=str), plan
    assert store.find_by_inputs([["s3://bucket/b", "s3://bucket/a"]]) == {
        ("s3://bucket/a", "s3://bucket/b"): [record]
    }
    store.close()


# --- claims: where they live, what is sent, lost replies, read-only use ------------------

CLAIMS = f"{TABLE}_claims"


def test_claims_are_plain_documents_in_their_own_collection(
    secret_uri: str, database: str, admin: MongoClient[Document]
) -> None:
    """A claim is stored as Claim.to_document() in <collection>_claims, and replaced whole."""
    store = MongoRecordStore(secret_uri, database, TABLE)
    key = key_of("claim")
    first = sample_claim(key, state="failed", failure=Failure("OSError", "disk full"))
    assert store.insert_claim(first)
    assert admin[database][CLAIMS].find_one({"_id": key}) == first.to_document()
    second = sample_claim(key, epoch=2, label="second")
    assert store.replace_claim(second, expected_epoch=1)
    assert list(admin[database][CLAIMS].find()) == [second.to_document()]
    assert admin[database][TABLE].count_documents({}) == 0
    store.close()


def test_claim_commands_are_documentdb_safe(secret_uri: str, database: str) -> None:
    """insert, a replacement filtered on _id and epoch (no upsert), finds of 50 keys at most."""
    listener = CommandLog()
    store = MongoRecordStore(
        secret_uri, database, TABLE, client_options={"event_listeners": [listener]}
    )
    key = key_of("commands")
    assert store.insert_claim(sample_claim(key))
    assert store.replace_claim(sample_claim(key, epoch=2), expected_epoch=1)
    assert not store.replace_claim(sample_claim(key, epoch=2), expected_epoch=1)
    (insert,) = listener.named("insert")
    assert insert["insert"] == CLAIMS
    updates = [command["updates"][0] for command in listener.named("update")]
    assert [update["q"] for update in updates] == [{"_id": key, "epoch": 1}] * 2
    assert all(not any(name.startswith("$") for name in update["u"]) for update in updates)
    assert not any(update.get("upsert") or update.get("multi") for update in updates)
    writes = listener.named("insert") + listener.named("update")
    assert all("txnNumber" not in command for command in writes)
    listener.commands.clear()
    keys = [key_of(n) for n in range(70)]
    assert list(store.get_claims(keys)) == []
    finds = listener.named("find")
    assert [len(command["filter"]["_id"]["$in"]) for command in finds] == [50, 20]
    assert all(command["find"] == CLAIMS for command in finds)
    store.close()


def test_claim_writes_whose_reply_was_lost_are_still_ours(
    mongo_server: ServerProcess, mongo_user: tuple[str, str], database: str
) -> None:
    """An insert or takeover applied but unanswered reports True; another's claim is False."""
    proxy = DropsOneReply(mongo_server.port)
    sleeps: list[float] = []
    store = MongoRecordStore(
        uri_for(proxy.port, *mongo_user), database, TABLE, retry_policy=FAST, sleep=sleeps.append
    )
    mine, theirs = key_of("mine"), key_of("theirs")
    assert store.list_claims() == []  # connects
    proxy.armed = True
    assert store.insert_claim(sample_claim(mine)) is True
    proxy.command, proxy.armed = "update", True
    taken = sample_claim(mine, epoch=2, label="taken over")
    assert store.replace_claim(taken, expected_epoch=1) is True
    proxy.armed = True
    renewed = dataclasses.replace(taken, heartbeat=taken.heartbeat + 30)
    assert store.replace_claim(renewed, expected_epoch=2) is True
    assert proxy.dropped == 3 and len(sleeps) == 3
    assert store.get_claims([mine]) == {mine: renewed}
    # The same faults when someone else's claim is stored: refused, nothing changed.
    other = MongoRecordStore(uri_for(mongo_server.port, *mongo_user), database, TABLE)
    assert other.insert_claim(sample_claim(theirs, label="theirs"))
    proxy.command, proxy.armed = "insert", True
    assert store.insert_claim(sample_claim(theirs, label="mine")) is False
    proxy.command, proxy.armed = "update", True
    stale = sample_claim(mine, epoch=2, label="stale")
    assert store.replace_claim(stale, expected_epoch=1) is False
    assert proxy.dropped == 5
    assert store.get_claims([mine, theirs]) == {
        mine: renewed,
        theirs: sample_claim(theirs, label="theirs"),
    }
    other.close()
    store.close()
    proxy.close()


def test_read_only_store_reads_claims_and_never_writes_them(
    secret_uri: str, database: str, admin: MongoClient[Document]
) -> None:
    """Read-only: no claims before any exist (nothing created); writes are StoreErrors."""
    reader = MongoRecordStore(secret_uri, database, TABLE, read_only=True)
    key = key_of("claim")
    assert reader.get_claims([key]) == {}
    assert reader.list_claims() == []
    with pytest.raises(StoreError, match="read-only"):
        reader.insert_claim(sample_claim(key))
    assert database not in admin.list_database_names()
    writer = MongoRecordStore(secret_uri, database, TABLE)
    assert writer.insert_claim(sample_claim(key))
    assert reader.get_claims([key]) == {key: sample_claim(key)}
    with pytest.raises(StoreError, match="read-only"):
        reader.replace_claim(sample_claim(key, epoch=2), expected_epoch=1)
    assert writer.list_claims() == [sample_claim(key)]
    reader.close()
    writer.close()


# --- fenced record writes: the claim read first, then a write conditional on the epoch ---


class ActsAfterItsClaimCheck(MongoRecordStore):
    """A real store that runs ``action`` once, right after its next claim lookup answers.

    That lookup is the fence's check; ``action`` is what happens while the writer
    stalls between the check and its write (another worker takes over and records).
    """

    action: Callable[[], object] | None = None

    def get_claims(self, keys: Any) -> dict[str, Claim]:
        found = super().get_claims(keys)
        action, self.action = self.action, None
        if action is not None:
            action()
        return found


@pytest.mark.parametrize("replace_record", [False, True])
def test_fenced_write_whose_check_went_stale_leaves_the_newer_record(
    secret_uri: str, database: str, replace_record: bool
) -> None:
    """A's check passes at epoch 1; B takes over and records; A's write is refused.

    The claim check alone would let A through: the write's own condition (no stored
    epoch above A's) refuses it, with ``replace`` (the upsert collides) and without.
    """
    clock = FakeClock()
    stalled_store = ActsAfterItsClaimCheck(secret_uri, database, TABLE)
    a = worker(stalled_store, "a", clock)
    b = worker(MongoRecordStore(secret_uri, database, TABLE), "b", clock)
    key = key_of(f"stale check {replace_record}")
    stalled = a.acquire(key).claim

    def take_over_and_record() -> None:
        clock.advance(120)
        current = b.acquire(key).claim
        assert current.epoch == 2
        b.store.put(record_by(key, "b"), epoch=current.epoch)  # type: ignore[attr-defined]

    stalled_store.action = take_over_and_record
    with pytest.raises(FencedOutError, match="a record written at epoch 2 is stored") as raised:
        stalled_store.put(record_by(key, "a"), replace=replace_record, epoch=stalled.epoch)
    assert (raised.value.epoch, raised.value.current_epoch, raised.value.written) == (1, 2, False)
    assert stalled_store.get(key) == record_by(key, "b")
    stalled_store.close()
    b.store.close()  # type: ignore[attr-defined]


def test_fenced_write_is_documentdb_safe_and_keeps_its_epoch_in_bookkeeping(
    secret_uri: str, database: str, admin: MongoClient[Document]
) -> None:
    """A fenced replace is one upsert filtered on _id and $or/$exists/$lte; no transaction.

    The epoch sits in _store (stripped on reads); an unfenced write stores none, and a
    fenced writer replaces a record that has none.
    """
    listener = CommandLog()
    store = MongoRecordStore(
        secret_uri, database, TABLE, client_options={"event_listeners": [listener]}
    )
    key = key_of("fenced commands")
    store.put(record_by(key, "unfenced"))
    raw = admin[database][TABLE].find_one({"_id": key})
    assert raw is not None and set(raw[BOOKKEEPING_FIELD]) == {"written", "write_id"}
    assert worker(store, "a", FakeClock()).acquire(key).claim.epoch == 1
    listener.commands.clear()
    store.put(record_by(key, "fenced"), replace=True, epoch=1)
    (update,) = [command["updates"][0] for command in listener.named("update")]
    assert update["q"] == {
        "_id": key,
        "$or": [{EPOCH_PATH: {"$exists": False}}, {EPOCH_PATH: {"$lte": 1}}],
    }
    assert update["upsert"] is True and not any(name.startswith("$") for name in update["u"])
    assert [command["find"] for command in listener.named("find")] == [CLAIMS]
    writes = listener.named("insert") + listener.named("update")
    assert all("txnNumber" not in command for command in writes)
    raw = admin[database][TABLE].find_one({"_id": key})
    assert raw is not None and raw[BOOKKEEPING_FIELD]["epoch"] == 1
    assert set(raw[BOOKKEEPING_FIELD]) == {"written", "write_id", "epoch"}
    assert store.get(key) == record_by(key, "fenced")
    store.close()


def test_fenced_writes_whose_reply_was_lost_are_accepted(
    mongo_server: ServerProcess, mongo_user: tuple[str, str], database: str
) -> None:
    """A fenced insert or replace applied but unanswered is retried and succeeds."""
    proxy = DropsOneReply(mongo_server.port)
    sleeps: list[float] = []
    store = MongoRecordStore(
        uri_for(proxy.port, *mongo_user), database, TABLE, retry_policy=FAST, sleep=sleeps.append
    )
    claims = worker(store, "a", FakeClock())
    key = key_of("lost fenced reply")
    claim = claims.acquire(key).claim  # connects, claims (an insert, not dropped)
    store.put(make_record(key_of("warm up")))  # creates the indexes
    proxy.armed = True
    store.put(record_by(key, "a", name="inserted"), epoch=claim.epoch)
    proxy.command, proxy.armed = "update", True
    store.put(record_by(key, "a"), replace=True, epoch=claim.epoch)
    assert proxy.dropped == 2 and len(sleeps) == 2
    assert store.get(key) == record_by(key, "a")
    store.close()
    proxy.close()


# --- pickling: the store sent to a spawned process (as the process pool does) ----------


def _use_in_a_spawned_process(store: MongoRecordStore, key: str) -> tuple[Any, Any]:
    """In the child: write a record and a claim through the parent's store, read them."""
    store.put(make_record(key, {"by": "child"}))
    assert store.insert_claim(sample_claim(key))
    found = store.get(key), store.get_claims([key])[key]
    store.close()
    return found


def test_store_sent_to_a_spawned_process_works_there(secret_uri: str, database: str) -> None:
    """A used store travels to a spawned worker, which writes and reads through it."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    store = MongoRecordStore(secret_uri, database, TABLE)
    store.put(make_record(key_of("parent")))  # a client, indexes made
    key = key_of("child")
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        record, claim = pool.submit(_use_in_a_spawned_process, store, key).result(timeout=300)
    assert record == make_record(key, {"by": "child"}) == store.get(key)
    assert claim == sample_claim(key) == store.get_claims([key])[key]
    store.close()
