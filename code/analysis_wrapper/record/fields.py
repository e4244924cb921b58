"""A stored record read back: its first data process, and a phrase that names it.

Pure reads of a record's JSON (laid out as :mod:`analysis_wrapper.stores.base` says),
apart from :mod:`.metadata`, which builds records with aind-data-schema: the run-or-skip
decision names a record without loading the schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..stores.base import FILE_LOCATION_PARAMETER

INPUT_ASSET_NAMES = "input_asset_names"
"""A record's field, beside the schema's, with the asset names by input location."""

INPUT_ASSET_IDS = "input_asset_ids"
"""Beside the schema's fields too: the ``asset_id`` s of an older-shape job, by location."""

CODE_IDENTITY = "code_identity"
"""Beside the schema's fields too: ``{"tree", "paths", "pushed"}``, the code tree the key
holds, the folders it digests and whether a remote branch held the commit."""

INPUT_RECORD_IDS = "input_record_ids"
"""Beside the schema's fields too: the job's ``docdb_record_id`` s (each asset's metadata
record), by input location."""

INPUT_VERSIONS = "input_versions"
"""Beside the schema's fields too: the key's ``input_versions`` (``INPUT_IDENTITY=content``),
by location; absent when the key holds none."""


def record_code_tree(record: Mapping[str, Any]) -> str | None:
    """The code tree a record's key holds (``None``: a scheme-1 or release record)."""
    identity = record.get(CODE_IDENTITY)
    tree = identity.get("tree") if isinstance(identity, Mapping) else None
    return tree if isinstance(tree, str) else None


def record_input_versions(record: Mapping[str, Any]) -> dict[str, str] | None:
    """The input versions a record's key holds, by location (``None``: the key holds none)."""
    versions = record.get(INPUT_VERSIONS)
    if not isinstance(versions, Mapping):
        return None
    return {str(location): str(version) for location, version in versions.items()}


def record_process(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return the record's first data process (``{}`` if the record has none)."""
    processing = record.get("processing") or {}
    processes = processing.get("data_processes") or [{}]
    first = processes[0]
    return first if isinstance(first, Mapping) else {}


def describe_record(record: Mapping[str, Any]) -> str:
    """Say which record this is, for a skip reason: key, when, code version."""
    process = record_process(record)
    code = process.get("code") or {}
    when = process.get("end_date_time") or process.get("start_date_time") or "an unknown time"
    version = code.get("version") or "unknown"
    return f"record {record.get('_id')} written {when} by code version {version}"


def by_input_location(record: Mapping[str, Any], field: str) -> dict[str, str]:
    """A field beside the schema's that maps input locations to text (``{}`` if absent)."""
    value = record.get(field)
    if not isinstance(value, Mapping):
        return {}
    return {str(location): text for location, text in value.items() if isinstance(text, str)}


def asset_name(record: Mapping[str, Any], data_asset: Mapping[str, Any]) -> str | None:
    """The asset name the job gave for one of the record's ``input_data`` entries.

    Records name assets in :data:`INPUT_ASSET_NAMES`; older ones in the entry itself.
    """
    names = record.get(INPUT_ASSET_NAMES)
    url = data_asset.get("url")
    if isinstance(names, Mapping) and isinstance(names.get(url), str):
        return str(names[url])
    name = data_asset.get("name")
    return name if isinstance(name, str) else None


_FILE_LOCATION_NOTE = "file_location: "  # where records before 2026-12 kept them


def record_file_locations(record: Mapping[str, Any]) -> list[str]:
    """The sorted file locations of a record (``[]`` if none), in either layout.

    Records keep them among the parameters (``file_location``), as upstream does;
    older ones kept a ``file_location: a, b`` line in the process notes.
    """
    process = record_process(record)
    code = process.get("code")
    parameters = code.get("parameters") if isinstance(code, Mapping) else None
    listed = parameters.get(FILE_LOCATION_PARAMETER) if isinstance(parameters, Mapping) else None
    if isinstance(listed, list):
        return sorted({str(location) for location in listed if location})
    notes = process.get("notes")
    if not isinstance(notes, str):
        return []
    for line in notes.splitlines():
        if line.startswith(_FILE_LOCATION_NOTE):
            found = line[len(_FILE_LOCATION_NOTE) :].split(", ")
            return sorted({location for location in found if location})
    return []
