"""Parameters: four layers merged in one order, validated, and parsed from the command line."""

from __future__ import annotations

import enum
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field, ValidationError, model_validator

from analysis_wrapper.errors import ConfigError, JobInputError
from analysis_wrapper.job.job_file import Job
from analysis_wrapper.job.parameters import (
    NOT_PARAMETERS,
    AnalysisOutputs,
    AnalysisParameters,
    in_utc,
    job_layers,
    load_fixed_parameters,
    merge_layers,
    parse_command_line_value,
    validate_parameters,
)


def _job(code: dict[str, Any] | None = None, distributed: dict[str, Any] | None = None) -> Job:
    data: dict[str, Any] = {"s3_location": ["s3://bucket/asset"]}
    if code is not None:
        data["analysis_code"] = {"parameters": code}
    if distributed is not None:
        data["distributed_parameters"] = distributed
    return Job.model_validate(data)


def _merge(
    fixed: dict[str, Any],
    code: dict[str, Any] | None,
    command_line: dict[str, Any],
    distributed: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, str]]:
    return merge_layers(job_layers(fixed, _job(code, distributed), command_line))


# --- merge order: one test per adjacent pair ------------------------------------------


def test_analysis_code_parameters_beat_fixed_parameters() -> None:
    """The job's analysis_code.parameters overrides analysis_parameters.json fixed_parameters."""
    merged, sources = _merge({"x": "fixed"}, {"x": "code"}, {}, None)
    assert merged == {"x": "code"}
    assert "analysis_code" in sources["x"]


def test_command_line_beats_analysis_code_parameters() -> None:
    """The command line overrides the job's analysis_code.parameters."""
    merged, sources = _merge({}, {"x": "code"}, {"x": "cli"}, None)
    assert merged == {"x": "cli"}
    assert sources["x"] == "command line"


def test_distributed_parameters_beat_command_line() -> None:
    """The job's distributed_parameters override the command line."""
    merged, sources = _merge({}, None, {"x": "cli"}, {"x": "distributed"})
    assert merged == {"x": "distributed"}
    assert "distributed_parameters" in sources["x"]


def test_all_four_layers() -> None:
    """Each key takes the value of the highest layer that sets it, and names that layer."""
    fixed = {"a": "fixed", "b": "fixed", "c": "fixed", "d": "fixed"}
    code = {"b": "code", "c": "code", "d": "code"}
    command_line = {"c": "cli", "d": "cli"}
    distributed = {"d": "distributed"}
    merged, sources = _merge(fixed, code, command_line, distributed)
    assert merged == {"a": "fixed", "b": "code", "c": "cli", "d": "distributed"}
    assert "fixed_parameters" in sources["a"]
    assert "analysis_code.parameters" in sources["b"]
    assert sources["c"] == "command line"
    assert "distributed_parameters" in sources["d"]


def test_sources_name_four_distinct_layers() -> None:
    """The four layers have four different names, so a message can tell them apart."""
    layers = job_layers({"a": 1}, _job({"a": 2}, {"a": 4}), {"a": 3})
    assert len({layer.source for layer in layers}) == 4
    assert [dict(layer.values)["a"] for layer in layers] == [1, 2, 3, 4]


def test_merge_is_shallow_per_key() -> None:
    """A dict-valued parameter is replaced as a whole, not merged inside (as upstream)."""
    merged, _ = _merge({"d": {"x": 1, "y": 2}}, None, {}, {"d": {"x": 9}})
    assert merged["d"] == {"x": 9}


def test_lower_layer_keys_survive_when_not_overridden() -> None:
    """A key only a lower layer sets keeps its value and source."""
    merged, sources = _merge({"only_fixed": 1}, {"x": 2}, {}, {"x": 3})
    assert merged["only_fixed"] == 1
    assert "fixed_parameters" in sources["only_fixed"]


def test_empty_layers_merge_to_nothing() -> None:
    """No layer sets anything: the merge is empty."""
    assert _merge({}, None, {}, None) == ({}, {})


def test_merge_does_not_change_the_layers() -> None:
    """Merging leaves the job's own parameters and the fixed dict as they were."""
    fixed = {"x": 1}
    job = _job({"x": 2, "dry_run": 0}, {"x": 3})
    merge_layers(job_layers(fixed, job, {"x": 4}))
    assert fixed == {"x": 1}
    assert job.analysis_code is not None
    assert job.analysis_code.parameters == {"x": 2, "dry_run": 0}
    assert job.distributed_parameters == {"x": 3}


@pytest.mark.parametrize("name", sorted(NOT_PARAMETERS))
def test_not_parameters_are_dropped_from_analysis_code(name: str) -> None:
    """file_location and dry_run in analysis_code.parameters are not analysis parameters."""
    merged, sources = _merge({}, {name: "value", "x": 1}, {}, None)
    assert name not in merged
    assert name not in sources
    assert merged == {"x": 1}


def test_not_parameters_are_file_location_and_dry_run() -> None:
    """The set of dropped keys is exactly file_location and dry_run."""
    assert frozenset({"file_location", "dry_run"}) == NOT_PARAMETERS


def test_dry_run_in_analysis_code_does_not_hide_a_fixed_value() -> None:
    """Dropping dry_run from analysis_code does not remove other layers' keys."""
    merged, _ = _merge({"analysis_name": "n"}, {"dry_run": 1}, {}, None)
    assert merged == {"analysis_name": "n"}


# --- validation -----------------------------------------------------------------------


class Params(AnalysisParameters):
    cutoff: float = Field(default=0.5, ge=0)
    count: int = 3


def test_validate_parameters_returns_the_model() -> None:
    """Valid merged parameters come back as a model instance with the values."""
    result = validate_parameters(Params, {"analysis_name": "n", "cutoff": 1}, {}, "job.json")
    assert isinstance(result, Params)
    assert result.model_dump(mode="json") == {
        "analysis_name": "n",
        "analysis_tag": None,
        "cutoff": 1.0,
        "count": 3,
    }


def test_validate_parameters_error_names_file_field_and_source() -> None:
    """A rejected value gives a JobInputError naming the job file, parameters.<field> and layer."""
    merged, sources = _merge({"analysis_name": "n"}, None, {"cutoff": "abc"}, None)
    with pytest.raises(JobInputError) as info:
        validate_parameters(Params, merged, sources, "/in/job_dict/j1.json")
    error = info.value
    message = str(error)
    assert error.path == "/in/job_dict/j1.json"
    assert error.field == "parameters.cutoff"
    assert message.startswith("/in/job_dict/j1.json")
    assert "'parameters.cutoff'" in message
    assert "command line" in message
    assert "'abc'" in message
    assert "\n" not in message


def test_validate_parameters_error_names_distributed_layer() -> None:
    """A bad value from distributed_parameters is blamed on that layer, not another."""
    merged, sources = _merge(
        {"analysis_name": "n", "cutoff": 0.1}, None, {"cutoff": 0.2}, {"cutoff": -1}
    )
    with pytest.raises(JobInputError) as info:
        validate_parameters(Params, merged, sources, "j.json")
    assert "distributed_parameters" in str(info.value)
    assert "command line" not in str(info.value)


def test_validate_parameters_missing_required_field() -> None:
    """A required parameter no layer sets is named."""
    with pytest.raises(JobInputError) as info:
        validate_parameters(Params, {}, {}, "j.json")
    assert info.value.field == "parameters.analysis_name"
    assert "j.json" in str(info.value)


def test_validate_parameters_several_errors_in_one_line() -> None:
    """Two bad parameters give one line naming both."""
    merged, sources = _merge({"analysis_name": "n", "cutoff": "x"}, None, {"count": "y"}, None)
    with pytest.raises(JobInputError) as info:
        validate_parameters(Params, merged, sources, "j.json")
    message = str(info.value)
    assert "parameters.cutoff" in message
    assert "parameters.count" in message
    assert "\n" not in message
    assert info.value.field == "parameters.cutoff"


class _Ordered(AnalysisParameters):
    low: float = 0.0
    high: float = 1.0

    @model_validator(mode="after")
    def _check(self) -> _Ordered:
        if self.low >= self.high:
            raise ValueError("low must be below high")
        return self


def test_validate_parameters_model_level_error_names_parameters() -> None:
    """A whole-model check failing is blamed on 'parameters', with no dangling dot."""
    with pytest.raises(JobInputError) as info:
        validate_parameters(_Ordered, {"analysis_name": "n", "low": 2.0}, {}, "j.json")
    assert "low must be below high" in str(info.value)
    assert info.value.field == "parameters"


def test_unknown_parameter_is_rejected() -> None:
    """AnalysisParameters forbids unknown fields, so a typo cannot fall back to a default."""
    with pytest.raises(ValidationError):
        Params.model_validate({"analysis_name": "n", "cutof": 0.9})


def test_unknown_parameter_error_names_field_and_source() -> None:
    """Through validate_parameters, the typo is named with the layer that set it."""
    merged, sources = _merge({"analysis_name": "n"}, {"cutof": 0.9}, {}, None)
    with pytest.raises(JobInputError) as info:
        validate_parameters(Params, merged, sources, "j.json")
    assert info.value.field == "parameters.cutof"
    assert "analysis_code.parameters" in str(info.value)


def test_analysis_outputs_forbid_unknown_fields() -> None:
    """AnalysisOutputs subclasses reject fields they do not declare."""

    class Outputs(AnalysisOutputs):
        units: int

    with pytest.raises(ValidationError):
        Outputs.model_validate({"units": 1, "unit": 2})


# --- load_fixed_parameters ------------------------------------------------------------


def test_fixed_parameters_missing_file(tmp_path: Path) -> None:
    """No analysis_parameters.json means no fixed parameters."""
    assert load_fixed_parameters(tmp_path) == {}


def test_fixed_parameters_read(tmp_path: Path) -> None:
    """fixed_parameters is returned; distributed_parameters is ignored."""
    (tmp_path / "analysis_parameters.json").write_text(
        json.dumps(
            {
                "fixed_parameters": {"analysis_name": "n", "cutoff": 0.8},
                "distributed_parameters": [{"cutoff": 0.1}],
            }
        )
    )
    assert load_fixed_parameters(tmp_path) == {"analysis_name": "n", "cutoff": 0.8}


def test_fixed_parameters_upstream_fixture(tmp_path: Path) -> None:
    """The upstream analysis_parameters.json loads its fixed_parameters."""
    fixture = Path(__file__).parent.parent / "fixtures" / "upstream" / "analysis_parameters.json"
    (tmp_path / "analysis_parameters.json").write_bytes(fixture.read_bytes())
    fixed = load_fixed_parameters(tmp_path)
    assert fixed["analysis_name"] == "Unit Filtering"
    assert fixed["isi_violations_cutoff"] == 0.8


@pytest.mark.parametrize("content", ["{}", '{"fixed_parameters": null}'])
def test_fixed_parameters_absent_key(tmp_path: Path, content: str) -> None:
    """A file without fixed_parameters (or with null) gives none."""
    (tmp_path / "analysis_parameters.json").write_text(content)
    assert load_fixed_parameters(tmp_path) == {}


def test_fixed_parameters_invalid_json(tmp_path: Path) -> None:
    """Invalid JSON is a ConfigError naming the file."""
    path = tmp_path / "analysis_parameters.json"
    path.write_text('{"fixed_parameters": {')
    with pytest.raises(ConfigError) as info:
        load_fixed_parameters(tmp_path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_fixed_parameters_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a ConfigError naming the file."""
    path = tmp_path / "analysis_parameters.json"
    path.write_bytes('{"fixed_parameters": {"analysis_name": "Zählung"}}'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"analysis_parameters\.json"):
        load_fixed_parameters(tmp_path)


@pytest.mark.parametrize("value", ["[1, 2]", '"text"', "5"])
def test_fixed_parameters_not_an_object(tmp_path: Path, value: str) -> None:
    """fixed_parameters that is not an object is a ConfigError naming file and field."""
    path = tmp_path / "analysis_parameters.json"
    path.write_text(f'{{"fixed_parameters": {value}}}')
    with pytest.raises(ConfigError) as info:
        load_fixed_parameters(tmp_path)
    assert str(path) in str(info.value)
    assert "fixed_parameters" in str(info.value)


def test_fixed_parameters_file_not_an_object(tmp_path: Path) -> None:
    """A file holding a JSON array is a ConfigError naming the file."""
    path = tmp_path / "analysis_parameters.json"
    path.write_text("[]")
    with pytest.raises(ConfigError, match=r"analysis_parameters\.json"):
        load_fixed_parameters(tmp_path)


# --- parse_command_line_value ---------------------------------------------------------


class Colour(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


class Fields(BaseModel):
    text: str = ""
    number: float = 0.0
    whole: int = 0
    items: list[int] = Field(default_factory=list)
    mapping: dict[str, Any] = Field(default_factory=dict)
    maybe_text: str | None = None
    maybe_number: float | None = None
    choice: Literal["a", "b"] = "a"
    numeric_choice: Literal[1, 2] = 1
    colour: Colour = Colour.RED
    folder: Path = Path(".")
    flag: bool = False


def _parse(name: str, raw: str) -> Any:
    return parse_command_line_value(Fields.model_fields[name], raw)


@pytest.mark.parametrize("raw", ["0.5", "true", "[1]", "null", " padded ", "abc"])
def test_str_field_keeps_the_raw_text(raw: str) -> None:
    """A text field takes the string exactly as given, even when it looks like JSON."""
    assert _parse("text", raw) == raw


def test_float_field_reads_json_number() -> None:
    """'0.5' for a float field is the number 0.5."""
    value = _parse("number", "0.5")
    assert value == 0.5
    assert isinstance(value, float)


def test_int_field_reads_json_number() -> None:
    """'3' for an int field is the integer 3."""
    assert _parse("whole", "3") == 3


def test_list_field_reads_json() -> None:
    """A list is given as JSON."""
    assert _parse("items", "[1, 2, 3]") == [1, 2, 3]


def test_dict_field_reads_json() -> None:
    """A dict is given as JSON."""
    assert _parse("mapping", '{"a": 1, "b": [true]}') == {"a": 1, "b": [True]}


def test_optional_str_is_text() -> None:
    """Optional[str] is a text field: '0.5' stays a string."""
    assert _parse("maybe_text", "0.5") == "0.5"


def test_optional_float_reads_json() -> None:
    """Optional[float] reads JSON: '0.5' is a number."""
    assert _parse("maybe_number", "0.5") == 0.5


def test_literal_of_strings_is_text() -> None:
    """A Literal of strings takes the string as given (no JSON quoting needed)."""
    assert _parse("choice", "b") == "b"


def test_literal_of_numbers_reads_json() -> None:
    """A Literal of numbers reads JSON."""
    assert _parse("numeric_choice", "2") == 2


def test_str_enum_is_text() -> None:
    """An enum of strings takes the string as given."""
    assert _parse("colour", "blue") == "blue"


def test_path_field_is_text() -> None:
    """A Path field takes the string as given."""
    assert _parse("folder", "1") == "1"


def test_bool_field_reads_json() -> None:
    """A bool field reads 'true' as True."""
    assert _parse("flag", "true") is True


def test_bad_value_stays_a_string_for_the_model_to_reject() -> None:
    """A value that is not JSON stays a string, and the model then rejects it clearly."""
    value = _parse("number", "abc")
    assert value == "abc"
    with pytest.raises(ValidationError):
        Fields.model_validate({"number": value})


def test_parsed_values_validate() -> None:
    """Values parsed from strings validate with the model into the intended types."""
    raw = {"text": "0.5", "number": "0.5", "items": "[1,2]", "choice": "b", "maybe_text": "x"}
    parsed = {name: _parse(name, value) for name, value in raw.items()}
    model = Fields.model_validate(parsed)
    assert model.text == "0.5"
    assert model.number == 0.5
    assert model.items == [1, 2]
    assert model.choice == "b"


# --- datetimes: one instant, one value ---------------------------------------------------


class _Window(BaseModel):
    start: datetime
    end: datetime | None = None


class _Timed(AnalysisParameters):
    analysis_name: str = "timed"
    start: datetime
    window: _Window | None = None
    marks: list[datetime] = Field(default_factory=list)
    by_name: dict[str, datetime] = Field(default_factory=dict)
    pair: tuple[datetime, int] | None = None
    day: date | None = None


def test_aware_datetimes_are_converted_to_utc_everywhere() -> None:
    """Top level, nested model, list, dict and tuple: each aware datetime comes back in UTC."""
    written = "2026-03-01T12:30:00+02:00"
    result = validate_parameters(
        _Timed,
        {
            "start": written,
            "window": {"start": written, "end": "2026-03-01T13:00:00-01:00"},
            "marks": [written],
            "by_name": {"a": written},
            "pair": [written, 1],
        },
        {},
        "job.json",
    )
    instant = datetime(2026, 3, 1, 10, 30, tzinfo=timezone.utc)
    assert isinstance(result, _Timed)
    assert result.start == instant and result.start.utcoffset() == timedelta(0)
    assert result.window is not None and result.window.start.utcoffset() == timedelta(0)
    assert result.window.end == datetime(2026, 3, 1, 14, 0, tzinfo=timezone.utc)
    assert result.marks[0].utcoffset() == timedelta(0)
    assert result.by_name["a"].utcoffset() == timedelta(0)
    assert result.pair is not None and result.pair[0].utcoffset() == timedelta(0)
    dumped = result.model_dump(mode="json")
    assert dumped["start"] == dumped["marks"][0] == dumped["by_name"]["a"] == "2026-03-01T10:30:00Z"
    assert dumped["window"]["end"] == "2026-03-01T14:00:00Z"


def test_offset_and_z_validate_to_one_dump() -> None:
    """The same instant written with +02:00 and with Z dumps to one JSON value."""
    one = validate_parameters(_Timed, {"start": "2026-03-01T12:30:00+02:00"}, {}, "a.json")
    two = validate_parameters(_Timed, {"start": "2026-03-01T10:30:00Z"}, {}, "b.json")
    assert one.model_dump(mode="json") == two.model_dump(mode="json")


def test_naive_datetimes_and_dates_are_kept() -> None:
    """A datetime without an offset, and a date, are not converted."""
    result = validate_parameters(
        _Timed, {"start": "2026-03-01T12:30:00", "day": "2026-03-01"}, {}, "job.json"
    )
    assert isinstance(result, _Timed)
    assert result.start == datetime(2026, 3, 1, 12, 30) and result.start.tzinfo is None
    assert result.model_dump(mode="json")["start"] == "2026-03-01T12:30:00"
    assert result.day == date(2026, 3, 1)


def test_parameters_without_offsets_come_back_as_the_same_object() -> None:
    """Nothing to convert (UTC already, or no datetimes): the validated model is not copied."""
    value = {"a": [1, "x"], "when": datetime(2026, 1, 1, tzinfo=timezone.utc)}
    assert in_utc(value) is value
    model = _Timed.model_validate({"start": "2026-03-01T10:30:00Z", "marks": []})
    assert in_utc(model) is model
