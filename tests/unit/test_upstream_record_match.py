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


def always(stored: Any) -> bool:
    return True


def todays(version: str) -> bool:
    """Today's code is the commit CODE names."""
    return version == CODE["version"]


PREIMAGE = {
    "code": {"url": CODE["url"], "tree": "f" * 64},
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
    """Each of code url, code (today's or not), inputs and parameters alone stops a match."""
    upstream = record(CODE)
    assert done_by_upstream(PREIMAGE, [upstream], always, todays) is upstream
    assert done_by_upstream(PREIMAGE, [upstream], lambda stored: False, todays) is None
    assert done_by_upstream(PREIMAGE, [upstream], always, lambda version: False) is None
    seen: list[str] = []
    done_by_upstream(PREIMAGE, [upstream], always, lambda version: seen.append(version) or True)
    assert seen == ["1a2b3c"]  # the record's commit, for the caller to compare trees
    other_url = {**PREIMAGE, "code": {**PREIMAGE["code"], "url": "https://github.com/x/y"}}
    assert done_by_upstream(other_url, [upstream], always, todays) is None
    more = {**PREIMAGE, "input_data": ["sessions/s1", "sessions/s2"]}
    assert done_by_upstream(more, [upstream], always, todays) is None
    files = {**PREIMAGE, "file_location": ["sessions/s1/a.nwb"]}
    assert done_by_upstream(files, [upstream], always, todays) is None
    ours = record(CODE, record_id="e" * 64)
    assert done_by_upstream(PREIMAGE, [ours], always, todays) is None


def test_the_parameters_compared_leave_file_location_out() -> None:
    """What the caller validates is the record's parameters without file_location."""
    code = {**CODE, "parameters": {"isi_violations_cutoff": 0.5, "file_location": ["a.nwb"]}}
    seen: list[dict[str, Any]] = []
    files = {**PREIMAGE, "file_location": ["a.nwb"]}
    found = done_by_upstream(
        files, [record(code)], lambda stored: seen.append(dict(stored)) or True, todays
    )
    assert found is not None
    assert seen == [{"isi_violations_cutoff": 0.5}]
