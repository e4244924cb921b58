"""Claims in MongoDB or DocumentDB, mixed into :class:`~.store.MongoRecordStore`.

The claims live in a collection of their own beside the records, ``<collection>_claims``
in the same database, one document per key: :meth:`Claim.to_document` as it is (``_id``
= the key, no bookkeeping field). Each primitive is one single-document operation,
atomic on MongoDB and on DocumentDB 5.0 alike, with no transaction and no ``$expr``:

- insert-if-absent is ``insert_one``: the unique ``_id`` index refuses a second claim
  (``DuplicateKeyError``);
- compare-and-set is ``replace_one({"_id": key, "epoch": expected}, claim)`` without
  upsert: it matches a document only while the stored epoch is the expected one;
- reads are ``find`` with ``_id: {$in: [...]}`` (fifty keys per query) or
  ``find({})``.

Writes are retried on transient errors like the store's other writes (``retryWrites``
stays off). A retry after a lost reply cannot learn from the server whether the first
try applied, so when the retry is refused it reads the claim back: finding exactly our
claim means the first try was ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from ..base import CLAIMS_SUFFIX, read_only_error
from ..batches import BATCH_SIZE, read_in_batches
from ..claims import Claim

T = TypeVar("T")


class _Store(Protocol):
    """What the mixin uses of :class:`~.store.MongoRecordStore`."""

    collection: str
    read_only: bool

    @property
    def display_url(self) -> str: ...

    def collection_of(self, name: str | None = None) -> Collection[dict[str, Any]]: ...

    def call(
        self,
        action: str,
        operation: Callable[[], T],
        *,
        transient: Callable[[BaseException], bool] = ...,
    ) -> T: ...


class MongoClaims:
    """The four claim primitives (:class:`~analysis_wrapper.stores.claims.ClaimStore`)."""

    def get_claims(self: _Store, keys: Iterable[str]) -> dict[str, Claim]:
        """Look claims up with ``_id: {$in: [...]}``, fifty keys per query."""
        wanted = list(dict.fromkeys(keys))

        def read(ids: list[str]) -> list[dict[str, Any]]:
            return self.call("read", lambda: list(_claims(self).find({"_id": {"$in": ids}})))

        claims = (
            Claim.from_document(document) for document in read_in_batches(wanted, read, BATCH_SIZE)
        )
        return {claim.key: claim for claim in claims}

    def insert_claim(self: _Store, claim: Claim) -> bool:
        """Insert ``claim`` unless its key has one (``insert_one``); True when inserted."""
        _check_writable(self)
        attempts = 0

        def insert() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                _claims(self).insert_one(claim.to_document())
            except DuplicateKeyError:
                return attempts > 1 and _stored(self, claim.key) == claim
            return True

        return self.call("write a claim to", insert)

    def replace_claim(self: _Store, claim: Claim, *, expected_epoch: int) -> bool:
        """Overwrite the claim if its stored epoch is ``expected_epoch`` (one ``replace_one``)."""
        _check_writable(self)
        document = claim.to_document()
        attempts = 0

        def replace() -> bool:
            nonlocal attempts
            attempts += 1
            done = _claims(self).replace_one({"_id": claim.key, "epoch": expected_epoch}, document)
            if done.matched_count == 1:
                return True
            return attempts > 1 and _stored(self, claim.key) == claim

        return self.call("write a claim to", replace)

    def list_claims(self: _Store) -> list[Claim]:
        """Return every claim, by key."""
        documents = self.call("read", lambda: list(_claims(self).find({}).sort("_id", 1)))
        return [Claim.from_document(document) for document in documents]


def _claims(store: _Store) -> Collection[dict[str, Any]]:
    return store.collection_of(store.collection + CLAIMS_SUFFIX)


def _stored(store: _Store, key: str) -> Claim | None:
    document = _claims(store).find_one({"_id": key})
    return None if document is None else Claim.from_document(document)


def _check_writable(store: _Store) -> None:
    if store.read_only:
        raise read_only_error(store.display_url)
