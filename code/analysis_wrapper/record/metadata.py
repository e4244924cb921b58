"""The record: an aind-data-schema ``Metadata`` document, built and validated here only.

``_id = name = key``, ``location`` = where the result's files are, and
``processing.data_processes[0]`` an Analysis ``DataProcess`` whose ``code`` holds the
code identity, the input data and the validated parameters, and whose
``output_parameters`` holds the analysis's outputs.

aind-data-schema is imported on first use: it costs about a second, and planning a run
never needs it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..errors import WrapperError
from ..identity.codeocean_run import CodeOceanRun, record_notes
from ..identity.key import CodeIdentity
from ..stores.base import FILE_LOCATION_PARAMETER
from .fields import (
    CODE_IDENTITY,
    INPUT_ASSET_IDS,
    INPUT_ASSET_NAMES,
    INPUT_RECORD_IDS,
    INPUT_VERSIONS,
)

RUN_SCRIPT = "code/run"
DEFAULT_PROCESS_NAME = "aind-analysis-wrapper"


class RecordBuildError(WrapperError, ValueError):
    """The record does not validate with aind-data-schema."""


@dataclass(frozen=True)
class RecordInputs:
    """Everything a record is built from, for one job.

    Parameters
    ----------
    key : str
        The job key (``_id`` and ``name``).
    location : str
        URL of the folder holding the result's files.
    code : CodeIdentity
        The code that ran.
    input_data : sequence of str
        Normalised input locations, as hashed.
    asset_names : mapping
        Asset name per input location, where the job gave one.
    file_location : sequence of str
        Normalised file locations, as hashed.
    parameters : mapping
        The validated parameters, JSON mode.
    outputs : mapping
        The outputs, JSON mode.
    experimenters : sequence of str
        Who ran it.
    start, end : datetime
        Timezone-aware start and end of the analysis.
    query : str or None
        The dispatcher's query, kept as a note.
    codeocean : CodeOceanRun or None
        The Code Ocean run: its pipeline becomes ``pipeline_name`` and
        ``processing.pipelines``; its computation and data assets go into the notes.
    asset_ids : mapping
        Asset id per input location, where the job gave one (the older job shape).
    record_ids : mapping
        Metadata record id (``docdb_record_id``) per input location, where the job
        gave one.
    input_versions : mapping or None
        The key's ``input_versions`` (``INPUT_IDENTITY=content``), by location; ``None``
        when the key holds none. Kept so the key's pre-image can be rebuilt from the
        record alone (:mod:`.preimage`).
    """

    key: str
    location: str
    code: CodeIdentity
    input_data: Sequence[str]
    asset_names: Mapping[str, str]
    file_location: Sequence[str]
    parameters: Mapping[str, Any]
    outputs: Mapping[str, Any]
    experimenters: Sequence[str]
    start: datetime
    end: datetime
    query: str | None = None
    codeocean: CodeOceanRun | None = None
    asset_ids: Mapping[str, str] = field(default_factory=dict)
    record_ids: Mapping[str, str] = field(default_factory=dict)
    input_versions: Mapping[str, str] | None = None


def build_record(inputs: RecordInputs) -> dict[str, Any]:
    """Build and validate the record; return it as JSON-ready dict with ``_id`` first.

    Raises
    ------
    RecordBuildError
        If aind-data-schema rejects it (the message names the field).
    """
    from aind_data_schema.components.identifiers import Code, DataAsset
    from aind_data_schema.core.metadata import Metadata
    from aind_data_schema.core.processing import DataProcess, Processing, ProcessStage
    from aind_data_schema_models.process_names import ProcessName

    name = inputs.code.name or DEFAULT_PROCESS_NAME
    commit = inputs.code.commit
    # The lines analysis-pipeline-utils writes, in its words (parsers in labs read them).
    notes = [f"Git commit hash: {commit}"] if commit else []
    parameters = dict(inputs.parameters)
    if inputs.file_location:
        # Where upstream keeps them: among the parameters (our key has them apart).
        parameters[FILE_LOCATION_PARAMETER] = list(inputs.file_location)
    if inputs.query:
        notes.append(f"Query used to retrieve data assets: {inputs.query}")
    notes.extend(record_notes(inputs.codeocean))
    pipeline = inputs.codeocean.pipeline if inputs.codeocean else None
    try:
        with warnings.catch_warnings():
            # An analysis record has processing only; aind-data-schema warns that
            # acquisition files (data_description, ...) are missing. They are, by design.
            warnings.simplefilter("ignore", UserWarning)
            code = Code(
                url=inputs.code.url,
                name=inputs.code.name,
                version=inputs.code.version,
                commit_hash=commit,
                run_script=RUN_SCRIPT,
                # As upstream writes them, so that its query helpers (an exact match of
                # each entry) find the record by input location: the url alone.
                input_data=[DataAsset(url=location) for location in inputs.input_data],
                parameters=parameters,
            )
            process = DataProcess(
                process_type=ProcessName.ANALYSIS,
                stage=ProcessStage.ANALYSIS,
                name=name,
                code=code,
                experimenters=list(inputs.experimenters),
                start_date_time=inputs.start,
                end_date_time=inputs.end,
                output_parameters=dict(inputs.outputs),
                notes="\n".join(notes) or None,
                pipeline_name=pipeline.name if pipeline else None,
            )
            processing = Processing(
                data_processes=[process],
                dependency_graph={name: []},
                pipelines=[Code(url=pipeline.url, name=pipeline.name)] if pipeline else None,
            )
            metadata = Metadata(name=inputs.key, location=inputs.location, processing=processing)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"])
        raise RecordBuildError(
            f"the record for {inputs.key} does not validate with aind-data-schema: "
            f"{field}: {first['msg']}"
        ) from None
    record = {"_id": inputs.key, **metadata.model_dump(mode="json")}
    if inputs.code.tree is not None:
        record[CODE_IDENTITY] = {
            "tree": inputs.code.tree,
            "paths": list(inputs.code.paths),
            "pushed": inputs.code.pushed,
        }
    # Beside the schema's fields (Metadata ignores them on validation): the asset names,
    # ids and metadata record ids the job gave, by input location.
    for field_name, given in (
        (INPUT_ASSET_NAMES, inputs.asset_names),
        (INPUT_ASSET_IDS, inputs.asset_ids),
        (INPUT_RECORD_IDS, inputs.record_ids),
    ):
        by_location = {loc: given[loc] for loc in inputs.input_data if loc in given}
        if by_location:
            record[field_name] = by_location
    if inputs.input_versions is not None:
        record[INPUT_VERSIONS] = dict(inputs.input_versions)
    return record
