"""Analysis parameters: four layers, merged in one order, then validated.

Later layers win, key by key (a shallow merge, as upstream)::

    analysis_parameters.json "fixed_parameters"
      < job "analysis_code.parameters"
      < command line (and Code Ocean app panel)
      < job "distributed_parameters"

The merged dict is validated with the user's parameters model. The validated values,
dumped in JSON mode, are what the key hashes and the record stores, so ``1`` and
``1.0`` for a float field are one value, and an aware datetime is in UTC (the same
instant written ``12:00+02:00`` or ``10:00Z`` is one value; see :func:`in_utc`).
Parameters never come from environment variables.
"""

from __future__ import annotations

import difflib
import enum
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePath
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from ..errors import ConfigError, JobInputError
from .job_file import Job, read_json_file, validation_error_to_input_error

PARAMETERS_FILE_NAME = "analysis_parameters.json"

# Keys an upstream dispatcher writes into analysis_code.parameters that are not
# analysis parameters: file_location is a job field of its own (and in the key), and
# dry_run is a wrapper flag that must never change a result's identity.
NOT_PARAMETERS = frozenset({"file_location", "dry_run"})


class AnalysisParameters(BaseModel):
    """Base class for an analysis's parameters model.

    Subclass it and add fields with descriptions: each field becomes a command-line
    flag and an app-panel parameter. Unknown parameter names are rejected, so a typo
    cannot silently fall back to a default.
    """

    model_config = ConfigDict(extra="forbid")

    analysis_name: str = Field(description="Name of the analysis; stored with every record.")
    analysis_tag: str | None = Field(
        default=None, description="Free label for a batch or version of results."
    )


class AnalysisOutputs(BaseModel):
    """Base class for an analysis's outputs model (the record's ``output_parameters``)."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ParameterLayer:
    """One source of parameters, and how to name it in messages."""

    source: str
    values: Mapping[str, Any] = field(default_factory=dict)


def load_fixed_parameters(input_directory: Path) -> dict[str, Any]:
    """Read ``fixed_parameters`` from ``<input_directory>/analysis_parameters.json``.

    The file is optional. Its ``distributed_parameters`` list is for the dispatcher
    and ignored here: each job file carries its own.

    Raises
    ------
    ConfigError
        If the file exists but is not valid JSON or ``fixed_parameters`` is not an
        object: every job depends on it, so the run cannot start.
    """
    path = input_directory / PARAMETERS_FILE_NAME
    if not path.exists():
        return {}
    try:
        data = read_json_file(path)
    except JobInputError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a JSON object with 'fixed_parameters'")
    fixed = data.get("fixed_parameters") or {}
    if not isinstance(fixed, dict):
        raise ConfigError(
            f"{path}: field 'fixed_parameters' must be an object, not {type(fixed).__name__}"
        )
    return fixed


LAYER_SOURCES = (
    f"{PARAMETERS_FILE_NAME} fixed_parameters",
    "job analysis_code.parameters",
    "command line",
    "job distributed_parameters",
)
"""The layers' names in messages, lowest precedence first."""


def check_given_parameters(
    model: type[BaseModel],
    fixed: Mapping[str, Any],
    command_line: Mapping[str, Any],
    fixed_file: Path | str,
) -> None:
    """Check the fixed and command-line parameters once, before any job is planned.

    Each name must be a field of ``model`` and each value valid for its field alone
    (checks across fields wait for each job's merged values). Every job shares these
    layers, so a mistake here is the run's, reported once, not once per job.

    Raises
    ------
    ConfigError
        Naming the file or flag, the field, what is wrong and the remedy: for an
        unknown name, the valid names and the closest one.
    """
    fields = model.model_fields
    for name, value in fixed.items():
        where = f"{fixed_file}: fixed_parameters.{name}"
        if name not in fields:
            raise ConfigError(
                f"{where} is not a parameter of {model.__name__}; {known_names(name, fields)}"
            )
        _check_field(model, name, value, where)
    for name, value in command_line.items():
        _check_field(model, name, value, f"--{name}")


def known_names(name: str, names: Iterable[str]) -> str:
    """``did you mean 'x'? valid: a, b, c`` for a misspelt ``name``."""
    listed = sorted(names)
    close = difflib.get_close_matches(name, listed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}valid: {', '.join(listed)}"


def _check_field(model: type[BaseModel], name: str, value: Any, where: str) -> None:
    info = model.model_fields[name]
    try:
        TypeAdapter(Annotated[info.annotation, info]).validate_python(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise ConfigError(f"{where}={value!r}: {first['msg']}") from None


def job_layers(
    fixed: Mapping[str, Any], job: Job, command_line: Mapping[str, Any]
) -> list[ParameterLayer]:
    """List a job's parameter layers, lowest precedence first."""
    return [
        ParameterLayer(source, values)
        for source, values in zip(
            LAYER_SOURCES, _layer_values(fixed, job, command_line), strict=True
        )
    ]


def merge_job_parameters(
    fixed: Mapping[str, Any], job: Job, command_line: Mapping[str, Any]
) -> dict[str, Any]:
    """The merged values of :func:`job_layers`, without their sources.

    What a plan computes for every job; the sources are needed only to explain an
    invalid value, so only a parameter set validated for the first time asks for them.
    """
    merged: dict[str, Any] = {}
    for values in _layer_values(fixed, job, command_line):
        merged.update(values)
    return merged


def _layer_values(
    fixed: Mapping[str, Any], job: Job, command_line: Mapping[str, Any]
) -> tuple[Mapping[str, Any], ...]:
    """The values of each layer, in the order of :data:`LAYER_SOURCES`."""
    code = job.analysis_code.parameters if job.analysis_code else None
    from_code: Mapping[str, Any] = {}
    if code:
        from_code = {name: value for name, value in code.items() if name not in NOT_PARAMETERS}
    return (fixed, from_code, command_line, job.distributed_parameters or {})


def merge_layers(layers: list[ParameterLayer]) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge layers, later ones winning key by key.

    Returns
    -------
    tuple of (dict, dict)
        The merged values, and for each key the source its value came from.
    """
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        for name, value in layer.values.items():
            merged[name] = value
            sources[name] = layer.source
    return merged, sources


def validate_parameters(
    model: type[BaseModel], merged: Mapping[str, Any], sources: dict[str, str], job_file: str
) -> BaseModel:
    """Validate merged parameters with the user's model.

    Raises
    ------
    JobInputError
        Naming the job file, the parameter and the layer its value came from.
    """
    try:
        validated = model.model_validate(dict(merged))
    except ValidationError as exc:
        raise validation_error_to_input_error(
            job_file, exc, prefix="parameters.", sources=sources
        ) from None
    converted: BaseModel = in_utc(validated)
    return converted


_ZERO = timedelta(0)


def in_utc(value: Any) -> Any:
    """Return ``value`` with every aware datetime in it converted to UTC.

    The analysis, the key and the record then see one value for one instant. Naive
    datetimes (no offset) are kept as they are: their instant is unknown, so they
    are not converted, and ``10:00`` stays distinct from ``10:00Z``. So are aware
    ``time`` values (an offset without a date has no UTC equivalent). Datetimes are
    found in models, dicts, lists, tuples and sets; a value with nothing to convert,
    a datetime already at offset zero included, is returned as the same object.
    """
    if isinstance(value, datetime):
        offset = value.utcoffset()
        return value if offset is None or offset == _ZERO else value.astimezone(timezone.utc)
    if isinstance(value, BaseModel):
        changed = {}
        for name, item in (*value.__dict__.items(), *(value.model_extra or {}).items()):
            converted = in_utc(item)
            if converted is not item:
                changed[name] = converted
        return value.model_copy(update=changed) if changed else value
    if isinstance(value, dict):
        items = {name: in_utc(item) for name, item in value.items()}
        unchanged = all(items[name] is item for name, item in value.items())
        return value if unchanged else items
    if isinstance(value, list | tuple | set | frozenset) and not hasattr(value, "_fields"):
        converted_items = [in_utc(item) for item in value]
        if all(new is old for new, old in zip(converted_items, value, strict=True)):
            return value
        return type(value)(converted_items)
    return value


def parse_command_line_value(info: FieldInfo, raw: str) -> Any:
    """Turn a command-line string into a value for a model field.

    Text fields take the string as given. Other fields read it as JSON (``0.5``,
    ``true``, ``[1, 2]``, ``{"a": 1}``) and fall back to the string, which the model
    then validates (so ``--flag abc`` for a float field fails with a clear message).
    """
    if _is_text(info.annotation):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _is_text(annotation: Any) -> bool:
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, PurePath)):
        return True
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return all(isinstance(member.value, str) for member in annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return bool(args) and all(_is_text(arg) for arg in args)
    if origin is typing.Annotated:
        return _is_text(typing.get_args(annotation)[0])
    return False
