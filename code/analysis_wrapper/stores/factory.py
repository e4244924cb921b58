"""The store backends, chosen from settings: ``open_record_store``, ``open_result_store``.

=====================  ==============================================  ==============
setting                value                                           backend
=====================  ==============================================  ==============
``DOCDB_HOST``         unset                                           SQLite file in
                                                                       ``.analysis_store``
                       ``sqlite:///abs/path.sqlite``                   that SQLite file
                       ``mongodb://...``                               MongoDB (pymongo)
                       a host name                                     AIND DocDB API
``ANALYSIS_BUCKET``    unset                                           folder in
                                                                       ``.analysis_store``
                       ``file:///abs/path`` or ``/abs/path``           that folder
                       ``s3://bucket/prefix`` or ``bucket/prefix``     S3 (boto3)
=====================  ==============================================  ==============

Backends that need a third-party client import it lazily, inside their own module.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote, urlsplit

from ..common.redact import mask_url
from ..config.settings import Capsule, StoreSettings
from ..errors import ConfigError
from .base import RecordStore, ResultStore
from .local import LocalResultStore
from .sqlite import SqliteRecordStore

__all__ = ["open_record_store", "open_result_store"]

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
        mongo = _backend("mongo.store", "mongo", "MongoDB/DocumentDB")
        store: RecordStore = mongo.MongoRecordStore(
            host, settings.docdb_database, table, read_only=read_only
        )
        return store
    if "://" in host:
        raise ConfigError(
            f"DOCDB_HOST={mask_url(host)!r}: use mongodb://..., sqlite:///path, or the "
            "AIND DocDB API's host name (no scheme)"
        )
    docdb = _backend("docdb_api.store", "docdb", "the AIND DocDB REST API")
    store = docdb.DocDbApiRecordStore(
        host, settings.docdb_database, table, settings.docdb_version, read_only=read_only
    )
    return store


def _backend(module: str, extra: str, what: str) -> ModuleType:
    """Import a backend module; name the extra to install when its client is missing."""
    try:
        return importlib.import_module(f"{__package__}.{module}")
    except ImportError as exc:
        raise ConfigError(
            f"{what} needs a package that is not installed ({exc.name}); "
            f"run: pip install 'aind-analysis-wrapper[{extra}]'"
        ) from exc


def open_result_store(settings: StoreSettings, capsule: Capsule) -> ResultStore:
    """Open the results store ``ANALYSIS_BUCKET`` names (embedded folder when unset).

    Raises
    ------
    ConfigError
        For a value that names no usable backend, or one whose client is missing.
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
    bucket_name, _, prefix = bucket.removeprefix("s3://").strip("/").partition("/")
    if ("://" in bucket and not bucket.startswith("s3://")) or not bucket_name:
        raise ConfigError(
            f"ANALYSIS_BUCKET={mask_url(bucket)!r}: use s3://bucket/prefix, bucket/prefix, "
            "file:///absolute/path or /absolute/path"
        )
    s3 = _backend("s3.store", "s3", "S3")
    results: ResultStore = s3.S3ResultStore(bucket_name, prefix.strip("/"))
    return results
