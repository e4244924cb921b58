"""Telling analysis-pipeline-utils' records from ours: its ``_id`` is the digest of its code."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from analysis_wrapper.record.upstream import done_by_upstream, is_upstream_record

CODE = {
    "object_type": "Code",
    "url": "https://github.com/example-lab/example-capsule",
    "name": "example-capsule",
    "version": "1a2b3c",
    "input_data": [{"object_type": "Data asset", "name": None, "url": "sessions/s1"}],
    "parameters": {"isi_violations_cutoff": 0.5, "note": "µ"},
}


def record(code: dict[str, Any], record_id: str | None = None) -> dict[str, Any]:
    text = json.dumps(code, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return {
        "_id": record_id or digest,
        "processing": {"data_processes": [{"code": code}]},
    }


PREIMAGE = {
    "code": {"url": CODE["url"], "version": CODE["version"]},
    "input_data": ["sessions/s1"],
    "file_location": [],
    "parameters": {"isi_violations_cutoff": 0.5},
}


def test_upstreams_id_is_the_digest_of_its_code() -> None:
    """The sha256 of the code's compact JSON (non-ASCII as is) is upstream's; another is not."""
    assert is_upstream_record(record(CODE))
    assert not is_upstream_record(record(CODE, record_id="f" * 64))
    assert not is_upstream_record({"_id": "x"})


def test_the_match_needs_code_inputs_files_and_parameters() -> None:
    """Each of code version, inputs and parameters alone stops a match."""
    upstream = record(CODE)
    assert done_by_upstream(PREIMAGE, [upstream], lambda stored: True) is upstream
    assert done_by_upstream(PREIMAGE, [upstream], lambda stored: False) is None
    newer = {**PREIMAGE, "code": {**PREIMAGE["code"], "version": "9z"}}
    assert done_by_upstream(newer, [upstream], lambda stored: True) is None
    more = {**PREIMAGE, "input_data": ["sessions/s1", "sessions/s2"]}
    assert done_by_upstream(more, [upstream], lambda stored: True) is None
    files = {**PREIMAGE, "file_location": ["sessions/s1/a.nwb"]}
    assert done_by_upstream(files, [upstream], lambda stored: True) is None
    ours = record(CODE, record_id="e" * 64)
    assert done_by_upstream(PREIMAGE, [ours], lambda stored: True) is None


def test_the_parameters_compared_leave_file_location_out() -> None:
    """What the caller validates is the record's parameters without file_location."""
    code = {**CODE, "parameters": {"isi_violations_cutoff": 0.5, "file_location": ["a.nwb"]}}
    seen: list[dict[str, Any]] = []
    files = {**PREIMAGE, "file_location": ["a.nwb"]}
    found = done_by_upstream(
        files, [record(code)], lambda stored: seen.append(dict(stored)) or True
    )
    assert found is not None
    assert seen == [{"isi_violations_cutoff": 0.5}]
