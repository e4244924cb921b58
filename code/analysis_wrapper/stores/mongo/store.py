"""Records in MongoDB or Amazon DocumentDB, through pymongo.

``DOCDB_HOST=mongodb://...`` (or ``mongodb+srv://...``) selects this store; the
records go to ``DOCDB_DATABASE`` / ``DOCDB_COLLECTION``, one document per key with
``_id`` = the key. Claims (:mod:`analysis_wrapper.stores.claims`) go to the collection
``<DOCDB_COLLECTION>_claims`` of the same database (see :mod:`.claims`).

DocumentDB-safe by construction:

- ``retryWrites=false`` is always in force, whatever the URI says (DocumentDB before
  8.0.2 refuses retryable writes). Transient errors are retried here instead, with
  backoff and jitter, a bounded number of times; an insert retried after a lost reply
  recognises its own earlier write by a token, so it never reports a false conflict.
- Only operations DocumentDB 5.0 supports: ``find`` with ``_id: {$in: [...]}`` or
  dotted-path equality, a sort, an exclusion projection, ``insert_one``,
  ``replace_one(upsert=True)`` on ``_id`` (for a fenced write, also filtered with
  ``$or`` of ``$exists``/``$lte`` on ``_store.epoch``), ``$in`` on the input URLs (a
  multikey index), ``create_index`` (ascending keys), and for claims ``replace_one``
  filtered on ``_id`` and ``epoch``. No ``$expr``, ``$function``, aggregation or
  transactions.

Each stored document carries one bookkeeping field, ``_store``: when it was written
(UTC, microseconds, ISO 8601), a write token, and for a fenced write
(``put(..., epoch=n)``) the writer's claim epoch. ``find`` returns records in write
order (as the embedded store does), the token makes inserts safe to retry, and the
epoch lets a write refuse to replace a newer worker's record. The field is outside the
aind-data-schema ``Metadata`` model, so it is removed from every record this store
returns: callers see exactly what was put.

pymongo is imported here only; the store factory imports this module lazily.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

import bson
from bson.errors import InvalidDocument
from pymongo import ASCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.errors import ConfigurationError, DuplicateKeyError, PyMongoError

from ...common.redact import mask_url
from ...common.retry import DEFAULT_POLICY, RetryPolicy, with_retries
from ...errors import ConfigError, RecordExistsError, StoreError
from ..base import (
    INPUT_URL_PATH,
    Record,
    RecordQuery,
    group_by_inputs,
    input_set_key,
    read_only_error,
)
from ..batches import BATCH_SIZE, read_in_batches
from ..fencing import claim_before_writing, fenced_out, holds
from ..server_filters import mongo_filter
from .claims import MongoClaims
from .errors import (
    explain,
    is_transient,
    mask_options,
    one_line,
    scrub,
    uri_option_names,
    uri_secrets,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Document = dict[str, Any]

BOOKKEEPING_FIELD = "_store"
"""The one field this store adds to each document; never returned to callers."""
WRITTEN_PATH = f"{BOOKKEEPING_FIELD}.written"
EPOCH_PATH = f"{BOOKKEEPING_FIELD}.epoch"
"""Where a fenced write keeps its claim epoch: a later write at an older epoch is refused."""
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""The BSON document size limit of MongoDB and DocumentDB."""
DEFAULT_SERVER_SELECTION_TIMEOUT_S = 5.0

_NO_BOOKKEEPING = {BOOKKEEPING_FIELD: 0}

# Database and collection names that MongoDB and DocumentDB both accept.
_BAD_DATABASE_CHARACTERS = re.compile(r'[/\\. "$*<>:|?\x00]')


class MongoRecordStore(MongoClaims):
    """A record store in a MongoDB or DocumentDB collection, and its claims.

    Nothing connects until the first read or write.

    Parameters
    ----------
    uri : str
        ``mongodb://[user:password@]host[:port][/?options]`` or ``mongodb+srv://...``.
        Timeouts given in the URI win over the defaults below; ``retryWrites`` is
        always false.
    database : str
        The database (``DOCDB_DATABASE``).
    collection : str
        The collection (``DOCDB_COLLECTION``).
    read_only : bool
        Never write or create anything (no database, collection or index).
    server_selection_timeout_s : float
        How long one attempt waits for a usable server (``serverSelectionTimeoutMS``
        in the URI overrides it).
    retry_policy : RetryPolicy
        Attempts and backoff for transient errors.
    sleep : callable
        Waits between attempts; replaceable so tests need not wait.
    client_options : mapping, optional
        More ``MongoClient`` keyword arguments (e.g. ``event_listeners``);
        ``retryWrites`` among them is ignored.

    Raises
    ------
    ConfigError
        For a database or collection name that MongoDB or DocumentDB refuses.
    """

    def __init__(
        self,
        uri: str,
        database: str,
        collection: str,
        *,
        read_only: bool = False,
        server_selection_timeout_s: float = DEFAULT_SERVER_SELECTION_TIMEOUT_S,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        _check_names(database, collection)
        self._uri = uri
        self.database = database
        self.collection = collection
        self.read_only = read_only
        self._server_selection_timeout_s = server_selection_timeout_s
        self._policy = retry_policy
        self._sleep = sleep
        self._client_options = dict(client_options or {})
        self._secrets = uri_secrets(uri)
        self._display_url = f"{mask_options(mask_url(uri))}#{database}.{collection}"
        self._mongo: MongoClient[Document] | None = None
        self._pid = 0
        self._indexed = False

    def __getstate__(self) -> dict[str, Any]:
        # A client cannot travel to another process (a worker); each one opens its own.
        return {**self.__dict__, "_mongo": None, "_pid": 0, "_indexed": False}

    # --- connection ------------------------------------------------------------------

    @property
    def display_url(self) -> str:
        """The URI with credentials masked, then ``#database.collection``."""
        return self._display_url

    def client(self) -> MongoClient[Document]:
        """The pymongo client, created on first use (and again in a forked process)."""
        if self._mongo is None or self._pid != os.getpid():
            options: dict[str, Any] = {
                name: value
                for name, value in self._default_options().items()
                if name.lower() not in uri_option_names(self._uri)
            }
            options.update(self._client_options)
            options["retryWrites"] = False  # DocumentDB (< 8.0.2) refuses retryable writes
            log.debug("opening a MongoDB client for %s", self.display_url)
            try:
                self._mongo = MongoClient(self._uri, **options)
            except (ValueError, TypeError) as exc:  # e.g. a port that is not a number
                raise ConfigurationError(str(exc)) from None
            self._pid = os.getpid()
            self._indexed = False
        return self._mongo

    def _default_options(self) -> dict[str, Any]:
        return {
            "serverSelectionTimeoutMS": round(self._server_selection_timeout_s * 1000),
            "connectTimeoutMS": 10_000,
            "socketTimeoutMS": 120_000,
            "appName": "aind-analysis-wrapper",
        }

    def collection_of(self, name: str | None = None) -> Collection[Document]:
        """A collection of this store's database (the records' one by default)."""
        return self.client()[self.database][name or self.collection]

    def close(self) -> None:
        """Close the client; a later call opens a new one."""
        if self._mongo is not None and self._pid == os.getpid():
            self._mongo.close()
        self._mongo = None

    # --- reads -----------------------------------------------------------------------

    def get(self, key: str) -> Record | None:
        """Return the record with ``_id == key``, or ``None``."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Record]:
        """Look ``keys`` up with ``_id: {$in: [...]}``, :data:`BATCH_SIZE` per query."""
        wanted = list(dict.fromkeys(keys))

        def read(batch: list[str]) -> list[Record]:
            return self._find({"_id": {"$in": batch}}, ordered=False)

        return {document["_id"]: document for document in read_in_batches(wanted, read, BATCH_SIZE)}

    def find(self, query: RecordQuery) -> list[Record]:
        """Filter on the server where that is exact, then check every condition here.

        Scalar conditions become dotted equality filters on the parameters; they may
        let through more than match (a scalar also matches a list that holds it, and
        null matches an absent field), never less. :meth:`RecordQuery.matches` then
        decides, so every backend returns the same records, oldest write first.
        """
        documents = self._find(mongo_filter(query), ordered=True)
        return [document for document in documents if query.matches(document)]

    def find_by_inputs(
        self, input_sets: Iterable[Iterable[str]]
    ) -> dict[tuple[str, ...], list[Record]]:
        """Find with ``$in`` on the indexed input URLs, :data:`BATCH_SIZE` URLs per query.

        The multikey index on :data:`INPUT_URL_PATH` is created with the write-order
        index, on first write; a read-only store relies on it existing.
        """
        sets = [input_set_key(urls) for urls in input_sets]
        wanted = sorted({url for urls in sets for url in urls})

        def read(urls: list[str]) -> list[Record]:
            return self.call(
                "read", lambda: list(self.collection_of().find({INPUT_URL_PATH: {"$in": urls}}))
            )

        found: dict[str, tuple[str, Record]] = {}
        for document in read_in_batches(wanted, read, BATCH_SIZE):
            bookkeeping = document.pop(BOOKKEEPING_FIELD, None)
            written = bookkeeping.get("written") if isinstance(bookkeeping, dict) else None
            found[document["_id"]] = (str(written or ""), document)
        ordered = sorted(found.values(), key=lambda item: (item[0], item[1]["_id"]))
        return group_by_inputs((document for _, document in ordered), sets)

    def _find(self, condition: Mapping[str, Any], *, ordered: bool) -> list[Record]:
        """All documents matching ``condition``, without bookkeeping; retried as a whole."""

        def read() -> list[Record]:
            cursor = self.collection_of().find(condition, _NO_BOOKKEEPING)
            if ordered:
                cursor = cursor.sort([(WRITTEN_PATH, ASCENDING), ("_id", ASCENDING)])
            return list(cursor)

        return self.call("read", read)

    # --- writes ----------------------------------------------------------------------

    def put(self, record: Record, *, replace: bool = False, epoch: int | None = None) -> None:
        """Insert ``record``; with ``replace``, replace one with the same ``_id`` (upsert).

        With ``epoch`` (fenced), the document's bookkeeping holds the epoch and:

        1. the key's claim is read first; unless it is ``running`` at ``epoch``,
           nothing is written (:class:`FencedOutError`);
        2. the write itself is conditional on the stored record: ``replace_one``
           filtered on ``_id`` and "no ``_store.epoch`` above ours", with upsert, so a
           record written at a newer epoch is never replaced (the upsert then collides
           with its ``_id``: :class:`FencedOutError`). An equal epoch is our own
           earlier try (its reply lost), replaced again. Without ``replace`` it is
           ``insert_one``; a duplicate written at a newer epoch is
           :class:`FencedOutError`, any other one :class:`RecordExistsError`.

        Step 1 narrows the window; step 2 closes it against a newer record. A stalled
        writer whose check passed can still insert a record where none is yet (a
        complete result of its own); the newer worker's fenced replace overwrites it.

        Raises
        ------
        RecordExistsError
            If a record with that ``_id`` exists and ``replace`` is false.
        FencedOutError
            If ``epoch`` is given and the claim or a newer record refuses the write.
        StoreError
            If the store is read-only, the record cannot be stored (over 16 MiB, or a
            value BSON cannot hold), or the server fails or stays unreachable.
        """
        if self.read_only:
            raise read_only_error(self.display_url)
        key = record.get("_id")
        if not isinstance(key, str) or not key:
            raise StoreError(f"a record needs a non-empty string _id to go to {self.display_url}")
        if BOOKKEEPING_FIELD in record:
            raise StoreError(
                f"record {key} has a top-level {BOOKKEEPING_FIELD!r} field, which "
                f"{self.display_url} reserves for its own bookkeeping; rename it"
            )
        token = uuid.uuid4().hex
        written = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        bookkeeping: Document = {"written": written, "write_id": token}
        if epoch is not None:
            bookkeeping["epoch"] = epoch
        document = {**record, BOOKKEEPING_FIELD: bookkeeping}
        self._check_document(key, document)
        if epoch is not None:
            claim = claim_before_writing(self, key)
            if not holds(claim, epoch):
                raise fenced_out(key, epoch, self.display_url, claim=claim)
        self._ensure_indexes()
        if replace and epoch is not None:
            self._fenced_replace(key, document, epoch)
        elif replace:
            # Two upserts of one new _id can race to a duplicate key: try again.
            self.call(
                "write to",
                lambda: self.collection_of().replace_one({"_id": key}, document, upsert=True),
                transient=lambda exc: isinstance(exc, DuplicateKeyError) or is_transient(exc),
            )
        else:
            self._insert(key, document, token, epoch)

    def _fenced_replace(self, key: str, document: Document, epoch: int) -> None:
        """Upsert ``document`` unless the stored record was written at a newer epoch."""
        not_newer = {
            "_id": key,
            "$or": [{EPOCH_PATH: {"$exists": False}}, {EPOCH_PATH: {"$lte": epoch}}],
        }

        def replace() -> None:
            try:
                self.collection_of().replace_one(not_newer, document, upsert=True)
            except DuplicateKeyError:
                stored = self._stored_epoch(key)
                if stored is not None and stored > epoch:
                    raise _NewerRecord(stored) from None
                raise  # two upserts of a new key at once: the next try replaces

        try:
            self.call(
                "write to",
                replace,
                transient=lambda exc: isinstance(exc, DuplicateKeyError) or is_transient(exc),
            )
        except _NewerRecord as newer:
            raise fenced_out(
                key, epoch, self.display_url, current_epoch=newer.epoch, newer_record=True
            ) from None

    def _insert(self, key: str, document: Document, token: str, epoch: int | None) -> None:
        """insert_one, retried; a duplicate that holds our own token is our earlier try."""
        failed_transiently = False

        def insert() -> None:
            nonlocal failed_transiently
            try:
                self.collection_of().insert_one(document)
            except DuplicateKeyError:
                if failed_transiently and self._written_by(key, token):
                    return  # the reply to an earlier attempt was lost, not the write
                raise
            except Exception as exc:
                failed_transiently = failed_transiently or is_transient(exc)
                raise

        try:
            self.call("write to", insert)
        except StoreError as exc:
            if isinstance(exc.__cause__, DuplicateKeyError):
                stored = None
                if epoch is not None:
                    stored = self.call("read", lambda: self._stored_epoch(key))
                if epoch is not None and stored is not None and stored > epoch:
                    raise fenced_out(
                        key, epoch, self.display_url, current_epoch=stored, newer_record=True
                    ) from None
                raise RecordExistsError(
                    f"a record with _id {key} already exists in collection "
                    f"{self.database}.{self.collection} of {self.display_url}"
                ) from None
            raise

    def _stored_epoch(self, key: str) -> int | None:
        """The epoch the stored record of ``key`` was written at (``None``: none, unfenced).

        One ``find_one``, not retried here: the caller's retried operation runs it.
        """
        found = self.collection_of().find_one({"_id": key}, {EPOCH_PATH: 1})
        stored = (found or {}).get(BOOKKEEPING_FIELD) or {}
        value = stored.get("epoch") if isinstance(stored, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _written_by(self, key: str, token: str) -> bool:
        found = self.collection_of().find_one({"_id": key}, {f"{BOOKKEEPING_FIELD}.write_id": 1})
        stored = (found or {}).get(BOOKKEEPING_FIELD) or {}
        return isinstance(stored, dict) and stored.get("write_id") == token

    def _ensure_indexes(self) -> None:
        """Index, once per client, the write order (``find`` sorts by it) and the inputs.

        The input URLs get a multikey index, which :meth:`find_by_inputs` queries.
        """
        if not self._indexed:
            self.call(
                "write to",
                lambda: self.collection_of().create_index(
                    [(WRITTEN_PATH, ASCENDING), ("_id", ASCENDING)]
                ),
            )
            self.call(
                "write to",
                lambda: self.collection_of().create_index([(INPUT_URL_PATH, ASCENDING)]),
            )
            self._indexed = True

    def _check_document(self, key: str, document: Document) -> None:
        """Refuse, before sending, a document over 16 MiB or one BSON cannot encode."""
        try:
            size = len(bson.encode(document))
        except (InvalidDocument, OverflowError) as exc:
            raise StoreError(
                f"record {key} cannot be stored in {self.display_url}: "
                f"{self._scrub(one_line(str(exc)))}; keep outputs and parameters to JSON "
                "values (integers within 64 bits)"
            ) from None
        if size > MAX_DOCUMENT_BYTES:
            raise StoreError(
                f"record {key} is {size / 2**20:.1f} MiB, over the 16 MiB document limit of "
                f"MongoDB/DocumentDB ({self.display_url}); write large outputs to files in "
                "the job's results folder and keep output_parameters small"
            )

    # --- errors ----------------------------------------------------------------------

    def call(
        self,
        action: str,
        operation: Callable[[], T],
        *,
        transient: Callable[[BaseException], bool] = is_transient,
    ) -> T:
        """Run ``operation`` with retries; turn any pymongo error into one StoreError line.

        Parameters
        ----------
        action : str
            ``"read"`` or ``"write to"``: completes "cannot ... record store".
        operation : callable
            The pymongo calls; run again on a transient error.
        transient : callable
            Which errors are worth another try.

        Raises
        ------
        StoreError
            Naming the store (masked), what went wrong and the remedy; its cause is
            the pymongo error, except for configuration errors (which may quote the URI).
            It is transient when ``transient`` says the last error was (no server, a
            lost connection, an election, throttling), so the job may be tried again.
        """
        try:
            return with_retries(
                operation,
                is_transient=transient,
                what=f"{action} record store {self.display_url}",
                policy=self._policy,
                sleep=self._sleep,
            )
        except (PyMongoError, InvalidDocument) as exc:
            worth_retrying = transient(exc)
            attempts = self._policy.attempts if worth_retrying else 1
            reason = explain(exc, self._scrub, self.database, read_only=self.read_only)
            message = f"cannot {action} record store {self.display_url}: {reason}"
            if attempts > 1:
                message += f" (after {attempts} attempts)"
            if isinstance(exc, ConfigurationError):
                raise StoreError(message) from None
            raise StoreError(message, transient=worth_retrying) from exc

    def _scrub(self, text: str) -> str:
        """Mask URLs' credentials and every secret of this store's URI in ``text``."""
        return scrub(text, self._secrets)


class _NewerRecord(Exception):
    """Inside a retried write: the stored record was written at a newer epoch."""

    def __init__(self, epoch: int) -> None:
        super().__init__(epoch)
        self.epoch = epoch


def _check_names(database: str, collection: str) -> None:
    if not database or len(database) > 63 or _BAD_DATABASE_CHARACTERS.search(database):
        raise ConfigError(
            f"DOCDB_DATABASE {database!r} is not a usable MongoDB/DocumentDB database name; "
            "use up to 63 letters, digits, '_' and '-'"
        )
    if (
        not collection
        or "$" in collection
        or "\x00" in collection
        or collection.startswith(("system.", "."))
        or collection.endswith(".")
    ):
        raise ConfigError(
            f"DOCDB_COLLECTION {collection!r} is not a usable MongoDB/DocumentDB collection "
            "name; use letters, digits, '_', '-' and '.', not starting with 'system.'"
        )
