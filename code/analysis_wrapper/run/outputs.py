"""What one try of a job leaves in its folder: the analysis's files, its metadata, its key.

:func:`analyse` runs ``run_analysis`` into a work folder, turns what it returned into
the record's outputs, builds the record, and writes ``metadata.nd.json`` (the record
without ``_id``) and ``key.json`` (the key and its pre-image) beside the analysis's
files. Before the folder is published, :func:`add_crate` writes its
``ro-crate-metadata.json`` (:mod:`analysis_wrapper.record.crate`) from the record and
the manifest's files, and adds it to the manifest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
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
from ..record.crate import CRATE_NAME, build_crate
from ..record.metadata import RecordInputs, build_record
from ..stores.manifest import file_sha256
from .context import PlannedJob, RunContext

log = logging.getLogger(__name__)

METADATA_FILE_NAME = "metadata.nd.json"
KEY_FILE_NAME = "key.json"
FRAMEWORK_FILES = {
    METADATA_FILE_NAME: "The job's aind-data-schema Metadata record (without its _id, the key)",
    KEY_FILE_NAME: "The job's key and its pre-image: the key is the sha256 of its canonical JSON",
}
"""The files the framework writes beside the analysis's, as the crate describes them."""


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
            asset_names=_by_location(planned.job.s3_location, planned.job.asset_name),
            asset_ids=_by_location(planned.job.s3_location, planned.job.asset_id or ()),
            record_ids=_by_location(planned.job.s3_location, planned.job.docdb_record_id),
            input_versions=planned.preimage.get("input_versions"),
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


def _by_location(locations: Sequence[str], values: Sequence[str]) -> dict[str, str]:
    """Pair a job's per-asset list with its ``s3_location`` s, by each location's key form.

    ``input_data`` holds the locations in that form. A list shorter than the locations
    names the first assets only (as upstream's dispatcher writes them, in step).
    """
    return {
        location_key_form(location): value
        for location, value in zip(locations, values, strict=False)
    }


def add_crate(manifest: Mapping[str, Any], work: Path, record: Mapping[str, Any]) -> dict[str, Any]:
    """Write the folder's crate from the record and the manifest's files; return the manifest.

    The manifest returned lists the crate too (its size and sha256), in path order, so
    it is published like any file, before the manifest (see
    :mod:`analysis_wrapper.record.crate`).
    """
    files = [entry for entry in manifest["files"] if entry["path"] != CRATE_NAME]
    if len(files) != len(manifest["files"]):
        log.warning(
            "%s: run_analysis wrote %s; the framework's crate replaces it (the name is "
            "reserved, as %s and %s are)",
            record.get("_id", "")[:12],
            CRATE_NAME,
            METADATA_FILE_NAME,
            KEY_FILE_NAME,
        )
    path = work / CRATE_NAME
    write_json(path, build_crate(record, files, FRAMEWORK_FILES))
    entry = {"path": CRATE_NAME, "size": path.stat().st_size, "sha256": file_sha256(path)}
    return {**manifest, "files": sorted([*files, entry], key=lambda file: str(file["path"]))}


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
