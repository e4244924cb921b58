"""Store backends, chosen from settings by one factory.

=====================  ==============================================  ==============
setting                value                                           backend
=====================  ==============================================  ==============
``DOCDB_HOST``         unset                                           SQLite file in
                                                                       ``.analysis_store``
                       ``sqlite:///abs/path.sqlite``                   that SQLite file
                       ``mongodb://...``                               MongoDB (later)
                       a host name                                     AIND DocDB API (later)
``ANALYSIS_BUCKET``    unset                                           folder in
                                                                       ``.analysis_store``
                       ``file:///abs/path`` or ``/abs/path``           that folder
                       ``s3://bucket/prefix`` or ``bucket/prefix``     S3 (later)
=====================  ==============================================  ==============

Backends that need a third-party client import it lazily, inside their own module.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError
from ..redact import mask_url
from ..settings import Capsule, StoreSettings
from .base import Record, RecordQuery, RecordStore, ResultStore, record_parameters
from .local import LocalResultStore
from .sqlite import SqliteRecordStore

__all__ = [
    "LocalResultStore",
    "Record",
    "RecordQuery",
    "RecordStore",
    "ResultStore",
    "SqliteRecordStore",
    "open_record_store",
    "open_result_store",
    "record_parameters",
]

RECORDS_FILE_NAME = "records.sqlite"
RESULTS_DIR_NAME = "results"


def open_record_store(
    settings: StoreSettings, capsule: Capsule, *, read_only: bool = False
) -> RecordStore:
    """Open the record store ``DOCDB_HOST`` names (embedded SQLite when unset).

    Raises
    ------
    ConfigError
        For a value that names a backend this version cannot use.
    """
    host = (settings.docdb_host or "").strip()
    table = settings.docdb_collection
    if not host:
        path = capsule.store_dir / RECORDS_FILE_NAME
        return SqliteRecordStore(path, table, read_only=read_only)
    if host.startswith("sqlite://"):
        parts = urlsplit(host)
        path = Path(unquote(parts.path))
        if parts.netloc or not path.is_absolute():
            raise ConfigError(f"DOCDB_HOST={host!r}: write sqlite:///absolute/path.sqlite")
        return SqliteRecordStore(path, table, read_only=read_only)
    if host.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError(
            f"DOCDB_HOST={mask_url(host)!r} selects MongoDB/DocumentDB, which is not supported "
            "yet; unset DOCDB_HOST to use the embedded SQLite record store"
        )
    raise ConfigError(
        f"DOCDB_HOST={mask_url(host)!r} selects the AIND DocDB REST API, which is not "
        "supported yet; unset DOCDB_HOST to use the embedded SQLite record store"
    )


def open_result_store(settings: StoreSettings, capsule: Capsule) -> ResultStore:
    """Open the results store ``ANALYSIS_BUCKET`` names (embedded folder when unset).

    Raises
    ------
    ConfigError
        For a value that names a backend this version cannot use.
    """
    bucket = (settings.analysis_bucket or "").strip()
    if not bucket:
        return LocalResultStore(capsule.store_dir / RESULTS_DIR_NAME)
    if bucket.startswith("file://"):
        parts = urlsplit(bucket)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"ANALYSIS_BUCKET={bucket!r}: write file:///absolute/path")
        return LocalResultStore(Path(unquote(parts.path)))
    if bucket.startswith("/"):
        return LocalResultStore(Path(bucket))
    raise ConfigError(
        f"ANALYSIS_BUCKET={mask_url(bucket)!r} selects S3, which is not supported yet; "
        "unset it to use the embedded results folder, or give file:///absolute/path"
    )
