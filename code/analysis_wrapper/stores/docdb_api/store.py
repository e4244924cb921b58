"""Records through the AIND DocDB REST API, with aind-data-access-api's ``MetadataDbClient``.

``DOCDB_HOST`` is the API's host name (``api.allenneuraldynamics.org``, optionally with
``:port``); the records live at ``https://<host>/<DOCDB_VERSION>/<DOCDB_DATABASE>/
<DOCDB_COLLECTION>``. Reads are unsigned. Writes are signed with SigV4 from the AWS
credentials boto3 finds (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile or
a role) and need a region (``AWS_DEFAULT_REGION``).

How each operation maps onto the API:

- ``get_many``: one ``find`` with ``{"_id": {"$in": [...]}}`` per batch of keys. A
  batch is as many keys as fit in about 6,000 URL characters (about 80 keys of 64 hex
  digits), because the filter travels in the query string and API Gateway refuses URLs
  over 8,192 characters. The client pages through a capped reply.
- ``put``: ``insert_one``; a duplicate ``_id`` is :class:`RecordExistsError`. With
  ``replace``: ``update_one`` with upsert, ``$set`` of every field and ``$unset`` of the
  fields only the stored record has, so the result is the new record as a whole.
- ``put(..., epoch=n)`` (fenced): check, write, verify, since the API has no
  conditional write and no transaction. The claim is read first and the write refused
  (:class:`FencedOutError`, nothing sent) unless it is ``running`` at ``n``; then the
  record is written as above; then the claim is read again, and if it moved on the
  error says the record *was* written (``written`` true). What this gives: a takeover
  that happened before the check always stops the stale writer; without ``replace``
  a stale writer can never overwrite a record (insert-if-absent); but a takeover and
  a newer record landing between the check and a stale ``replace`` are overwritten by
  it (the read-back then reports it, and the newer worker's own fenced replace puts its
  record back). SQLite and MongoDB close that window; this store cannot.
- ``find``: ``find`` filtered on each parameter whose condition a document store
  evaluates at least as broadly as :meth:`RecordQuery.matches` (scalars under plain
  names); every record returned is then checked with :meth:`RecordQuery.matches`, so
  the answer is exactly the reference's. Order: the collection's natural order, which is
  insertion order (a replaced record keeps its place). No field is added to records.
- ``find_by_inputs``: one ``find`` with ``{"processing.data_processes.0.code.input_data.url":
  {"$in": [...]}}`` per batch of URLs that fits in a URL, then an exact check in Python.
  The API cannot create indexes: the collection needs an ascending (multikey) index on
  that path, made server-side by its administrators, or each query scans.
- claims (:mod:`analysis_wrapper.stores.claims`): in the collection ``<DOCDB_COLLECTION>_claims``
  of the same database and version. Insert-if-absent is atomic (``insert_one``); the
  takeover is not guaranteed to be a compare-and-set: :mod:`.claims` says
  exactly what holds.

Connection errors, timeouts, 429 and 5xx are retried with backoff and jitter, a bounded
number of times; if they persist, the :class:`StoreError` is transient (the job may be
tried again). Everything else fails at once with one line that names the store and
the remedy. No message or log line holds a credential: server messages are cut to
their first line and scrubbed of the credentials in use.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ...common.redact import mask_url
from ...common.retry import DEFAULT_POLICY, RetryPolicy, with_retries
from ...errors import ConfigError, FencedOutError, RecordExistsError, StoreError
from ..base import (
    INPUT_URL_PATH,
    Record,
    RecordQuery,
    group_by_inputs,
    input_set_key,
    read_only_error,
)
from ..batches import read_batches
from ..fencing import claim_before_writing, fenced_out, holds
from ..server_filters import docdb_api_filter, url_sized_batches
from .claims import DocDbApiClaims
from .errors import (
    AWS_CREDENTIALS_HINT,
    DuplicateId,
    describe,
    hide_session_tokens_in_botocore_logs,
    is_duplicate,
    is_transient,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_HOST = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?"
)
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_.\-]+")
_VERSION = re.compile(r"v[0-9]+")
_DEFAULT_TIMEOUT_S = (10.0, 120.0)


class DocDbApiRecordStore(DocDbApiClaims):
    """A record store behind the AIND DocDB REST API, and its claims.

    Constructing it makes no network call and imports no client; the first operation
    does both.

    Parameters
    ----------
    host : str
        The API's host name, optionally with ``:port`` (no scheme; HTTPS is implied).
    database, collection : str
        Where the records are (``DOCDB_DATABASE``, ``DOCDB_COLLECTION``).
    version : str
        The API version (``DOCDB_VERSION``): ``v1`` or ``v2``.
    read_only : bool
        Never write; ``put`` raises :class:`StoreError`.
    retry_policy : RetryPolicy
        Attempts and delays for transient errors.
    timeout_s : tuple of float
        Connect and read timeouts of each request, in seconds.
    sleep : callable
        Waits between retries (tests pass a no-op).

    Raises
    ------
    ConfigError
        If ``host``, ``database``, ``collection`` or ``version`` cannot form the API's
        URL, or aind-data-access-api is not installed.
    """

    def __init__(
        self,
        host: str,
        database: str,
        collection: str,
        version: str = "v1",
        *,
        read_only: bool = False,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        timeout_s: tuple[float, float] = _DEFAULT_TIMEOUT_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        host = host.strip().strip("/")
        if not _HOST.fullmatch(host):
            raise ConfigError(
                f"DOCDB_HOST={mask_url(host)!r}: for the AIND DocDB API give a host name with "
                "an optional port and nothing else (e.g. api.allenneuraldynamics.org); "
                "writes are signed with AWS credentials, never credentials in DOCDB_HOST"
            )
        for variable, value, pattern in (
            ("DOCDB_DATABASE", database, _PATH_SEGMENT),
            ("DOCDB_COLLECTION", collection, _PATH_SEGMENT),
            ("DOCDB_VERSION", version, _VERSION),
        ):
            if not pattern.fullmatch(value):
                raise ConfigError(
                    f"{variable}={value!r} cannot be part of the DocDB API's URL; use "
                    + ("v1 or v2" if variable == "DOCDB_VERSION" else "letters, digits, _ . -")
                )
        if importlib.util.find_spec("aind_data_access_api") is None:
            raise ConfigError(
                "the AIND DocDB API needs aind-data-access-api, which is not installed; "
                "run: pip install 'aind-analysis-wrapper[docdb]'"
            )
        self.host = host
        self.database = database
        self.collection = collection
        self.version = version
        self.read_only = read_only
        self.retry_policy = retry_policy
        self.timeout_s = timeout_s
        self._sleep = sleep
        self._clients: dict[str, Any] = {}
        self._session: Any = None
        self._secrets: list[str] = []

    @property
    def display_url(self) -> str:
        """``https://host/version/database/collection``."""
        return f"https://{self.host}/{self.version}/{self.database}/{self.collection}"

    # --- reads ---------------------------------------------------------------------

    def get(self, key: str) -> Record | None:
        """Return the record with ``_id == key``, or ``None``."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Record]:
        """Look ``keys`` up with one ``find`` per batch that fits in a URL."""
        return {record["_id"]: record for record in self._find_by_ids(keys)}

    def _find_by_ids(self, keys: Iterable[str], collection: str | None = None) -> list[Record]:
        """The documents among ``keys`` of ``collection`` (the records' by default)."""

        def read(batch: list[str]) -> list[Record]:
            asked = set(batch)
            documents = self._find(
                collection, filter_query={"_id": {"$in": batch}}, sort={"_id": 1}, limit=len(batch)
            )
            return [document for document in documents if document["_id"] in asked]

        # Each batch is one HTTPS request: a few in flight hide most of their latency.
        return read_batches(list(url_sized_batches(list(dict.fromkeys(keys)))), read)

    def find(self, query: RecordQuery) -> list[Record]:
        """Filter on the server where that is exact, then check every record in Python."""
        conditions = docdb_api_filter(query)
        records = self._find(filter_query=conditions)
        return [record for record in records if query.matches(record)]

    def find_by_inputs(
        self, input_sets: Iterable[Iterable[str]]
    ) -> dict[tuple[str, ...], list[Record]]:
        """Find with ``$in`` on the input URLs, one ``find`` per batch that fits in a URL.

        Relies on a server-side index on the input URLs (see the module notes).
        """
        sets = [input_set_key(urls) for urls in input_sets]
        wanted = sorted({url for urls in sets for url in urls})

        def read(batch: list[str]) -> list[Record]:
            return self._find(filter_query={INPUT_URL_PATH: {"$in": batch}})

        found: dict[str, Record] = {}
        for record in read_batches(list(url_sized_batches(wanted)), read):
            found.setdefault(record["_id"], record)
        return group_by_inputs(found.values(), sets)

    def _find(self, collection: str | None = None, **arguments: Any) -> list[Record]:
        """One paginated ``find``, with retries; check the reply is a list of records."""
        records = self._call(
            "find", lambda: self._api(collection).retrieve_docdb_records(**arguments)
        )
        if not isinstance(records, list) or not all(
            isinstance(record, dict) and "_id" in record for record in records
        ):
            raise StoreError(
                f"record store {self.display_url}: find answered with something other than "
                "a list of records; check that DOCDB_HOST names the AIND DocDB API"
            )
        return records

    # --- writes --------------------------------------------------------------------

    def put(self, record: Record, *, replace: bool = False, epoch: int | None = None) -> None:
        """Insert ``record``; with ``replace``, make it the stored record whatever was there.

        With ``epoch`` (fenced), check, write, verify; the API has no conditional
        write, so this is weaker than the other stores (see the module notes):

        1. the key's claim is read; unless it is ``running`` at ``epoch``, nothing is
           written (:class:`FencedOutError`, ``written`` false);
        2. the record is written as without ``epoch``;
        3. the claim is read again; if it moved on meanwhile, the record *was*
           written and :class:`FencedOutError` says so (``written`` true).

        Raises
        ------
        RecordExistsError
            If a record with this ``_id`` exists and ``replace`` is false.
        FencedOutError
            If ``epoch`` is given and the claim at that epoch is no longer held.
        StoreError
            If the store is read-only, unreachable, refuses the credentials, or the
            record is too large for the API.
        """
        if self.read_only:
            raise read_only_error(self.display_url)
        key = record["_id"]
        try:
            text = json.dumps(record, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"cannot write record {key} to {self.display_url}: it holds a value with no "
                f"JSON form ({exc})"
            ) from exc
        document: Record = json.loads(text)  # a private copy; the caller's stays as it was
        size = len(text.encode())
        self._check_credentials()
        if epoch is not None:
            claim = claim_before_writing(self, key)
            if not holds(claim, epoch):
                raise fenced_out(key, epoch, self.display_url, claim=claim)
        if replace:
            self._replace(key, document, size)
        else:
            self._insert(key, document, size)
        if epoch is not None:
            self._verify_fence(key, epoch)

    def _verify_fence(self, key: str, epoch: int) -> None:
        """After a fenced write: raise if the claim moved on while the record was written."""
        try:
            claim = self.get_claims([key]).get(key)
        except StoreError as exc:
            log.warning("record %s written, but its claim could not be read back: %s", key, exc)
            return
        if holds(claim, epoch):
            return
        now = "it has no claim" if claim is None else f"at epoch {claim.epoch}, {claim.state}"
        raise FencedOutError(
            f"record {key[:12]} was written to {self.display_url}, but the claim at epoch "
            f"{epoch} was taken over meanwhile (the key's claim is {now}); the REST API has "
            "no conditional write, so this record may stand until the newer worker replaces it",
            key=key,
            epoch=epoch,
            current_epoch=None if claim is None else claim.epoch,
            written=True,
        )

    def _insert(self, key: str, document: Record, size: int) -> None:
        attempts = 0

        def insert() -> Any:
            nonlocal attempts
            attempts += 1
            return self._api().insert_one_docdb_record(document)

        try:
            self._call("insert_one", insert, size=size)
        except DuplicateId as exc:
            if attempts > 1 and _same(self.get(key), document):
                return  # an earlier attempt was written; only its reply was lost
            raise RecordExistsError(
                f"a record with _id {key} already exists in {self.display_url}"
            ) from exc

    def _replace(self, key: str, document: Record, size: int) -> None:
        if any("." in name or name.startswith("$") for name in document):
            raise StoreError(
                f"cannot replace record {key} in {self.display_url}: a top-level field name "
                "holds '.' or starts with '$'"
            )
        stored = self.get(key) or {}
        update: dict[str, Any] = {"$set": document}
        gone = {name: "" for name in stored if name not in document}
        if gone:
            update["$unset"] = gone
        try:
            self._call(
                "update_one",
                lambda: self._api()._upsert_one_record(record_filter={"_id": key}, update=update),
                size=size,
            )
        except DuplicateId as exc:  # two upserts of a new key at once: one of them loses
            raise StoreError(
                f"cannot replace record {key} in {self.display_url}: another writer stored "
                "it at the same moment; run again",
                transient=True,  # the next upsert finds the record and updates it
            ) from exc

    def _check_credentials(self) -> None:
        """Fail before sending a write that cannot be signed; learn what to scrub."""
        from botocore.exceptions import (  # type: ignore[import-untyped,unused-ignore]
            BotoCoreError,
        )

        try:
            session = self._api().boto
            credentials = session.get_credentials()
            region = session.region_name
            frozen = credentials.get_frozen_credentials() if credentials else None
        except BotoCoreError as exc:
            raise StoreError(
                f"cannot write to record store {self.display_url}: the AWS configuration "
                f"is unusable ({type(exc).__name__}); {AWS_CREDENTIALS_HINT}"
            ) from None
        if frozen is None or not frozen.access_key or not frozen.secret_key:
            raise StoreError(
                f"cannot write to record store {self.display_url}: writes are signed with AWS "
                f"credentials and none were found; {AWS_CREDENTIALS_HINT}"
            )
        if not region:
            raise StoreError(
                f"cannot write to record store {self.display_url}: no AWS region to sign "
                "with; set AWS_DEFAULT_REGION (e.g. us-west-2)"
            )
        self._secrets = [s for s in (frozen.access_key, frozen.secret_key, frozen.token) if s]

    # --- the client, retries and errors ----------------------------------------------

    def _api(self, collection: str | None = None) -> Any:
        """The ``MetadataDbClient`` of ``collection`` (the records' by default).

        Made on first use; every collection's client shares one HTTP session, which has
        timeouts, and one boto session.
        """
        name = collection or self.collection
        if name not in self._clients:
            from aind_data_access_api.document_db import (  # type: ignore[import-untyped,unused-ignore]
                MetadataDbClient,
            )

            first = next(iter(self._clients.values()), None)
            self._clients[name] = MetadataDbClient(
                host=self.host,
                database=self.database,
                collection=name,
                version=self.version,
                session=self._http_session(),
                boto=None if first is None else first.boto,
            )
        return self._clients[name]

    def _http_session(self) -> Any:
        """The one HTTP session, made on first use (again after unpickling), with timeouts."""
        if self._session is None:
            from .session import TimeoutSession

            hide_session_tokens_in_botocore_logs()
            self._session = TimeoutSession(self.timeout_s)
        return self._session

    def __getstate__(self) -> dict[str, Any]:
        # Sessions, clients (and their boto session) stay behind, and so do the
        # credentials learned for scrubbing: a copy (a pool or Dask worker) makes its
        # own on first use, with the same timeouts.
        return {**self.__dict__, "_clients": {}, "_session": None, "_secrets": []}

    def _call(self, action: str, call: Callable[[], T], *, size: int = 0) -> T:
        """Run ``call`` with retries on transient errors; translate every failure."""
        import requests

        def checked() -> T:
            try:
                return call()
            except requests.exceptions.HTTPError as exc:
                if is_duplicate(exc):
                    raise DuplicateId() from exc
                raise

        try:
            return with_retries(
                checked,
                is_transient=is_transient,
                what=f"DocDB API {action} on {self.display_url}",
                policy=self.retry_policy,
                sleep=self._sleep,
            )
        except DuplicateId:
            raise
        except Exception as exc:
            where = f"record store {self.display_url}: {action}"
            message = describe(where, exc, size, self.retry_policy.attempts, self._secrets)
            raise StoreError(message, transient=is_transient(exc)) from exc

    def _write_unless_duplicate(self, action: str, call: Callable[[], Any]) -> bool:
        """Run a write like :meth:`_call`; False when the API reports a duplicate ``_id``."""
        try:
            self._call(action, call)
        except DuplicateId:
            return False
        return True

    def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            self._session.close()
        self._session = None
        self._clients = {}


def _same(stored: Record | None, document: Record) -> bool:
    def canonical(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    return stored is not None and canonical(stored) == canonical(document)
