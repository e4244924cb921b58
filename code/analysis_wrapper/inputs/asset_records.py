"""The metadata records of a job's data assets (``docdb_record_id``), in one query.

The records come from the source ``METADATA_HOST`` names (unset: ``DOCDB_HOST``'s
server, as upstream's ``get_metadata_for_records`` read both from one host), in
``METADATA_DATABASE``/``METADATA_COLLECTION`` (``metadata_index``/``data_assets``):

- ``mongodb://...``: MongoDB or DocumentDB through pymongo;
- a host name: the AIND DocDB REST API through aind-data-access-api's
  ``MetadataDbClient``.

Both are the record stores of :mod:`analysis_wrapper.stores`, opened read-only, so
retries, error messages and the masking of credentials are theirs. All of a job's ids
go in one ``{"_id": {"$in": [...]}}`` query (the REST API splits a very long list into
URL-sized batches). An id with no record is reported (a warning, and
:attr:`AssetRecords.missing`), never fatal. With no source configured every entry is
``None``: the analysis decides whether it can do without.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ..common.redact import mask_url
from ..config.settings import InputSettings
from ..errors import ConfigError, StoreError
from ..stores.base import Record, RecordStore

log = logging.getLogger(__name__)

_lock = threading.Lock()
_sources: dict[tuple[int, str, str, str, str], RecordStore] = {}
_said_unconfigured = False
_registered = False


class AssetRecords:
    """The metadata records of a job's assets, one entry per ``docdb_record_id``.

    ``records[i]`` is the record of ``job.docdb_record_id[i]``, or ``None`` when it
    was not found or no source is configured.

    Parameters
    ----------
    ids : sequence of str
        The job's ``docdb_record_id`` s, in order.
    found : mapping
        The records found, by id.
    source : str or None
        Where they were looked up (credentials masked); ``None`` when no source is
        configured.
    """

    def __init__(self, ids: Sequence[str], found: dict[str, Record], source: str | None) -> None:
        self.ids = tuple(ids)
        self._found = found
        self.source = source

    def __getitem__(self, index: int) -> Record | None:
        return self._found.get(self.ids[index])

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Record | None]:
        return (self._found.get(record_id) for record_id in self.ids)

    @property
    def available(self) -> bool:
        """True when a record source is configured."""
        return self.source is not None

    @property
    def missing(self) -> list[str]:
        """The ids with no record (all of them when no source is configured)."""
        return [record_id for record_id in self.ids if record_id not in self._found]

    def by_id(self, record_id: str) -> Record | None:
        """The record with this ``_id``, or ``None``."""
        return self._found.get(record_id)

    def get(self, path: str, index: int = 0, default: Any = None) -> Any:
        """A value of one record by its dotted path, e.g. ``"subject.subject_id"``.

        Returns ``default`` when the record or any step of the path is missing.
        """
        if not 0 <= index < len(self.ids):
            return default
        value: Any = self[index]
        for step in path.split("."):
            if isinstance(value, dict) and step in value:
                value = value[step]
            elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
                value = value[int(step)]
            else:
                return default
        return value

    def __repr__(self) -> str:
        return f"AssetRecords({len(self._found)} of {len(self.ids)} found" + (
            f" in {self.source})" if self.source else ", no source configured)"
        )


def fetch_asset_records(ids: Sequence[str], settings: InputSettings, job_file: str) -> AssetRecords:
    """Look up the records of ``ids`` in one batched query.

    Parameters
    ----------
    ids : sequence of str
        The job's ``docdb_record_id`` s.
    settings : InputSettings
        Names the source.
    job_file : str
        Named in warnings and errors.

    Raises
    ------
    ConfigError
        If the source setting names no usable source, or its client is not installed.
    StoreError
        If the source cannot be reached or refuses the query.
    """
    global _said_unconfigured
    host = settings.asset_records_host
    if host is None:
        if not _said_unconfigured:
            _said_unconfigured = True
            log.info(
                "asset records are unavailable: no source configured (set METADATA_HOST, "
                "or DOCDB_HOST, to a mongodb:// URI or the AIND DocDB API host)"
            )
        return AssetRecords(ids, {}, None)
    source = _open_source(host, settings)
    wanted = [record_id for record_id in dict.fromkeys(ids) if record_id]
    if not wanted:
        return AssetRecords(ids, {}, source.display_url)
    try:
        found = source.get_many(wanted)
    except StoreError as exc:
        raise exc.with_context(f"{job_file}: cannot read the asset records") from exc
    records = AssetRecords(ids, found, source.display_url)
    if records.missing:
        log.warning(
            "%s: %d of %d asset record(s) not found in %s: %s",
            job_file,
            len(records.missing),
            len(records.ids),
            source.display_url,
            ", ".join(records.missing),
        )
    return records


def _open_source(host: str, settings: InputSettings) -> RecordStore:
    """The read-only record store holding asset records; one per process and source."""
    version = settings.metadata_version or settings.docdb_version
    database, collection = settings.metadata_database, settings.metadata_collection
    cache_key = (os.getpid(), host, database, collection, version)
    with _lock:
        if cache_key in _sources:
            return _sources[cache_key]
        store: RecordStore
        if host.startswith(("mongodb://", "mongodb+srv://")):
            from ..stores.factory import _backend

            store = _backend("mongo.store", "mongo", "MongoDB/DocumentDB").MongoRecordStore(
                host, database, collection, read_only=True
            )
        elif "://" in host:
            raise ConfigError(
                f"METADATA_HOST={mask_url(host)!r}: use mongodb://..., the AIND DocDB API's "
                "host name (no scheme), or none"
            )
        else:
            from ..stores.factory import _backend

            store = _backend(
                "docdb_api.store", "docdb", "the AIND DocDB REST API"
            ).DocDbApiRecordStore(host, database, collection, version, read_only=True)
        global _registered
        if not _registered:
            atexit.register(close_sources)
            _registered = True
        _sources[cache_key] = store
        return store


def close_sources() -> None:
    """Close every record source this process opened (at exit, or between tests)."""
    with _lock:
        stores = list(_sources.values())
        _sources.clear()
    for store in stores:
        store.close()
