"""The plan's fast paths give exactly what the plain ones give.

Planning thousands of jobs takes shortcuts: keys assembled from pre-encoded parts, a
cheap cache key for validated parameters, one merge without sources, a paused garbage
collector, bare system calls to read job files and look for manifests. Each is checked
here against the plain computation it replaces.
"""

from __future__ import annotations

import gc
import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from pydantic import field_validator

from analysis_wrapper.config.settings import RunOptions
from analysis_wrapper.errors import KeyComputationError
from analysis_wrapper.identity.key import CodeIdentity, canonical_json, compute_key, key_preimage
from analysis_wrapper.job.job_file import Job, load_job
from analysis_wrapper.job.parameters import (
    AnalysisParameters,
    job_layers,
    merge_job_parameters,
    merge_layers,
)
from analysis_wrapper.run.planning import _cache_key
from analysis_wrapper.run.runner import Analysis, RunContext, plan_run
from analysis_wrapper.stores.local import LocalResultStore, _file_url_path
from analysis_wrapper.stores.sqlite import SqliteRecordStore

CODE = CodeIdentity(url="https://github.com/example/analysis", version="ab" * 20)

# --- keys from pre-encoded parts --------------------------------------------------------

PREIMAGES = [
    key_preimage(CODE, ["s3://b/a"], [], {"analysis_name": "x", "t": 0.5}),
    key_preimage(CODE, [], [], {}),
    key_preimage(
        CODE,
        ['s3://b/quote"and\\backslash', "s3://b/ctrl\x01\x1f\ttab", "s3://b/Zählung µ 🙂"],
        ["s3://b/quote\"and\\backslash/f'ile.json", "rel/path with space"],
        {"nested": {"b": [1, 2.5, None, True], "a": "é"}, "n": -0.0, "big": 10**30},
        {"s3://b/a": 'etag"1', "/abs/path": "size:1,mtime_ns:2"},
    ),
    {"key_scheme": 1, "input_data": ["s", 1, None], "parameters": {}, "zz": True},
    {"key_scheme": True, "code": {"url": "u"}, "parameters": {"x": [1]}},
]


@pytest.mark.parametrize("preimage", PREIMAGES)
def test_key_from_encoded_parts_is_the_plain_key(preimage: dict[str, Any]) -> None:
    """Given the canonical text of some fields, compute_key gives the same key as without."""
    plain = compute_key(preimage)
    assert plain == compute_key(dict(preimage))  # the plain path is deterministic
    for fields in (["parameters"], ["code"], ["code", "parameters"], list(preimage)):
        encoded = {
            name: canonical_json(preimage[name]).decode("utf-8")
            for name in fields
            if name in preimage
        }
        assert compute_key(preimage, encoded) == plain, fields


def test_key_from_encoded_parts_refuses_what_canonical_json_refuses() -> None:
    """A lone surrogate in a location and a NaN elsewhere fail as in the plain path."""
    bad_text = key_preimage(CODE, ["s3://b/\ud800"], [], {})
    encoded = {"code": canonical_json(bad_text["code"]).decode("utf-8")}
    with pytest.raises(KeyComputationError, match="no canonical JSON form"):
        compute_key(bad_text, encoded)
    nan = {"code": {"url": "u"}, "parameters": {"x": math.nan}}
    with pytest.raises(KeyComputationError, match=r"'x'"):
        compute_key(nan, {"code": '{"url":"u"}'})


# --- parameters: one merge, one cache key ----------------------------------------------


def test_merged_values_without_sources_are_those_of_the_layers() -> None:
    """merge_job_parameters gives merge_layers' values, key order included."""
    job = Job.model_validate(
        {
            "s3_location": ["s3://b/a"],
            "analysis_code": {"parameters": {"b": 2, "dry_run": 1, "file_location": "x", "c": 3}},
            "distributed_parameters": {"c": 30, "d": 40},
        }
    )
    fixed = {"a": 1, "b": 1, "dry_run": 0}
    command_line = {"b": 20, "e": 5}
    merged = merge_job_parameters(fixed, job, command_line)
    expected, _ = merge_layers(job_layers(fixed, job, command_line))
    assert merged == expected == {"a": 1, "b": 20, "dry_run": 0, "c": 30, "d": 40, "e": 5}
    assert list(merged) == list(expected)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"x": 1}, {"x": 1.0}),
        ({"x": 1}, {"x": True}),
        ({"x": 0.0}, {"x": -0.0}),
        ({"x": "1"}, {"x": 1}),
        ({"x": None}, {"x": "None"}),
        ({"x": [1]}, {"x": [1.0]}),
        ({"x": 1}, {"y": 1}),
    ],
)
def test_cache_key_tells_different_values_apart(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    """Values that validate differently never share a cache key."""
    assert _cache_key(first) != _cache_key(second)


def test_cache_key_ignores_key_order_and_is_hashable() -> None:
    """The same values in another order share the key; object values key by their text."""
    assert _cache_key({"a": 1, "b": "x", "c": 0.5}) == _cache_key({"c": 0.5, "b": "x", "a": 1})
    with_objects = _cache_key({"a": [1, {"z": 1, "y": 2}]})
    assert with_objects == _cache_key({"a": [1, {"y": 2, "z": 1}]})
    assert hash(with_objects) == hash(_cache_key({"a": [1, {"y": 2, "z": 1}]}))


class Parameters(AnalysisParameters):
    """A field whose value type survives validation."""

    x: float | bool | int = 0.0


GC_STATE: list[bool] = []


class WatchedParameters(Parameters):
    """Records whether the garbage collector runs while parameters are validated."""

    @field_validator("x")
    @classmethod
    def _watch(cls, value: Any) -> Any:
        GC_STATE.append(gc.isenabled())
        return value


def _context(tmp_path: Path, values: list[Any], model: type[Parameters]) -> RunContext:
    inputs = tmp_path / "data"
    (inputs / "job_dict").mkdir(parents=True)
    for index, value in enumerate(values):
        job = {"s3_location": ["s3://bucket/same"], "distributed_parameters": {"x": value}}
        (inputs / "job_dict" / f"job{index}.json").write_text(json.dumps(job))
    return RunContext(
        analysis=Analysis(lambda job, parameters, results_dir: {}, model),
        options=RunOptions(inputs, tmp_path / "results", dry_run=True, plan=True),
        code=CODE,
        record_store=SqliteRecordStore(tmp_path / "records.sqlite", "t", read_only=True),
        result_store=LocalResultStore(tmp_path / "store"),
        fixed_parameters={"analysis_name": "fast"},
        command_line_parameters={},
        experimenters=("test@example.org",),
    )


def test_values_only_the_cache_key_tells_apart_get_their_own_keys(tmp_path: Path) -> None:
    """0.0 and -0.0, 1 and True: each validates on its own and keys its own result."""
    planned = plan_run(_context(tmp_path, [0.0, -0.0, 1, True, 0.0], Parameters))
    dumped = [job.parameters.model_dump(mode="json")["x"] for job in planned]  # type: ignore[union-attr]
    assert [repr(value) for value in dumped] == ["0.0", "-0.0", "1", "True", "0.0"]
    keys = [job.key for job in planned]
    assert len(set(keys[:4])) == 4
    assert keys[4] == keys[0]
    for job in planned:
        assert job.preimage is not None
        assert job.key == compute_key(job.preimage)  # the plain computation agrees


# --- the garbage collector -------------------------------------------------------------


def test_plan_pauses_the_collector_and_turns_it_back_on(tmp_path: Path) -> None:
    """The collector is off while jobs are prepared, and on again after the plan."""
    GC_STATE.clear()
    assert gc.isenabled()
    plan_run(_context(tmp_path, [1, 2], WatchedParameters))
    assert GC_STATE == [False, False]
    assert gc.isenabled()


def test_the_plan_goes_to_the_oldest_generation(tmp_path: Path) -> None:
    """What the plan keeps skips the young generations: it lives as long as the run."""
    planned = plan_run(_context(tmp_path, [1, 2], Parameters))
    oldest = {id(thing) for thing in gc.get_objects(generation=2)}
    assert all(id(job) in oldest and id(job.job) in oldest for job in planned)


def test_objects_the_program_froze_stay_frozen(tmp_path: Path) -> None:
    """A program that froze objects (before forking workers, say) finds them frozen still."""
    context = _context(tmp_path, [1], Parameters)
    gc.freeze()
    gc.disable()  # no collection moves the plan before it is looked at
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        planned = plan_run(context)
        # Unfreezing would empty the permanent generation. Its count cannot be compared
        # exactly: a frozen object still dies when its last reference goes (another
        # thread may drop one meanwhile), which lowers the count by one.
        assert 0 < gc.get_freeze_count() <= frozen
        young = {id(thing) for thing in gc.get_objects(generation=0)}
        assert id(planned[0]) in young  # the plan took the ordinary way
    finally:
        gc.enable()
        gc.unfreeze()


def test_plan_leaves_a_disabled_collector_disabled(tmp_path: Path) -> None:
    """A program that turned the collector off finds it off after planning."""
    gc.disable()
    try:
        plan_run(_context(tmp_path, [1], Parameters))
        assert not gc.isenabled()
    finally:
        gc.enable()


# --- files -----------------------------------------------------------------------------


def test_a_job_file_larger_than_one_read_loads_whole(tmp_path: Path) -> None:
    """A job file of several read chunks (here about 300 KB) loads completely."""
    labels = {f"label_{index:06d}": "x" * 20 for index in range(10_000)}
    path = tmp_path / "job_dict" / "big.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"s3_location": ["s3://b/a"], "group_metadata": labels}))
    assert path.stat().st_size > 3 * 64 * 1024
    job = load_job(path, tmp_path)
    assert job.group_metadata == labels


@pytest.mark.parametrize(
    "location",
    [
        "file:///a/b",
        "file:///a%20b/c%23d",
        "file:///a/b?query=1",
        "file:///a/b#fragment",
        "file://host/a/b",
        "file://localhost/a",
        "file:///a\tb",
        "file:///a/b ",
        "file:////a//b",
        "file:///",
        "file://",
        "file:///Zählung/µ",
        "file:///a[1];p/b:c",
    ],
)
def test_file_url_path_is_what_the_url_parser_gives(location: str) -> None:
    """The parser-free path of a plain file URL is the parser's, and others use the parser."""
    assert _file_url_path(location) == unquote(urlsplit(location).path)


def test_file_url_path_of_other_urls_is_none() -> None:
    """An s3:// or gs:// location is not this store's to look at."""
    assert _file_url_path("s3://bucket/key") is None
    assert _file_url_path("gs://bucket/key") is None


def test_has_manifest_in_a_folder_whose_url_is_percent_encoded(tmp_path: Path) -> None:
    """A store under a folder with a space and a '#' finds its manifests."""
    store = LocalResultStore(tmp_path / "my results #1")
    key = "ab" * 32
    source = tmp_path / "out"
    source.mkdir()
    (source / "a.txt").write_text("a")
    location = store.publish(key, "attempt-1", source, {"files": []})
    assert "%20" in location and "%23" in location
    assert store.has_manifest(location) is True
    assert store.has_manifest(store.location(key, "attempt-2")) is False
    (store.root / key / "attempt-1" / "manifest.json").unlink()
    assert store.has_manifest(location) is False
