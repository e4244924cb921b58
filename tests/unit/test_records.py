"""The record: an aind-data-schema Metadata document with _id = name = key."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from analysis_wrapper.identity.key import CodeIdentity
from analysis_wrapper.record.fields import (
    asset_name,
    describe_record,
    record_file_locations,
    record_process,
)
from analysis_wrapper.record.metadata import (
    DEFAULT_PROCESS_NAME,
    RUN_SCRIPT,
    RecordBuildError,
    RecordInputs,
    build_record,
)
from analysis_wrapper.stores.base import record_parameters

KEY = "3b" * 32
COMMIT = "0123456789abcdef0123456789abcdef01234567"
START = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
END = START + timedelta(seconds=4)


def _inputs(**changes: Any) -> RecordInputs:
    inputs = RecordInputs(
        key=KEY,
        location=f"file:///store/results/{KEY}",
        code=CodeIdentity(
            url="https://github.com/example/analysis",
            version=COMMIT,
            commit=COMMIT,
            name="analysis",
        ),
        input_data=["s3://bucket/asset-a", "sessions/s1"],
        asset_names={"s3://bucket/asset-a": "asset-a"},
        file_location=[],
        parameters={"analysis_name": "Unit Filtering", "isi_violations_cutoff": 0.5},
        outputs={"units_total": 10, "units_passing": 7},
        experimenters=["scientist@example.org"],
        start=START,
        end=END,
    )
    return replace(inputs, **changes)


def _process(record: dict[str, Any]) -> dict[str, Any]:
    return record["processing"]["data_processes"][0]  # type: ignore[no-any-return]


def _revalidate(record: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from aind_data_schema.core.metadata import Metadata

        Metadata.model_validate({name: value for name, value in record.items() if name != "_id"})


def test_record_id_first_and_equal_to_name_and_key() -> None:
    """_id is the first key, and _id == name == the job key."""
    record = build_record(_inputs())
    assert next(iter(record)) == "_id"
    assert record["_id"] == record["name"] == KEY


def test_record_location() -> None:
    """The location is the results-store URL of the result's folder."""
    record = build_record(_inputs())
    assert record["location"] == f"file:///store/results/{KEY}"


def test_record_is_a_metadata_document() -> None:
    """The record says it is aind-data-schema Metadata."""
    assert build_record(_inputs())["object_type"] == "Metadata"


def test_first_process_is_an_analysis() -> None:
    """processing.data_processes[0] is an Analysis DataProcess at the Analysis stage."""
    record = build_record(_inputs())
    processes = record["processing"]["data_processes"]
    assert len(processes) == 1
    assert processes[0]["process_type"] == "Analysis"
    assert processes[0]["stage"] == "Analysis"
    assert processes[0]["name"] == "analysis"
    assert record["processing"]["dependency_graph"] == {"analysis": []}


def test_process_name_defaults_when_code_has_no_name() -> None:
    """Without a code name, the process takes the wrapper's name."""
    code = CodeIdentity(url="https://github.com/example/analysis", version=COMMIT, commit=COMMIT)
    record = build_record(_inputs(code=code))
    assert _process(record)["name"] == DEFAULT_PROCESS_NAME
    assert DEFAULT_PROCESS_NAME in record["processing"]["dependency_graph"]


def test_code_block() -> None:
    """The code block holds url, version, commit_hash, the run script and the parameters."""
    code = _process(build_record(_inputs()))["code"]
    assert code["url"] == "https://github.com/example/analysis"
    assert code["version"] == COMMIT
    assert code["commit_hash"] == COMMIT
    assert code["run_script"] == RUN_SCRIPT == "code/run"
    assert code["parameters"] == {"analysis_name": "Unit Filtering", "isi_violations_cutoff": 0.5}


def test_input_data_as_upstream_writes_it_and_names_beside() -> None:
    """Each input is a data asset of its url alone; the names the job gave are beside."""
    record = build_record(_inputs())
    code = _process(record)["code"]
    assert code["input_data"] == [
        {"object_type": "Data asset", "name": None, "url": "s3://bucket/asset-a"},
        {"object_type": "Data asset", "name": None, "url": "sessions/s1"},
    ]
    assert record["input_asset_names"] == {"s3://bucket/asset-a": "asset-a"}
    assert [asset_name(record, asset) for asset in code["input_data"]] == ["asset-a", None]
    _revalidate(record)


def test_asset_ids_of_an_older_job_are_kept_beside() -> None:
    """An older-shape job's asset_id s are kept by input location; without any, no field."""
    record = build_record(_inputs(asset_ids={"s3://bucket/asset-a": "50fa9416"}))
    assert record["input_asset_ids"] == {"s3://bucket/asset-a": "50fa9416"}
    _revalidate(record)
    assert "input_asset_ids" not in build_record(_inputs())


def test_record_ids_and_input_versions_are_kept_beside() -> None:
    """The job's docdb_record_ids (by location) and the key's input versions are kept."""
    versions = {"s3://bucket/asset-a": "etag-1", "sessions/s1": "12:1700000000"}
    record = build_record(
        _inputs(record_ids={"s3://bucket/asset-a": "rec-1"}, input_versions=versions)
    )
    assert record["input_record_ids"] == {"s3://bucket/asset-a": "rec-1"}
    assert record["input_versions"] == versions
    _revalidate(record)
    plain = build_record(_inputs())
    assert "input_record_ids" not in plain
    assert "input_versions" not in plain


def test_asset_name_reads_the_older_layout_too() -> None:
    """A record written before names moved beside input_data keeps them in the entries."""
    older = {"processing": {"data_processes": [{"code": {"input_data": []}}]}}
    assert asset_name(older, {"url": "s3://b/a", "name": "a"}) == "a"
    assert asset_name(older, {"url": "s3://b/a", "name": None}) is None


def test_output_parameters_and_experimenters() -> None:
    """output_parameters holds the outputs; experimenters who ran it."""
    process = _process(build_record(_inputs()))
    assert process["output_parameters"] == {"units_total": 10, "units_passing": 7}
    assert process["experimenters"] == ["scientist@example.org"]


def test_start_and_end_are_utc() -> None:
    """Start and end are stored as UTC times that parse back to the inputs."""
    process = _process(build_record(_inputs()))
    for field, expected in (("start_date_time", START), ("end_date_time", END)):
        parsed = datetime.fromisoformat(process[field].replace("Z", "+00:00"))
        assert parsed == expected
        assert parsed.utcoffset() == timedelta(0)


def test_record_revalidates_with_metadata() -> None:
    """The record (minus _id) validates with the installed aind-data-schema Metadata."""
    _revalidate(build_record(_inputs()))


def test_record_with_notes_revalidates() -> None:
    """A record with file locations and a query validates too."""
    _revalidate(build_record(_inputs(file_location=["units.csv"], query='{"a": 1}')))


def test_dirty_version_record_revalidates() -> None:
    """A +dirty version with the bare commit as commit_hash is a valid record."""
    code = CodeIdentity(
        url="/home/me/capsule", version=f"{COMMIT}+dirty.0123456789ab", commit=COMMIT, dirty=True
    )
    record = build_record(_inputs(code=code))
    assert _process(record)["code"]["version"] == f"{COMMIT}+dirty.0123456789ab"
    _revalidate(record)


def test_record_without_commit() -> None:
    """Code outside git (no commit) still gives a valid record."""
    code = CodeIdentity(url="/home/me/capsule", version="unversioned")
    record = build_record(_inputs(code=code))
    assert _process(record)["code"]["commit_hash"] is None
    _revalidate(record)


def test_record_is_json() -> None:
    """The record is JSON-ready: it round-trips through json."""
    record = build_record(_inputs(file_location=["f.csv"], query="q"))
    assert json.loads(json.dumps(record)) == record


def test_file_location_among_parameters_and_query_in_notes() -> None:
    """As upstream keeps them: file_location among the parameters, the query in the notes."""
    record = build_record(_inputs(file_location=["a.csv", "b.csv"], query="subj=1"))
    process = _process(record)
    assert process["code"]["parameters"] == {
        "analysis_name": "Unit Filtering",
        "isi_violations_cutoff": 0.5,
        "file_location": ["a.csv", "b.csv"],
    }
    assert process["notes"].splitlines() == [
        f"Git commit hash: {COMMIT}",
        "Query used to retrieve data assets: subj=1",
    ]
    assert record_parameters(record) == {
        "analysis_name": "Unit Filtering",
        "isi_violations_cutoff": 0.5,
    }
    assert record_file_locations(record) == ["a.csv", "b.csv"]
    _revalidate(record)


def test_file_locations_of_an_older_record_come_from_its_notes() -> None:
    """A record written before file_location moved among the parameters still names them."""
    older = {"processing": {"data_processes": [{"notes": "file_location: b.csv, a.csv"}]}}
    assert record_file_locations(older) == ["a.csv", "b.csv"]
    assert record_file_locations(build_record(_inputs())) == []


def test_notes_name_the_commit_as_upstream_does() -> None:
    """Without file_location or query, the notes are the commit line alone; no commit, none."""
    assert _process(build_record(_inputs()))["notes"] == f"Git commit hash: {COMMIT}"
    code = CodeIdentity(url="/home/me/capsule", version="unversioned")
    assert _process(build_record(_inputs(code=code)))["notes"] is None


def test_record_build_error_names_the_field() -> None:
    """A value aind-data-schema rejects gives a RecordBuildError naming the key and field."""
    code = CodeIdentity(url="u", version="v", commit="not-a-commit")
    with pytest.raises(RecordBuildError) as info:
        build_record(_inputs(code=code))
    assert KEY in str(info.value)
    assert "commit_hash" in str(info.value)
    assert "\n" not in str(info.value)


def test_build_record_emits_no_warnings() -> None:
    """Building a record does not leak aind-data-schema's missing-file warnings."""
    build_record(_inputs())  # import once, so only build-time warnings are seen below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_record(_inputs())
    assert [str(w.message) for w in caught] == []


# --- describe_record / record_process -------------------------------------------------


def test_describe_record_of_a_built_record() -> None:
    """The description names the key, the end time and the code version."""
    text = describe_record(build_record(_inputs()))
    assert KEY in text
    assert "2025-01-02T03:04:09" in text
    assert COMMIT in text


def test_describe_minimal_record() -> None:
    """A record with only _id is described without error, saying what is unknown."""
    text = describe_record({"_id": "abc"})
    assert "abc" in text
    assert "unknown" in text


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"processing": None},
        {"processing": {}},
        {"processing": {"data_processes": []}},
        {"processing": {"data_processes": None}},
        {"processing": {"data_processes": ["not a dict"]}},
        {"processing": {"data_processes": [{"code": None}]}},
    ],
)
def test_describe_odd_records(record: dict[str, Any]) -> None:
    """Records missing any part still give a one-line description."""
    text = describe_record(record)
    assert "unknown" in text
    assert "\n" not in text


def test_describe_uses_start_when_no_end() -> None:
    """Without an end time, the start time is named."""
    record = {"_id": "k", "processing": {"data_processes": [{"start_date_time": "T0"}]}}
    assert "T0" in describe_record(record)


def test_record_process_returns_first_process() -> None:
    """record_process gives data_processes[0], or {} when there is none."""
    assert record_process({"processing": {"data_processes": [{"a": 1}, {"b": 2}]}}) == {"a": 1}
    assert record_process({}) == {}
