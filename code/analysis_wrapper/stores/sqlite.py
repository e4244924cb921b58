"""Records in an embedded SQLite file, safe with many processes at once.

One table per collection: ``_id`` (the key, primary key), the record as JSON text, and
when it was written. A side table ``<table>__inputs`` (``_id``, ``url``), indexed on
``url`` and written in the same transaction as the record, holds each record's input
URLs, so :meth:`SqliteRecordStore.find_by_inputs` never scans the records. Claims
(:mod:`analysis_wrapper.stores.claims`) live in ``<table>__claims``: one row per key with its
epoch and state in columns, so the compare-and-set on the epoch is one ``UPDATE ...
WHERE epoch = ?``. WAL mode
lets readers go on while a writer commits; the busy timeout makes concurrent writers
queue instead of failing.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RecordExistsError, StoreError, is_transient_os_error
from .base import (
    PARAMETERS_PATH,
    Record,
    RecordQuery,
    group_by_inputs,
    input_set_key,
    read_only_error,
    record_input_urls,
)
from .claims import Claim
from .fencing import fenced_out

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_BUSY_TIMEOUT_S = 60.0
_BATCH = 500  # well under SQLite's limit on bound parameters
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (sqlite3 names them from Python 3.11)


class SqliteRecordStore:
    """A record store in a SQLite file.

    Parameters
    ----------
    path : Path
        The database file; created (with its folder) on first write.
    table : str
        The table (collection) name.
    read_only : bool
        Never create or write anything; a missing file reads as an empty store.
    """

    def __init__(self, path: Path, table: str, *, read_only: bool = False) -> None:
        if not _TABLE_NAME.fullmatch(table):
            raise ConfigError(
                f"DOCDB_COLLECTION {table!r} is not a usable table name for the embedded "
                "store; use letters, digits, '_' and '-'"
            )
        self.path = path
        self.table = table
        self.read_only = read_only
        self._connection: sqlite3.Connection | None = None
        self._table_ready = False
        # One connection, shared with the claim heartbeat thread: calls take turns.
        self._lock = threading.RLock()

    @property
    def inputs_table(self) -> str:
        """The side table of input URLs per record, indexed on ``url``."""
        return f"{self.table}__inputs"

    @property
    def claims_table(self) -> str:
        """The table of claims, one row per key being (or last) worked on."""
        return f"{self.table}__claims"

    def __getstate__(self) -> dict[str, Any]:
        # A connection or lock cannot travel to another process; each opens its own.
        state = {**self.__dict__, "_connection": None, "_table_ready": False}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    @property
    def display_url(self) -> str:
        """``sqlite:///path#table``."""
        return f"sqlite:///{self.path.resolve().as_posix().lstrip('/')}#{self.table}"

    def _connect(self) -> sqlite3.Connection | None:
        """Open the connection once; ``None`` when read-only and nothing exists yet."""
        with self._lock:
            return self._connect_once()

    def _connect_once(self) -> sqlite3.Connection | None:
        if self._connection is not None:
            return self._connection
        try:
            if self.read_only:
                if not self.path.exists():
                    return None
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._connection = sqlite3.connect(
                    uri, uri=True, timeout=_BUSY_TIMEOUT_S, check_same_thread=False
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(
                    self.path,
                    timeout=_BUSY_TIMEOUT_S,
                    isolation_level=None,
                    check_same_thread=False,  # calls are serialised by self._lock
                )
                self._initialise(connection)
                self._connection = connection
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"cannot open record store {self.display_url}: {exc}",
                transient=_is_busy(exc) or is_transient_os_error(exc),
            ) from exc
        return self._connection

    def _initialise(self, connection: sqlite3.Connection) -> None:
        """Switch to WAL and create the table, waiting out other processes doing the same.

        Changing the journal mode can fail with "database is locked" at once, without
        the busy timeout, while another process opens a new file at the same moment.
        """
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        delay = 0.01
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                self._create_table(connection)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)

    def _create_table(self, connection: sqlite3.Connection) -> None:
        connection.execute(
            f'CREATE TABLE IF NOT EXISTS "{self.table}" ('
            "_id TEXT PRIMARY KEY, document TEXT NOT NULL, written TEXT NOT NULL)"
        )
        connection.execute(
            f'CREATE TABLE IF NOT EXISTS "{self.inputs_table}" ('
            "_id TEXT NOT NULL, url TEXT NOT NULL, PRIMARY KEY (_id, url))"
        )
        connection.execute(
            f'CREATE INDEX IF NOT EXISTS "{self.inputs_table}_url" ON "{self.inputs_table}" (url)'
        )
        connection.execute(
            f'CREATE TABLE IF NOT EXISTS "{self.claims_table}" ('
            "_id TEXT PRIMARY KEY, epoch INTEGER NOT NULL, state TEXT NOT NULL, "
            "document TEXT NOT NULL)"
        )
        self._table_ready = True

    def _has_table(self, connection: sqlite3.Connection) -> bool:
        if not self._table_ready:
            row = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (self.table,)
            ).fetchone()
            self._table_ready = row is not None
        return self._table_ready

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot {action} record store {self.display_url}: {exc}",
                transient=_is_busy(exc),
            ) from exc

    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            connection = self._connect()
            if connection is None or not self._has_table(connection):
                return []
            with self._errors("read"):
                return connection.execute(sql, tuple(args)).fetchall()

    def get(self, key: str) -> Record | None:
        """Return the record with ``_id == key``, or ``None``."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Record]:
        """Look ``keys`` up in batches of a few hundred."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Record] = {}
        for start in range(0, len(wanted), _BATCH):
            batch = wanted[start : start + _BATCH]
            marks = ",".join("?" * len(batch))
            for key, document in self._rows(
                f'SELECT _id, document FROM "{self.table}" WHERE _id IN ({marks})', batch
            ):
                found[key] = json.loads(document)
        return found

    def put(self, record: Record, *, replace: bool = False, epoch: int | None = None) -> None:
        """Insert ``record``; with ``replace``, overwrite one with the same ``_id``.

        With ``epoch``, the claim is checked in the same ``BEGIN IMMEDIATE``
        transaction as the write: the record (and its input rows) is written only if
        the key's claim row is ``running`` at that epoch, and nothing is written
        otherwise (:class:`FencedOutError`). No other writer can come between the
        check and the write.
        """
        if self.read_only:
            raise read_only_error(self.display_url)
        connection = self._connect()
        assert connection is not None
        key = record["_id"]
        document = json.dumps(record, ensure_ascii=False, allow_nan=False)
        written = datetime.now(timezone.utc).isoformat()
        sql = f'INSERT INTO "{self.table}" (_id, document, written) VALUES (?, ?, ?)'
        if replace:
            sql += (
                " ON CONFLICT(_id) DO UPDATE SET"
                " document=excluded.document, written=excluded.written"
            )
        urls = [(key, url) for url in input_set_key(record_input_urls(record))]
        with self._lock:
            self._write_record(connection, sql, (key, document, written), urls, epoch)

    def _write_record(
        self,
        connection: sqlite3.Connection,
        sql: str,
        row: tuple[str, str, str],
        urls: list[tuple[str, str]],
        epoch: int | None,
    ) -> None:
        key = row[0]
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                if epoch is not None:
                    self._check_fence(connection, key, epoch)
                connection.execute(sql, row)
                connection.execute(f'DELETE FROM "{self.inputs_table}" WHERE _id = ?', (key,))
                connection.executemany(
                    f'INSERT INTO "{self.inputs_table}" (_id, url) VALUES (?, ?)', urls
                )
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            raise RecordExistsError(
                f"a record with _id {key} already exists in {self.display_url}"
            ) from exc
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot write to record store {self.display_url}: {exc}",
                transient=_is_busy(exc),
            ) from exc

    def _check_fence(self, connection: sqlite3.Connection, key: str, epoch: int) -> None:
        """Raise :class:`FencedOutError` unless ``key``'s claim is running at ``epoch``."""
        found = connection.execute(
            f'SELECT epoch, state, document FROM "{self.claims_table}" WHERE _id = ?', (key,)
        ).fetchone()
        if found is not None and found[0] == epoch and found[1] == "running":
            return  # the columns replace_claim compares and sets
        claim = None if found is None else Claim.from_document(json.loads(found[2]))
        raise fenced_out(key, epoch, self.display_url, claim=claim)

    def find(self, query: RecordQuery) -> list[Record]:
        """Filter in SQL where the value is a scalar, and check every condition in Python."""
        clauses: list[str] = []
        args: list[Any] = []
        for name, value in query.parameters.items():
            if '"' in name:
                continue  # SQLite JSON paths cannot quote '"'; query.matches checks it below
            path = _json_path(name)
            if isinstance(value, bool) or value is None:
                clauses.append("json_type(document, ?) = ?")
                args += [path, "null" if value is None else ("true" if value else "false")]
            elif isinstance(value, str | int | float):
                clauses.append("json_extract(document, ?) = ?")
                args += [path, value]
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._rows(f'SELECT document FROM "{self.table}"{where} ORDER BY written, _id', args)
        records = (json.loads(document) for (document,) in rows)
        return [record for record in records if query.matches(record)]

    def find_by_inputs(
        self, input_sets: Iterable[Iterable[str]]
    ) -> dict[tuple[str, ...], list[Record]]:
        """Look the URLs up in the indexed side table, a few hundred per query.

        Records written before the side table existed have no rows there and are
        not found.
        """
        sets = [input_set_key(urls) for urls in input_sets]
        wanted = sorted({url for urls in sets for url in urls})
        documents: dict[str, tuple[str, str]] = {}
        connection = self._connect()
        if connection is not None and self._has_inputs_table(connection):
            for start in range(0, len(wanted), _BATCH):
                batch = wanted[start : start + _BATCH]
                marks = ",".join("?" * len(batch))
                for key, document, written in self._rows(
                    f'SELECT _id, document, written FROM "{self.table}" WHERE _id IN '
                    f'(SELECT _id FROM "{self.inputs_table}" WHERE url IN ({marks}))',
                    batch,
                ):
                    documents[key] = (written, document)
        ordered = sorted(documents.items(), key=lambda item: (item[1][0], item[0]))
        return group_by_inputs((json.loads(document) for _, (_, document) in ordered), sets)

    def _has_inputs_table(self, connection: sqlite3.Connection) -> bool:
        with self._lock, self._errors("read"):
            row = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (self.inputs_table,)
            ).fetchone()
        return row is not None

    # --- claims (see analysis_wrapper.stores.claims) ------------------------------------

    def get_claims(self, keys: Iterable[str]) -> dict[str, Claim]:
        """Return the claims among ``keys``, a few hundred keys per query."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Claim] = {}
        if not self._has_claims_table():
            return found
        for start in range(0, len(wanted), _BATCH):
            batch = wanted[start : start + _BATCH]
            marks = ",".join("?" * len(batch))
            for (document,) in self._rows(
                f'SELECT document FROM "{self.claims_table}" WHERE _id IN ({marks})', batch
            ):
                claim = Claim.from_document(json.loads(document))
                found[claim.key] = claim
        return found

    def insert_claim(self, claim: Claim) -> bool:
        """Insert ``claim`` unless its key has one (``INSERT OR IGNORE``)."""
        return self._write_claim(
            f'INSERT OR IGNORE INTO "{self.claims_table}" (_id, epoch, state, document) '
            "VALUES (?, ?, ?, ?)",
            (claim.key, claim.epoch, claim.state, _claim_json(claim)),
        )

    def replace_claim(self, claim: Claim, *, expected_epoch: int) -> bool:
        """Overwrite the claim if its stored epoch is ``expected_epoch`` (one UPDATE)."""
        return self._write_claim(
            f'UPDATE "{self.claims_table}" SET epoch = ?, state = ?, document = ? '
            "WHERE _id = ? AND epoch = ?",
            (claim.epoch, claim.state, _claim_json(claim), claim.key, expected_epoch),
        )

    def list_claims(self) -> list[Claim]:
        """Return every claim, by key."""
        if not self._has_claims_table():
            return []
        rows = self._rows(f'SELECT document FROM "{self.claims_table}" ORDER BY _id')
        return [Claim.from_document(json.loads(document)) for (document,) in rows]

    def _write_claim(self, sql: str, args: tuple[Any, ...]) -> bool:
        if self.read_only:
            raise read_only_error(self.display_url)
        with self._lock:
            connection = self._connect()
            assert connection is not None
            with self._errors("write a claim to"):
                return connection.execute(sql, args).rowcount == 1

    def _has_claims_table(self) -> bool:
        with self._lock:
            connection = self._connect()
            if connection is None:
                return False
            if not self.read_only:
                return True  # created with the records table
            with self._errors("read"):
                row = connection.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                    (self.claims_table,),
                ).fetchone()
            return row is not None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def _is_busy(exc: BaseException) -> bool:
    """Whether SQLite gave up waiting for another connection's lock (worth another try).

    The busy timeout has run out by then: another process held the file for a long
    transaction. Every other SQLite error (a corrupt or read-only file, a full disk,
    bad SQL) stays as it is, however often it is tried.
    """
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int):
        return (code & 0xFF) in _BUSY_CODES  # an extended code's low byte is its primary
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _claim_json(claim: Claim) -> str:
    return json.dumps(claim.to_document(), ensure_ascii=False, allow_nan=False)


def _json_path(parameter: str) -> str:
    steps = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in PARAMETERS_PATH)
    return "$" + steps + '."' + parameter.replace("\\", "\\\\") + '"'
