"""Job files: both upstream shapes load, locations are normalised, bad input is one clear line."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from analysis_wrapper.errors import JobInputError, UsageError
from analysis_wrapper.job.job_file import Job, find_job_files, load_job, read_json_file

UPSTREAM = Path(__file__).resolve().parent.parent / "fixtures" / "upstream"


def _write(input_directory: Path, name: str, content: Any) -> Path:
    job_dir = input_directory / "job_dict"
    job_dir.mkdir(parents=True, exist_ok=True)
    path = job_dir / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content), encoding="utf-8")
    return path


def _load_error(tmp_path: Path, content: Any, name: str = "bad.json") -> tuple[Path, JobInputError]:
    path = _write(tmp_path, name, content)
    with pytest.raises(JobInputError) as info:
        load_job(path, tmp_path)
    return path, info.value


def _assert_one_clean_line(path: Path, error: JobInputError) -> str:
    message = str(error)
    assert "\n" not in message
    assert "Traceback" not in message
    assert 'File "' not in message
    assert message.startswith(str(path))
    assert error.path == str(path)
    return message


# --- the two upstream shapes ----------------------------------------------------------


def test_current_upstream_shape_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The current upstream job file loads with every field, and without a warning."""
    path = tmp_path / "job_dict" / "job_current_shape.json"
    path.parent.mkdir()
    shutil.copy(UPSTREAM / "job_current_shape.json", path)
    with caplog.at_level(logging.WARNING, logger="analysis_wrapper"):
        job = load_job(path, tmp_path)
    assert job.s3_location == [
        "s3://codeocean-s3datasetsbucket-1u41qdg42ur9/8351747a-f472-43f9-a53b-cd1f9aa35288"
    ]
    assert job.asset_name == ["820117_example_asset"]
    assert job.docdb_record_id == ["dfb3a13e-ed0b-48bc-8ede-d68da8f3fb8b"]
    assert job.asset_id is None
    assert job.file_location is None
    assert job.distributed_parameters == {"isi_violations_cutoff": 0.05}
    assert job.group_metadata is None
    assert isinstance(job.query, str)
    assert "820117" in job.query
    assert job.analysis_code is not None
    assert job.analysis_code.parameters == {
        "analysis_name": "Unit Filtering",
        "analysis_tag": "V1",
        "isi_violations_cutoff": 0.8,
    }
    assert job.analysis_code.version == "ad6db0dca9e5fffc1544686c01f39aac1e46c841"
    assert job.name == "job_current_shape"
    assert job.source_file == path
    assert job.input_directory == tmp_path
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_old_upstream_shape_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The older shape (asset_id, no docdb_record_id) loads, without a warning."""
    path = tmp_path / "job_dict" / "job_old_shape.json"
    path.parent.mkdir()
    shutil.copy(UPSTREAM / "job_old_shape.json", path)
    with caplog.at_level(logging.WARNING, logger="analysis_wrapper"):
        job = load_job(path, tmp_path)
    assert job.asset_id == ["50fa9416-4e21-482f-8901-889322a87ae3"]
    assert job.docdb_record_id == []
    assert job.analysis_code is None
    assert job.distributed_parameters == {"isi_violations_cutoff": 0.05}
    assert job.s3_location[0].endswith("50fa9416-4e21-482f-8901-889322a87ae3")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_minimal_job_loads(tmp_path: Path) -> None:
    """s3_location alone is a job; everything else has a default."""
    job = load_job(_write(tmp_path, "j.json", {"s3_location": ["s3://b/k"]}), tmp_path)
    assert job.asset_name == []
    assert job.docdb_record_id == []
    assert job.file_location is None
    assert job.distributed_parameters is None
    assert job.analysis_code is None
    assert job.file_paths == []


def test_query_may_be_a_dict(tmp_path: Path) -> None:
    """A query given as an object is kept as one."""
    job = load_job(
        _write(tmp_path, "j.json", {"s3_location": ["a"], "query": {"subject": "1"}}), tmp_path
    )
    assert job.query == {"subject": "1"}


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    """A UTF-8 file with a byte-order mark (as some editors save) loads."""
    path = _write(tmp_path, "j.json", b"\xef\xbb\xbf" + b'{"s3_location": ["a"]}')
    assert load_job(path, tmp_path).s3_location == ["a"]


# --- locations ------------------------------------------------------------------------


def test_locations_normalised_on_load(tmp_path: Path) -> None:
    """s3_location and file_location are in normal form once loaded."""
    job = load_job(
        _write(
            tmp_path,
            "j.json",
            {
                "s3_location": ["S3://bucket/asset/", "./sessions/x/../s1/", "file:///abs/d/"],
                "file_location": ["units/./a.csv", "/abs//b.csv"],
            },
        ),
        tmp_path,
    )
    assert job.s3_location == ["s3://bucket/asset", "sessions/s1", "/abs/d"]
    assert job.file_location == ["units/a.csv", "/abs/b.csv"]


def test_input_paths_resolve_against_input_directory(tmp_path: Path) -> None:
    """input_paths: S3 stays a string, relative paths go under the input directory."""
    job = load_job(
        _write(tmp_path, "j.json", {"s3_location": ["s3://b/k/", "sessions/s1", "/abs/d"]}),
        tmp_path,
    )
    assert job.input_paths == ["s3://b/k", tmp_path / "sessions" / "s1", Path("/abs/d")]


def test_file_paths_resolve_against_input_directory(tmp_path: Path) -> None:
    """file_paths resolve like input_paths."""
    job = load_job(
        _write(tmp_path, "j.json", {"s3_location": ["a"], "file_location": ["f/x.csv", "/y"]}),
        tmp_path,
    )
    assert job.file_paths == [tmp_path / "f" / "x.csv", Path("/y")]


def test_input_directory_is_the_one_given(tmp_path: Path) -> None:
    """Relative locations resolve under the input directory passed in, not the file's folder."""
    other = tmp_path / "elsewhere"
    path = _write(tmp_path, "j.json", {"s3_location": ["s1"]})
    job = load_job(path, other)
    assert job.input_paths == [other / "s1"]


# --- find_job_files -------------------------------------------------------------------


def test_find_job_files_sorted_json_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Only *.json files are jobs, in sorted order; other files are named in a warning."""
    for name in ("b.json", "a.json", "c10.json", "c2.json"):
        _write(tmp_path, name, {"s3_location": ["a"]})
    _write(tmp_path, "notes.txt", "not a job")
    _write(tmp_path, "job.json.bak", "{}")
    (tmp_path / "job_dict" / "folder.json").mkdir()
    with caplog.at_level(logging.WARNING, logger="analysis_wrapper"):
        files = find_job_files(tmp_path)
    assert [f.name for f in files] == ["a.json", "b.json", "c10.json", "c2.json"]
    assert all(f.parent == tmp_path / "job_dict" for f in files)
    assert "notes.txt" in caplog.text
    assert "job.json.bak" in caplog.text


def test_find_job_files_missing_job_dict(tmp_path: Path) -> None:
    """A missing job_dict folder means no jobs, not an error."""
    assert find_job_files(tmp_path) == []


def test_find_job_files_empty_job_dict(tmp_path: Path) -> None:
    """An empty job_dict folder means no jobs."""
    (tmp_path / "job_dict").mkdir()
    assert find_job_files(tmp_path) == []


def test_find_job_files_ignores_hidden_non_json_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Hidden files like .DS_Store are ignored without a warning."""
    _write(tmp_path, "a.json", {"s3_location": ["a"]})
    _write(tmp_path, ".DS_Store", b"\x00")
    with caplog.at_level(logging.WARNING, logger="analysis_wrapper"):
        files = find_job_files(tmp_path)
    assert [f.name for f in files] == ["a.json"]
    assert ".DS_Store" not in caplog.text


def test_find_job_files_in_folders_of_job_dict(tmp_path: Path) -> None:
    """job_dict/<n>/<uuid>.json, as upstream's dispatcher writes them, are jobs too."""
    _write(tmp_path, "top.json", {"s3_location": ["a"]})
    for folder, name in (("1", "f0e1.json"), ("0", "b2c3.json"), ("0", "a1b2.json")):
        (tmp_path / "job_dict" / folder).mkdir(exist_ok=True)
        (tmp_path / "job_dict" / folder / name).write_text('{"s3_location": ["a"]}')
    files = find_job_files(tmp_path)
    relative = [f.relative_to(tmp_path / "job_dict").as_posix() for f in files]
    assert relative == ["0/a1b2.json", "0/b2c3.json", "1/f0e1.json", "top.json"]


def test_find_job_files_warns_of_what_is_in_folders_and_is_not_a_job(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-JSON file in a folder, or a folder two levels down, is named in a warning."""
    _write(tmp_path, "a.json", {"s3_location": ["a"]})
    (tmp_path / "job_dict" / "0" / "deeper").mkdir(parents=True)
    (tmp_path / "job_dict" / "0" / "notes.md").write_text("notes")
    (tmp_path / "job_dict" / "0" / "deeper" / "job.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="analysis_wrapper"):
        files = find_job_files(tmp_path)
    assert [f.name for f in files] == ["a.json"]
    assert "0/notes.md" in caplog.text
    assert "0/deeper/" in caplog.text


def test_find_job_files_with_files_but_no_job_is_a_usage_error(tmp_path: Path) -> None:
    """Files in job_dict and not one job: an error naming them, not "nothing to do"."""
    _write(tmp_path, "readme.txt", "jobs go here")
    (tmp_path / "job_dict" / "empty").mkdir()
    with pytest.raises(UsageError) as caught:
        find_job_files(tmp_path)
    message = str(caught.value)
    assert "readme.txt" in message
    assert "holds no job file" in message
    assert "job_dict/*/*.json" in message
    assert "empty" not in message


def test_find_job_files_hidden_files_only_mean_no_jobs(tmp_path: Path) -> None:
    """Only hidden files (.DS_Store): no jobs, and no error."""
    _write(tmp_path, ".DS_Store", b"\x00")
    (tmp_path / "job_dict" / ".git").mkdir()
    (tmp_path / "job_dict" / ".git" / "HEAD").write_text("ref")
    assert find_job_files(tmp_path) == []


def test_find_job_files_names_at_most_five(tmp_path: Path) -> None:
    """A long listing is cut, saying how many more there are."""
    for number in range(8):
        _write(tmp_path, f"n{number}.txt", "x")
    with pytest.raises(UsageError, match=r"n4\.txt and 3 more"):
        find_job_files(tmp_path)


# --- bad input: one line naming the file and the field --------------------------------


def test_malformed_json(tmp_path: Path) -> None:
    """Malformed JSON names the file and the line and column."""
    path, error = _load_error(tmp_path, '{\n  "s3_location": ["a"],\n  oops\n}')
    message = _assert_one_clean_line(path, error)
    assert "not valid JSON" in message
    assert "line 3" in message
    assert "column 3" in message


def test_empty_file(tmp_path: Path) -> None:
    """An empty file is malformed JSON, in one line."""
    path, error = _load_error(tmp_path, "")
    assert "not valid JSON" in _assert_one_clean_line(path, error)


def test_not_utf8(tmp_path: Path) -> None:
    """A latin-1 file names the file, says it is not UTF-8 and where the bad byte is."""
    content = '{"s3_location": ["café"]}'.encode("latin-1")
    path, error = _load_error(tmp_path, content)
    message = _assert_one_clean_line(path, error)
    assert "UTF-8" in message
    assert "0xe9" in message
    assert f"offset {content.index(0xE9)}" in message


@pytest.mark.parametrize(("content", "kind"), [("[]", "list"), ('"x"', "str"), ("5", "int")])
def test_top_level_not_an_object(tmp_path: Path, content: str, kind: str) -> None:
    """A top-level JSON array (or scalar) is refused, naming the file and what it held."""
    path, error = _load_error(tmp_path, content)
    message = _assert_one_clean_line(path, error)
    assert "JSON object" in message
    assert kind in message


@pytest.mark.parametrize("value", ["x", 5, None, {"a": 1}])
def test_wrong_type_for_s3_location(tmp_path: Path, value: Any) -> None:
    """s3_location that is not a list names the field."""
    path, error = _load_error(tmp_path, {"s3_location": value})
    message = _assert_one_clean_line(path, error)
    assert error.field == "s3_location"
    assert "'s3_location'" in message


def test_wrong_type_inside_s3_location(tmp_path: Path) -> None:
    """A non-string item is named with its index."""
    path, error = _load_error(tmp_path, {"s3_location": ["ok", 5]})
    _assert_one_clean_line(path, error)
    assert error.field == "s3_location[1]"


def test_wrong_type_for_distributed_parameters(tmp_path: Path) -> None:
    """distributed_parameters that is not an object names that field."""
    path, error = _load_error(tmp_path, {"s3_location": ["a"], "distributed_parameters": [1]})
    _assert_one_clean_line(path, error)
    assert error.field == "distributed_parameters"


def test_wrong_type_nested_in_analysis_code(tmp_path: Path) -> None:
    """A bad analysis_code.parameters is named with its dotted path."""
    path, error = _load_error(
        tmp_path, {"s3_location": ["a"], "analysis_code": {"parameters": "x"}}
    )
    message = _assert_one_clean_line(path, error)
    assert error.field == "analysis_code.parameters"
    assert "'analysis_code.parameters'" in message


def test_relative_location_escaping_input_directory(tmp_path: Path) -> None:
    """A '..' escape names the field and the item's index: s3_location[0]."""
    path, error = _load_error(tmp_path, {"s3_location": ["../outside/data"]})
    message = _assert_one_clean_line(path, error)
    assert "'..'" in message
    assert error.field == "s3_location[0]"


def test_escaping_file_location_names_the_field(tmp_path: Path) -> None:
    """A '..' escape in file_location names file_location."""
    path, error = _load_error(tmp_path, {"s3_location": ["a"], "file_location": ["../x"]})
    _assert_one_clean_line(path, error)
    assert error.field.startswith("file_location")


def test_unsupported_location_scheme(tmp_path: Path) -> None:
    """An http:// location is refused, naming the field and the scheme."""
    path, error = _load_error(tmp_path, {"s3_location": ["http://example.org/x"]})
    message = _assert_one_clean_line(path, error)
    assert error.field.startswith("s3_location")
    assert "http" in message


def test_missing_s3_location(tmp_path: Path) -> None:
    """A job without s3_location names the missing field."""
    path, error = _load_error(tmp_path, {"asset_name": ["x"]})
    message = _assert_one_clean_line(path, error)
    assert error.field == "s3_location"
    assert "required" in message.lower()


def test_several_errors_are_one_line(tmp_path: Path) -> None:
    """Several wrong fields are reported together on one line, each named."""
    path, error = _load_error(tmp_path, {"s3_location": 5, "asset_name": 5})
    message = _assert_one_clean_line(path, error)
    assert "s3_location" in message
    assert "asset_name" in message


def test_long_bad_value_is_shortened(tmp_path: Path) -> None:
    """A huge wrong value is not pasted whole into the message."""
    path, error = _load_error(tmp_path, {"s3_location": "x" * 500})
    message = _assert_one_clean_line(path, error)
    assert "x" * 100 not in message


def test_unreadable_path(tmp_path: Path) -> None:
    """A job path that cannot be read is a JobInputError naming it, not an OSError."""
    with pytest.raises(JobInputError) as info:
        read_json_file(tmp_path / "missing.json")
    assert str(tmp_path / "missing.json") in str(info.value)
    assert "\n" not in str(info.value)


def test_errors_do_not_chain_a_traceback(tmp_path: Path) -> None:
    """The error suppresses its cause, so nothing prints a chained traceback."""
    _, error = _load_error(tmp_path, "{oops")
    assert error.__cause__ is None
    assert error.__suppress_context__ is True


# --- unknown fields -------------------------------------------------------------------


def test_unknown_fields_warn_and_the_job_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Unknown top-level fields are named in a warning; the job still loads."""
    path = _write(
        tmp_path,
        "j.json",
        {"s3_location": ["a"], "s3_locaton": ["b"], "distributed_parameter": {"x": 1}},
    )
    with caplog.at_level(logging.WARNING, logger="analysis_wrapper"):
        job = load_job(path, tmp_path)
    assert job.s3_location == ["a"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "'s3_locaton'" in text
    assert "'distributed_parameter'" in text
    assert str(path) in text
    assert "\n" not in text


def test_unknown_fields_in_analysis_code_do_not_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """analysis_code is an aind Code, loosely: its other fields are kept without a warning."""
    path = _write(
        tmp_path,
        "j.json",
        {"s3_location": ["a"], "analysis_code": {"object_type": "Code", "run_script": "x"}},
    )
    with caplog.at_level(logging.WARNING, logger="analysis_wrapper"):
        job = load_job(path, tmp_path)
    assert job.analysis_code is not None
    assert job.analysis_code.model_extra == {"object_type": "Code", "run_script": "x"}
    assert not caplog.records


def test_job_model_validate_directly() -> None:
    """Job.model_validate normalises too, outside of load_job."""
    job = Job.model_validate({"s3_location": ["S3://b/k/"]})
    assert job.s3_location == ["s3://b/k"]
    assert job.name == "<memory>"
