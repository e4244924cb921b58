"""Claims through the AIND DocDB REST API, mixed into :class:`~.store.DocDbApiRecordStore`.

The claims live in ``<DOCDB_COLLECTION>_claims`` of the same database and API version,
one document per key (:meth:`Claim.to_document`, ``_id`` = the key), read and written
with the same ``MetadataDbClient`` calls as the records.

**Insert-if-absent is atomic.** ``insert_one`` of a claim whose key has one is refused
by the collection's unique ``_id`` index (the API answers 409, or an error quoting
E11000), so each fresh key is won by exactly one worker. A retry after a lost reply
reads the claim back and recognises its own.

**Takeover and renewal are check, write, verify.** The API documents no conditional
update. Its ``update_one`` route takes a filter and an update and always upserts; the
store sends the filter ``{"_id": key, "epoch": expected}`` with ``$set`` of every
field. A gateway that passes that filter to MongoDB/DocumentDB as given (as the test
stand-in does) refuses a write whose epoch has moved on: the upsert collides with the
existing ``_id`` (409). That is a true compare-and-set, but the gateway's code is not
published, so the store does not rely on it: it reads the claim first and refuses if
the stored epoch is not the expected one (or, for a renewal, the stored owner is not
the claim's), writes, then reads the claim back and reports success only if it is
exactly the claim it wrote.

If the gateway ignored the epoch in the filter, this can go wrong: two workers taking
over the same expired, released, finished or (with ``--retry_failed``) failed claim
within the same instant, both reading the old epoch before either writes, may both
believe they won, when the first one's write and read-back complete before the
second one's write lands. Both then run the job, holding the same epoch. What still
holds:

- fresh keys are won exactly once (the insert is atomic);
- at most one record per key: the record write is insert-if-absent too, so only one
  of two such workers records its result (the other gets ``RecordExistsError``);
- a fenced record write (``put(..., epoch=n)``) reads the claim first and writes
  nothing once it has moved on from ``n``; it cannot tell two holders of the same epoch
  apart, and a stale ``replace`` can still land in the instant between its check and
  its write (see :mod:`.store`);
- fencing: a renewal checks the stored owner as well as the epoch, so the worker whose
  claim was overwritten fails its next renewal (a heartbeat, and always the fence
  before publishing and recording), and a stalled worker whose claim was taken over
  is fenced once the takeover is visible to its read.

A claim deleted by hand between the check and the write is created again by the
upsert, held by the writer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ...errors import StoreError
from ..base import CLAIMS_SUFFIX, read_only_error
from ..claims import Claim

Document = dict[str, Any]


class _Store(Protocol):
    """What the mixin uses of :class:`~.store.DocDbApiRecordStore`."""

    collection: str
    read_only: bool

    @property
    def display_url(self) -> str: ...

    def _api(self, collection: str | None = None) -> Any: ...

    def _find(self, collection: str | None = None, **arguments: Any) -> list[Document]: ...

    def _find_by_ids(
        self, keys: Iterable[str], collection: str | None = None
    ) -> list[Document]: ...

    def _check_credentials(self) -> None: ...

    def _write_unless_duplicate(self, action: str, call: Callable[[], Any]) -> bool: ...


class DocDbApiClaims:
    """The four claim primitives (:class:`~analysis_wrapper.stores.claims.ClaimStore`)."""

    def get_claims(self: _Store, keys: Iterable[str]) -> dict[str, Claim]:
        """Look claims up with one ``find`` per batch of keys that fits in a URL."""
        claims = map(Claim.from_document, self._find_by_ids(keys, _claims(self)))
        return {claim.key: claim for claim in claims}

    def insert_claim(self: _Store, claim: Claim) -> bool:
        """Insert ``claim`` unless its key has one (``insert_one``); True when inserted."""
        _check_writable(self)
        attempts = 0

        def insert() -> Any:
            nonlocal attempts
            attempts += 1
            return self._api(_claims(self)).insert_one_docdb_record(claim.to_document())

        if self._write_unless_duplicate("insert_one", insert):
            return True
        return attempts > 1 and _stored(self, claim.key) == claim

    def replace_claim(self: _Store, claim: Claim, *, expected_epoch: int) -> bool:
        """Check the stored claim, write ours on condition, verify it is ours.

        Not guaranteed atomic: the module docstring says what holds.
        """
        _check_writable(self)
        stored = _stored(self, claim.key)
        if stored is None or stored.epoch != expected_epoch:
            return False
        if claim.epoch == expected_epoch and stored.owner != claim.owner:
            return False  # a renewal, but another worker holds this epoch
        fields = {name: value for name, value in claim.to_document().items() if name != "_id"}
        condition = {"_id": claim.key, "epoch": expected_epoch}
        attempts = 0

        def update() -> Any:
            nonlocal attempts
            attempts += 1
            api = self._api(_claims(self))
            return api._upsert_one_record(record_filter=condition, update={"$set": fields})

        try:
            written = self._write_unless_duplicate("update_one", update)
        except StoreError:
            after = _stored(self, claim.key)
            if after == claim:
                return True  # written; only the replies were lost
            if after is not None and after.epoch == expected_epoch:
                raise  # nothing moved: the write itself failed
            return False  # the epoch moved on: a gateway reported the refusal as an error
        if not written and attempts == 1:
            return False  # the filter matched nothing: the epoch moved on since the check
        return _stored(self, claim.key) == claim

    def list_claims(self: _Store) -> list[Claim]:
        """Return every claim, by key (the client pages through the replies)."""
        return [Claim.from_document(d) for d in self._find(_claims(self), sort={"_id": 1})]


def _claims(store: _Store) -> str:
    return store.collection + CLAIMS_SUFFIX


def _stored(store: _Store, key: str) -> Claim | None:
    found = store._find_by_ids([key], _claims(store))
    return Claim.from_document(found[0]) if found else None


def _check_writable(store: _Store) -> None:
    """Refuse to write when read-only; fail before sending a write that cannot be signed."""
    if store.read_only:
        raise read_only_error(store.display_url)
    store._check_credentials()
