"""Beside upstream: analysis-pipeline-utils' own dispatcher makes the jobs this capsule runs.

Upstream's code runs unchanged, from PyPI (``.ci/.venv-upstream``, which ``make test``
installs), in a process of its own: its ``get_data_asset_records`` queries the AIND
DocDB REST API stand-in for data asset records (through its ``MetadataDbClient``, with
the stand-in's host in ``DOCDB_HOST``, as a dispatcher capsule is configured), and its
``write_input_model_list`` writes ``job_dict/<n>/<uuid>.json``. Nothing is patched; its
``check_task_parameters`` (which asks Code Ocean for the capsule's metadata) is not
called: it only drops jobs upstream's own wrapper already recorded.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from upstream import run_upstream

from conftest import CapsuleCopy
from standins.docdb_api import DocDbApiStandIn

# Where upstream's MetadataDbClient looks for data asset records by default.
ASSETS_DATABASE, ASSETS_COLLECTION = "metadata_index", "data_assets"

DISPATCH = """
import json, sys
from pathlib import Path
from analysis_pipeline_utils.utils_analysis_dispatch import (
    get_data_asset_records,
    write_input_model_list,
)
query, output = sys.argv[1], Path(sys.argv[2])
models = get_data_asset_records(Path("."), docdb_query=query)
write_input_model_list(iter(models), output, tasks_per_job=1)
print(len(models))
"""


@pytest.fixture
def asset_records(
    docdb_api: DocDbApiStandIn, capsule: CapsuleCopy
) -> Iterator[list[dict[str, Any]]]:
    """Data asset records of the example sessions, in the stand-in; removed afterwards."""
    subject = f"compat-{uuid.uuid4().hex[:8]}"
    records = [
        {
            "_id": str(uuid.uuid4()),
            "name": session.name,
            "location": str(session),  # a local folder: the capsule reads it in place
            "subject": {"subject_id": subject},
            "data_description": {"modalities": [{"abbreviation": "ecephys"}]},
        }
        for session in sorted((capsule.data / "sessions").iterdir())
    ]
    collection = docdb_api.mongo[ASSETS_DATABASE][ASSETS_COLLECTION]
    collection.insert_many([dict(record) for record in records])
    yield records
    collection.delete_many({"subject.subject_id": subject})


def test_jobs_from_upstreams_dispatcher_run_once_each(
    docdb_api: DocDbApiStandIn,
    asset_records: list[dict[str, Any]],
    capsule: CapsuleCopy,
    tmp_path: Path,
) -> None:
    """Its job_dict/<n>/<uuid>.json files: every job runs and is recorded, then skipped."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(capsule.data / "analysis_parameters.json", inputs)
    query = {"subject.subject_id": asset_records[0]["subject"]["subject_id"]}
    done = run_upstream(
        DISPATCH, json.dumps(query), str(inputs / "job_dict"), standin=docdb_api, scratch=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(len(asset_records))
    job_files = sorted((inputs / "job_dict").glob("*/*.json"))
    assert [path.parent.name for path in job_files] == [str(n) for n in range(len(job_files))]
    written = [json.loads(path.read_text()) for path in job_files]
    assert sorted(job["docdb_record_id"][0] for job in written) == sorted(
        record["_id"] for record in asset_records
    )
    assert all(json.loads(job["query"]) == query for job in written)

    first = capsule.run("--dry_run", "0", "--input_directory", str(inputs))
    assert first.returncode == 0, first.stderr
    summary = json.loads((capsule.results / "run_summary.json").read_text())
    assert (summary["ran"], summary["skipped"], summary["failed"]) == (len(asset_records), 0, 0)
    assert {Path(job["job_file"]).parent.parent for job in summary["jobs"]} == {inputs / "job_dict"}
    connection = sqlite3.connect(capsule.store / "records.sqlite")
    try:
        documents = [
            json.loads(row[0])
            for row in connection.execute("SELECT document FROM analysis_results")
        ]
    finally:
        connection.close()
    locations = sorted(
        data["url"]
        for document in documents
        for data in document["processing"]["data_processes"][0]["code"]["input_data"]
    )
    assert locations == sorted(record["location"] for record in asset_records)

    again = capsule.run("--dry_run", "0", "--input_directory", str(inputs))
    assert again.returncode == 0, again.stderr
    summary = json.loads((capsule.results / "run_summary.json").read_text())
    assert (summary["ran"], summary["skipped"], summary["failed"]) == (0, len(asset_records), 0)
