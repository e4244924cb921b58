"""describe_changes: the field-level differences between a job's pre-image and a record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis_wrapper.identity.key import CodeIdentity, key_preimage
from analysis_wrapper.record.changes import (
    change_reasons,
    closest_record,
    compact,
    describe_changes,
    grouped_changes,
    record_file_locations,
    short_version,
)
from analysis_wrapper.record.keydiff import diff_records
from analysis_wrapper.stores.sqlite import SqliteRecordStore

OLD = "a" * 40
NEW = "b" * 40
URL = "https://github.com/example/analysis"


def record(
    parameters: dict[str, Any],
    *,
    version: str = OLD,
    url: str = URL,
    inputs: tuple[str, ...] = ("s3://bucket/session",),
    files: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A record shaped as build_record writes it."""
    notes = "file_location: " + ", ".join(files) if files else None
    return {
        "_id": "f" * 64,
        "processing": {
            "data_processes": [
                {
                    "code": {
                        "url": url,
                        "version": version,
                        "input_data": [{"url": u, "name": None} for u in inputs],
                        "parameters": parameters,
                    },
                    "notes": notes,
                    "end_date_time": "2026-01-02T03:04:05Z",
                }
            ]
        },
    }


def preimage(
    parameters: dict[str, Any],
    *,
    version: str = OLD,
    url: str = URL,
    inputs: tuple[str, ...] = ("s3://bucket/session",),
    files: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A job's key pre-image."""
    return key_preimage(CodeIdentity(url=url, version=version), inputs, files, parameters)


def test_nothing_changed_is_empty() -> None:
    """A pre-image equal to the record's fields has no changes."""
    assert (
        describe_changes(preimage({"x": 1}, files=("a.nwb",)), record({"x": 1}, files=("a.nwb",)))
        == []
    )


def test_changed_parameter_shows_old_and_new() -> None:
    """A changed parameter reads 'parameters.name old → new'."""
    changes = describe_changes(
        preimage({"isi_violations_cutoff": 0.8}), record({"isi_violations_cutoff": 0.5})
    )
    assert changes == ["parameters.isi_violations_cutoff 0.5 → 0.8"]


def test_added_and_removed_parameters() -> None:
    """Parameters only the job has are added; only the record has, removed; sorted by name."""
    changes = describe_changes(preimage({"a": "x", "b": [1, 2]}), record({"a": "x", "c": True}))
    assert changes == ["parameters.b added ([1,2])", "parameters.c removed (was true)"]


def test_int_and_float_differ_as_in_the_key() -> None:
    """1 and 1.0 give different keys, so the reason shows them as a change."""
    assert describe_changes(preimage({"x": 1.0}), record({"x": 1})) == ["parameters.x 1 → 1.0"]


def test_nested_values_compare_regardless_of_key_order() -> None:
    """Dicts equal up to key order are unchanged."""
    assert (
        describe_changes(preimage({"d": {"a": 1, "b": 2}}), record({"d": {"b": 2, "a": 1}})) == []
    )


def test_code_version_is_shortened_to_twelve_characters() -> None:
    """Commit hashes are cut to 12 characters."""
    changes = describe_changes(preimage({}, version=NEW), record({}))
    assert changes == [f"code.version {OLD[:12]} → {NEW[:12]}"]


def test_dirty_version_keeps_its_dirty_part() -> None:
    """A dirty version differs visibly from its clean commit after shortening."""
    dirty = f"{OLD}+dirty.{'c' * 64}"
    changes = describe_changes(preimage({}, version=dirty), record({}))
    assert changes == [f"code.version {OLD[:12]} → {OLD[:12]}+dirty.{'c' * 12}"]


def test_code_url_inputs_and_file_locations() -> None:
    """Code URL, input data and file location changes are each named, code first."""
    changes = describe_changes(
        preimage({}, url="https://github.com/x/y", inputs=("s3://b/2",), files=("f2",)),
        record({}, inputs=("s3://b/1",), files=("f1",)),
    )
    assert changes == [
        f'code.url "{URL}" → "https://github.com/x/y"',
        'input_data ["s3://b/1"] → ["s3://b/2"]',
        'file_location ["f1"] → ["f2"]',
    ]


def test_several_changes_in_order() -> None:
    """Code changes come before parameter changes, parameters by name."""
    changes = describe_changes(preimage({"b": 2, "a": 1}, version=NEW), record({"b": 3, "a": 0}))
    assert changes == [
        f"code.version {OLD[:12]} → {NEW[:12]}",
        "parameters.a 0 → 1",
        "parameters.b 3 → 2",
    ]


def test_long_values_are_cut() -> None:
    """Values longer than about 60 characters end in an ellipsis."""
    text = compact(list(range(100)))
    assert len(text) == 60
    assert text.endswith("…")


def test_record_without_processing_lists_every_field() -> None:
    """A record with no process differs in code and every parameter, without raising."""
    changes = describe_changes(preimage({"x": 1}), {"_id": "k"})
    assert "parameters.x added (1)" in changes
    assert changes[0] == f'code.url null → "{URL}"'


def test_record_file_locations_reads_the_note_line() -> None:
    """The 'file_location: a, b' note line becomes a sorted list; no line, no locations."""
    assert record_file_locations(record({}, files=("b.nwb", "a.nwb"))) == ["a.nwb", "b.nwb"]
    assert record_file_locations(record({})) == []


def test_short_version_leaves_short_versions_alone() -> None:
    """Release tags and short hashes are unchanged."""
    assert short_version("v1.2.3") == "v1.2.3"
    assert short_version("abc123") == "abc123"


def test_change_reasons_name_the_closest_sibling(tmp_path: Path) -> None:
    """Among records with the same inputs, the reason compares with the fewest-changes one."""
    store = SqliteRecordStore(tmp_path / "records.sqlite", "records")
    grid = [({"cutoff": 0.1, "min": 20}, "1"), ({"cutoff": 0.5, "min": 20}, "2")]
    for parameters, name in grid:
        store.put({**record(parameters), "_id": name * 64})
    store.put({**record({"cutoff": 0.1, "min": 20}, files=("a.nwb",)), "_id": "3" * 64})
    reasons = change_reasons(
        [
            preimage({"cutoff": 0.1, "min": 30}),
            preimage({"cutoff": 0.1, "min": 20}, inputs=("s3://bucket/other",)),
        ],
        store,
    )
    assert reasons == [
        "changed since record 111111111111 (2026-01-02T03:04:05Z): parameters.min 20 → 30",
        None,
    ]
    store.close()


def test_input_versions_differences_are_named_by_location() -> None:
    """INPUT_IDENTITY=content: a changed, new or gone version names its location."""
    job = key_preimage(
        CodeIdentity(url=URL, version=OLD),
        ["s3://bucket/session"],
        [],
        {},
        {"s3://bucket/session": "etag-2", "s3://bucket/new": "etag-9"},
    )
    stored = {
        **record({}),
        "input_versions": {"s3://bucket/session": "etag-1", "s3://bucket/gone": "etag-0"},
    }
    assert describe_changes(job, stored) == [
        'input_versions[s3://bucket/gone] removed (was "etag-0")',
        'input_versions[s3://bucket/new] added ("etag-9")',
        'input_versions[s3://bucket/session] "etag-1" → "etag-2"',
    ]
    assert describe_changes(job, {**stored, "input_versions": job["input_versions"]}) == []


def test_grouped_changes_put_each_difference_in_its_group() -> None:
    """Code, data and parameters, each difference once, in describe_changes' order."""
    job = preimage({"x": 2, "y": 1}, version=NEW, inputs=("s3://bucket/other",))
    stored = record({"x": 1, "y": 1})
    groups = grouped_changes(job, stored)
    assert list(groups) == ["code", "data", "parameters"]
    assert groups == {
        "code": [f"code.version {OLD[:12]} → {NEW[:12]}"],
        "data": ['input_data ["s3://bucket/session"] → ["s3://bucket/other"]'],
        "parameters": ["parameters.x 1 → 2"],
    }
    assert [c for group in groups.values() for c in group] == describe_changes(job, stored)


def test_closest_record_has_the_fewest_changes_then_is_newest() -> None:
    """Same file locations only; fewest differences; the later listed among equals."""
    job = preimage({"a": 1, "b": 2})
    one_change = {**record({"a": 1, "b": 3}), "_id": "1" * 64}
    two_changes = {**record({"a": 0, "b": 3}), "_id": "2" * 64}
    later_one = {**record({"a": 0, "b": 2}), "_id": "3" * 64}
    other_files = {**record({"a": 1, "b": 2}, files=("x.nwb",)), "_id": "4" * 64}
    nearest = closest_record(job, [one_change, two_changes, later_one, other_files])
    assert nearest is not None
    assert nearest[1]["_id"] == "3" * 64
    assert nearest[0] == ["parameters.a 0 → 1"]
    assert closest_record(job, [other_files]) is None


def test_diff_records_notes_a_record_whose_fields_do_not_give_its_key() -> None:
    """A record keyed by something else (upstream's) is compared as its fields are, noted."""
    older, newer = record({"x": 1}), {**record({"x": 2}), "_id": "e" * 64}
    result = diff_records(older, newer)
    assert result.groups["parameters"] == ["parameters.x 1 → 2"]
    assert result.count == 1
    assert len(result.notes) == 2
    assert result.notes[0].startswith("record ffffffffffff's fields do not give its key")
    assert result.lines()[-2:] == [f"note: {note}" for note in result.notes]
