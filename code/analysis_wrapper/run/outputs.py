"""What one try of a job leaves in its folder: the analysis's files, its metadata, its key.

:func:`analyse` runs ``run_analysis`` into a work folder, turns what it returned into
the record's outputs, builds the record, and writes ``metadata.nd.json`` (the record
without ``_id``) and ``key.json`` (the key and its pre-image) beside the analysis's
files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..common import atomic_write
from ..errors import JobInputError, KeyComputationError
from ..identity.codeocean_run import CodeOceanIdentity
from ..identity.key import canonical_json
from ..job.job_file import validation_error_to_input_error
from ..job.locations import location_key_form
from ..record.metadata import RecordInputs, build_record
from .context import PlannedJob, RunContext

METADATA_FILE_NAME = "metadata.nd.json"
KEY_FILE_NAME = "key.json"


def analyse(planned: PlannedJob, context: RunContext, work: Path, location: str) -> dict[str, Any]:
    """Run the analysis into ``work`` and write its metadata; return the record."""
    assert planned.job and planned.parameters and planned.key and planned.preimage
    key = planned.key
    start = datetime.now(timezone.utc)
    # Jobs of one plan share validated parameters: each analysis gets its own copy, so
    # one that changes its parameters cannot change another job's (upstream D6).
    parameters = planned.parameters.model_copy(deep=True)
    returned = context.analysis.function(planned.job, parameters, work)
    end = datetime.now(timezone.utc)
    outputs = outputs_to_json(returned, context.analysis.outputs_model, str(planned.job_file))
    record = build_record(
        RecordInputs(
            key=key,
            location=location,
            code=context.code,
            input_data=planned.preimage["input_data"],
            # By each location's key form: input_data holds them in that form.
            asset_names={
                location_key_form(location): name
                for location, name in zip(
                    planned.job.s3_location, planned.job.asset_name, strict=False
                )
            },
            asset_ids={
                location_key_form(location): asset_id
                for location, asset_id in zip(
                    planned.job.s3_location, planned.job.asset_id or (), strict=False
                )
            },
            file_location=planned.preimage["file_location"],
            parameters=planned.preimage["parameters"],
            outputs=outputs,
            experimenters=context.experimenters,
            start=start,
            end=end,
            query=_query_text(planned.job.query),
            codeocean=context.code.codeocean
            if isinstance(context.code, CodeOceanIdentity)
            else None,
        )
    )
    metadata = {name: value for name, value in record.items() if name != "_id"}
    write_json(work / METADATA_FILE_NAME, metadata)
    write_json(work / KEY_FILE_NAME, {"key": key, "preimage": planned.preimage})
    return record


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented UTF-8 JSON, whole or not at all.

    Into a job's work folder, so not fsynced: a publish fsyncs the copies it makes, and
    a work folder is never trusted after a crash.
    """
    atomic_write.write_json(path, value, durable=False)


def outputs_to_json(returned: Any, model: type[BaseModel] | None, job_file: str) -> dict[str, Any]:
    """Turn what ``run_analysis`` returned into the record's ``output_parameters``.

    An outputs model instance is dumped, a dict is validated with the outputs model
    (when there is one), and ``None`` means no outputs.

    Raises
    ------
    JobInputError
        If the outputs do not validate or hold a value with no JSON form.
    """
    if returned is None:
        return {}
    try:
        if isinstance(returned, BaseModel):
            value = returned.model_dump(mode="json")
        elif isinstance(returned, Mapping) and model is not None:
            value = model.model_validate(dict(returned)).model_dump(mode="json")
        elif isinstance(returned, Mapping):
            value = dict(returned)
        else:
            raise JobInputError(
                job_file,
                "outputs",
                f"run_analysis returned a {type(returned).__name__}; return the outputs "
                "model, a dict, or None",
            )
    except ValidationError as exc:
        raise validation_error_to_input_error(job_file, exc, prefix="outputs.") from None
    try:
        canonical_json(value)
    except KeyComputationError as exc:
        raise JobInputError(job_file, "outputs", str(exc)) from None
    return value


def _query_text(query: str | dict[str, Any] | None) -> str | None:
    if query is None or isinstance(query, str):
        return query
    return json.dumps(query, sort_keys=True)
