"""Job files from input locations crossed with a parameter grid (pure; no I/O).

What ``analysis-wrapper dispatch`` writes: one job per input row (or per group of
rows), times one job per entry of ``distributed_parameters`` (the NxM product
upstream's dispatcher makes). A job's file name is a readable stem plus a short hash
of its content, so dispatching the same inputs again writes the same files.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, UsageError
from ..identity.key import canonical_json
from .locations import LocationError, normalise_location

HASH_LENGTH = 12
"""Hex characters of the content hash in a job file's name."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class InputGroup:
    """The inputs of one job before the parameter grid is applied.

    Parameters
    ----------
    locations : list of str
        Normalised input locations (``s3_location``).
    asset_names, docdb_record_ids : list of str
        Optional, one per location where given.
    group_metadata : dict or None
        ``{column: value}`` for a job made from a group of rows.
    """

    locations: list[str]
    asset_names: list[str] = field(default_factory=list)
    docdb_record_ids: list[str] = field(default_factory=list)
    group_metadata: dict[str, Any] | None = None


def normalised(location: str, where: str) -> str:
    """Normalise an input location; ``where`` names it in the error.

    Raises
    ------
    UsageError
        If the location cannot be normalised (empty, unknown scheme, escapes ``..``).
    """
    try:
        return normalise_location(location)
    except LocationError as exc:
        raise UsageError(f"{where}: {exc}") from None


def groups_from_rows(
    rows: Sequence[Mapping[str, str]],
    location_column: str,
    group_by: str | None = None,
    source: str = "CSV",
) -> list[InputGroup]:
    """Turn CSV rows into input groups: one per row, or one per ``group_by`` value.

    Optional columns ``asset_name`` and ``docdb_record_id`` are carried along. Groups
    keep the order in which their first row appears; duplicate locations in a group
    are kept once.

    Raises
    ------
    UsageError
        If a named column is missing or a location is empty or invalid.
    """
    columns = set(rows[0]) if rows else set()
    for column in (location_column, group_by):
        if rows and column is not None and column not in columns:
            raise UsageError(
                f"{source}: no column {column!r}; the columns are {', '.join(sorted(columns))}"
            )
    grouped: dict[str, list[tuple[int, Mapping[str, str]]]] = {}
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        group = row[group_by] if group_by else str(number)
        grouped.setdefault(group, []).append((number, row))
    result = []
    for value, members in grouped.items():
        locations: list[str] = []
        names: list[str] = []
        ids: list[str] = []
        for number, row in members:
            location = normalised(row.get(location_column) or "", f"{source} row {number}")
            if location in locations:
                continue
            locations.append(location)
            if row.get("asset_name"):
                names.append(row["asset_name"])
            if row.get("docdb_record_id"):
                ids.append(row["docdb_record_id"])
        metadata = {group_by: value} if group_by else None
        result.append(InputGroup(locations, names, ids, metadata))
    return result


def groups_from_locations(locations: Sequence[str]) -> list[InputGroup]:
    """One input group per location (``--input``), duplicates dropped.

    Raises
    ------
    UsageError
        If a location is empty or invalid.
    """
    seen: list[str] = []
    for location in locations:
        value = normalised(location, f"--input {location!r}")
        if value not in seen:
            seen.append(value)
    return [InputGroup([location]) for location in seen]


def distributed_parameters(data: Any, source: str) -> list[dict[str, Any]]:
    """The ``distributed_parameters`` list of an analysis_parameters.json document.

    A missing, ``null`` or empty list means no grid: one job per input group.

    Raises
    ------
    ConfigError
        If the document is not an object or the list holds something else than objects.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must hold a JSON object")
    grid = data.get("distributed_parameters") or []
    if not isinstance(grid, list) or not all(isinstance(entry, dict) for entry in grid):
        raise ConfigError(f"{source}: 'distributed_parameters' must be a list of objects")
    return [dict(entry) for entry in grid]


def build_jobs(
    groups: Sequence[InputGroup], grid: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Cross input groups with the grid: ``len(groups) x max(len(grid), 1)`` job dicts.

    Jobs come in input order, each input's parameter sets in grid order.
    """
    jobs = []
    for group in groups:
        sets: list[Mapping[str, Any] | None] = [*grid] or [None]
        for parameters in sets:
            job: dict[str, Any] = {
                "s3_location": list(group.locations),
                "asset_name": list(group.asset_names),
                "docdb_record_id": list(group.docdb_record_ids),
                "file_location": None,
                "distributed_parameters": dict(parameters) if parameters is not None else None,
                "group_metadata": group.group_metadata,
                "query": None,
                "analysis_code": None,
            }
            jobs.append(job)
    return jobs


def job_file_name(job: Mapping[str, Any]) -> str:
    """A deterministic file name: ``<first asset or input>_<hash of content>.json``."""
    digest = hashlib.sha256(canonical_json(dict(job))).hexdigest()[:HASH_LENGTH]
    first = (job.get("asset_name") or [None])[0] or job["s3_location"][0].rstrip("/")
    stem = _UNSAFE.sub("_", str(first).rsplit("/", 1)[-1]).strip("._")[:80] or "job"
    return f"{stem}_{digest}.json"
