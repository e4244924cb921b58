"""job.asset_records(): the assets' metadata records from MongoDB and the DocDB REST API.

Records are put straight into SecantusDB (as DocDB holds ``metadata_index/data_assets``)
and read back through the wrapper: with pymongo for a ``mongodb://`` source, and with
aind-data-access-api's ``MetadataDbClient`` through the REST stand-in for a host name.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from analysis_wrapper.config.settings import InputSettings
from analysis_wrapper.errors import StoreError
from analysis_wrapper.inputs.asset_records import close_sources
from analysis_wrapper.job.job_file import Job, bind_inputs
from servers import free_port
from standins.docdb_api import DocDbApiStandIn


@pytest.fixture(autouse=True)
def _close_record_sources() -> Iterator[None]:
    """Close the clients each test opened, so none is left to the garbage collector."""
    yield
    close_sources()


def asset_record(record_id: str, subject_id: str) -> dict[str, Any]:
    """A metadata record as DocDB holds one (trimmed)."""
    return {
        "_id": record_id,
        "name": f"ecephys_{subject_id}_2025-03-14_10-02-11",
        "location": f"s3://bucket/ecephys_{subject_id}",
        "subject": {"subject_id": subject_id, "sex": "Female"},
        "data_description": {"project_name": "Ephys Platform"},
    }


def seeded(client: MongoClient[dict[str, Any]], count: int) -> tuple[str, str, list[str]]:
    """``count`` records in a fresh database and collection; returns their names and ids."""
    database, collection = f"meta_{uuid.uuid4().hex[:8]}", "data_assets"
    ids = [str(uuid.uuid4()) for _ in range(count)]
    client[database][collection].insert_many(
        [asset_record(record_id, f"6123{n:02d}") for n, record_id in enumerate(ids)]
    )
    return database, collection, ids


def job_with(ids: list[str], tmp_path: Path) -> Job:
    return Job(s3_location=["s3://bucket/asset"], docdb_record_id=ids).bind(
        tmp_path / "job_dict" / "job-a.json", tmp_path
    )


def test_records_come_from_mongodb_and_a_missing_id_is_reported(
    mongo_uri: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two of three ids found: records in job order, the third None, listed and warned."""
    with MongoClient(mongo_uri) as client:
        database, collection, ids = seeded(client, 2)
    absent = str(uuid.uuid4())
    job = job_with([ids[1], absent, ids[0]], tmp_path)
    bind_inputs(
        job,
        settings=InputSettings(
            METADATA_HOST=mongo_uri, METADATA_DATABASE=database, METADATA_COLLECTION=collection
        ),
    )
    with caplog.at_level(logging.WARNING, logger="analysis_wrapper"):
        records = job.asset_records()
    assert [record and record["_id"] for record in records] == [ids[1], None, ids[0]]
    assert records.get("subject.subject_id") == "612301"
    assert records.get("subject.subject_id", index=2) == "612300"
    assert records.missing == [absent] and records.available
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "job-a.json: 1 of 3 asset record(s) not found" in warning and absent in warning
    assert job.asset_records() is records  # one query per job, then kept


def test_records_come_through_the_docdb_rest_api_in_one_query(
    docdb_api: DocDbApiStandIn,
    docdb_api_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five ids, one unknown: one $in query (a page, then the empty page that ends it)."""
    database, collection, ids = seeded(docdb_api.mongo, 4)
    absent = str(uuid.uuid4())
    monkeypatch.setenv("DOCDB_HOST", docdb_api.host)  # METADATA_HOST unset: DOCDB_HOST's
    monkeypatch.setenv("METADATA_DATABASE", database)
    monkeypatch.setenv("METADATA_COLLECTION", collection)
    monkeypatch.delenv("METADATA_HOST", raising=False)
    job = job_with([*ids, absent], tmp_path)
    records = job.asset_records()
    assert [record and record["subject"]["subject_id"] for record in records] == [
        "612300",
        "612301",
        "612302",
        "612303",
        None,
    ]
    assert records.missing == [absent]
    assert records.source == f"https://{docdb_api.host}/v1/{database}/{collection}"
    # one id at a time would take five finds; the batch takes one page and an empty one
    assert [call.status for call in docdb_api.calls_to("find")] == [200, 200]
    assert all(not call.signed for call in docdb_api.calls_to("find"))


def test_an_unreachable_source_is_a_store_error_naming_job_and_source(
    tmp_path: Path, docdb_api_env: dict[str, str]
) -> None:
    """A closed port: StoreError (after bounded retries) naming the job file and the URL."""
    host = f"127.0.0.1:{free_port()}"
    job = job_with(["x"], tmp_path)
    bind_inputs(job, settings=InputSettings(METADATA_HOST=host))
    with pytest.raises(StoreError) as caught:
        job.asset_records()
    message = str(caught.value)
    assert "job-a.json: cannot read the asset records" in message
    assert f"https://{host}/v1/metadata_index/data_assets" in message
    assert "cannot connect" in message
    assert caught.value.transient is True  # the job may be tried again
