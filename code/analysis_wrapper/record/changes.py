"""Field-level reasons: what changed since a record with the same input data.

A job runs when no record has its key. When a record with the same input data (the
same ``input_data`` and ``file_location`` sets) exists, the reason names what differs
from the closest such record (fewest differences, then newest):
``parameters.min_spikes 20 → 30``,
``code.tree 1a2b3c4d5e6f → 6f5e4d3c2b1a (the record's commit: …)``. The candidates
come from one indexed, batched :meth:`RecordStore.find_by_inputs` per plan, never a
scan of the collection.

Each difference belongs to one of three groups (:data:`CHANGE_GROUPS`): the code (its
url, tree or version), the data (the inputs, file locations and their versions) and
the parameters; ``analysis-wrapper keys diff`` and ``--plan 1 --explain`` list them so.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import StoreError
from ..stores.base import (
    Record,
    RecordStore,
    input_set_key,
    record_code,
    record_input_urls,
    record_parameters,
)
from .fields import (
    record_code_tree,
    record_file_locations,
    record_input_versions,
    record_process,
)

log = logging.getLogger(__name__)

SHORT_VERSION = 12
"""Hex runs (commits, digests) in versions are cut to this many characters."""

CHANGE_GROUPS = ("code", "data", "parameters")
"""The groups a difference falls in: what ran, what it read, how it was set."""

_VALUE_LIMIT = 60
_HEX_RUN = re.compile(rf"[0-9a-f]{{{SHORT_VERSION + 1},}}")


def short_version(version: Any) -> str:
    """Cut every long hex run of a version (``<commit>+dirty.<digest>``) to 12 characters."""
    if not isinstance(version, str):
        return compact(version)
    return _HEX_RUN.sub(lambda match: match.group()[:SHORT_VERSION], version)


def compact(value: Any) -> str:
    """Show ``value`` as compact JSON, cut to about 60 characters."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return text if len(text) <= _VALUE_LIMIT else text[: _VALUE_LIMIT - 1] + "…"


def describe_changes(preimage: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
    """Name each field of a job's key pre-image that differs from a stored record.

    Parameters
    ----------
    preimage : mapping
        The job's key pre-image (see :func:`analysis_wrapper.identity.key.key_preimage`).
    record : mapping
        A stored record.

    Returns
    -------
    list of str
        One entry per difference, in pre-image order (code, inputs, then parameters
        by name): ``"parameters.x 0.5 → 0.8"``, ``"parameters.y added (1)"``,
        ``"parameters.z removed (was true)"``, ``"code.version <old12> → <new12>"``,
        ``"input_versions[<location>] <old> → <new>"``. Values are compact JSON, so
        ``1`` and ``1.0`` differ, as they do in the key.
    """
    return [text for _, text in _changes(preimage, record)]


def grouped_changes(preimage: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, list[str]]:
    """:func:`describe_changes` by group: ``{"code": [...], "data": [...], ...}``."""
    groups: dict[str, list[str]] = {group: [] for group in CHANGE_GROUPS}
    for group, text in _changes(preimage, record):
        groups[group].append(text)
    return groups


def _changes(preimage: Mapping[str, Any], record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Each difference with its group, in pre-image order."""
    changes = [("code", text) for text in _code_changes(preimage, record)]
    changes += [("data", text) for text in _data_changes(preimage, record)]
    changes += [("parameters", text) for text in _parameter_changes(preimage, record)]
    return changes


def _code_changes(preimage: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
    code = record_code(dict(record))
    new_code = preimage.get("code") or {}
    changes: list[str] = []
    if code.get("url") != new_code.get("url"):
        changes.append(f"code.url {compact(code.get('url'))} → {compact(new_code.get('url'))}")
    if "tree" in new_code:
        old_tree, new_tree = record_code_tree(record), new_code["tree"]
        if old_tree != new_tree:
            was = short_version(old_tree) if old_tree else "none (a scheme-1 record)"
            changes.append(
                f"code.tree {was} → {short_version(new_tree)} "
                f"(the record's commit: {short_version(code.get('version'))})"
            )
    old_version, new_version = code.get("version"), new_code.get("version")
    if "tree" not in new_code and old_version != new_version:
        old_short, new_short = short_version(old_version), short_version(new_version)
        if old_short == new_short:
            old_short, new_short = compact(old_version), compact(new_version)
        changes.append(f"code.version {old_short} → {new_short}")
    return changes


def _data_changes(preimage: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
    changes: list[str] = []
    for name, old in (
        ("input_data", sorted(set(record_input_urls(dict(record))))),
        ("file_location", record_file_locations(record)),
    ):
        new = sorted(set(preimage.get(name) or []))
        if old != new:
            changes.append(f"{name} {compact(old)} → {compact(new)}")
    # INPUT_IDENTITY=content: each location's version (records keep them beside).
    old_versions = record_input_versions(record) or {}
    new_versions: Mapping[str, Any] = preimage.get("input_versions") or {}
    for location in sorted(set(old_versions) | set(new_versions)):
        where = f"input_versions[{location}]"
        if location not in old_versions:
            changes.append(f"{where} added ({compact(new_versions[location])})")
        elif location not in new_versions:
            changes.append(f"{where} removed (was {compact(old_versions[location])})")
        elif old_versions[location] != new_versions[location]:
            changes.append(
                f"{where} {compact(old_versions[location])} → {compact(new_versions[location])}"
            )
    return changes


def _parameter_changes(preimage: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
    changes: list[str] = []
    old_parameters = record_parameters(dict(record))
    new_parameters = preimage.get("parameters") or {}
    for name in sorted(set(old_parameters) | set(new_parameters)):
        if name not in old_parameters:
            changes.append(f"parameters.{name} added ({compact(new_parameters[name])})")
        elif name not in new_parameters:
            changes.append(f"parameters.{name} removed (was {compact(old_parameters[name])})")
        else:
            old_text, new_text = _exact(old_parameters[name]), _exact(new_parameters[name])
            if old_text != new_text:
                changes.append(
                    f"parameters.{name} {compact(old_parameters[name])} → "
                    f"{compact(new_parameters[name])}"
                )
    return changes


def closest_record(
    preimage: Mapping[str, Any], records: Sequence[Record]
) -> tuple[list[str], Record] | None:
    """The record closest to a job among ``records`` (those with its input data).

    Only records with the job's file locations too are candidates; the closest has
    the fewest differences (:func:`describe_changes`), and is the newest (the last
    listed) among equals. ``None`` when there is no candidate.

    Returns
    -------
    tuple or None
        The differences and the closest record.
    """
    files = sorted(set(preimage.get("file_location") or []))
    siblings = [record for record in records if record_file_locations(record) == files]
    if not siblings:
        return None
    compared = [(describe_changes(preimage, record), record) for record in siblings]
    position = min(range(len(compared)), key=lambda i: (len(compared[i][0]), len(compared) - i))
    return compared[position]


def find_siblings(
    preimages: Sequence[Mapping[str, Any]], store: RecordStore
) -> dict[tuple[str, ...], list[Record]] | None:
    """The records with each pre-image's input data, in one batched query.

    ``None`` when the lookup failed: what it serves (reasons, records upstream wrote)
    only explains or saves work, so the failure is logged and the run goes on.
    """
    if not preimages:
        return {}
    try:
        return store.find_by_inputs([list(p.get("input_data") or []) for p in preimages])
    except StoreError as exc:
        log.warning("cannot look up earlier records with the same inputs: %s", exc)
        return None


def change_reasons(
    preimages: Sequence[Mapping[str, Any]],
    store: RecordStore,
    found: Mapping[tuple[str, ...], list[Record]] | None = None,
) -> list[str | None]:
    """Explain, for each job about to run, what changed since its newest sibling record.

    One batched :meth:`RecordStore.find_by_inputs` finds the records with each job's
    input data; those whose file locations also match are candidates. The reason names
    the differences (:func:`describe_changes`) from the closest candidate: the one with
    the fewest, and the newest (the last the store lists) among those. Jobs of a
    parameter grid share their inputs, so the newest record alone would often be
    another grid point's, and the reason would name parameters the user never changed.

    Parameters
    ----------
    preimages : sequence of mapping
        The key pre-images of jobs with no record under their key.
    store : RecordStore
        The record store.
    found : mapping, optional
        What :func:`find_siblings` found for ``preimages``, if the caller has it.

    Returns
    -------
    list of str or None
        Per pre-image, ``"changed since record <key12> (<when>): <changes>"``, with the
        changes joined by ``"; "``, or
        ``None`` when no record has the same input data (or the lookup failed: the
        reason is only an explanation, so a failure is logged and the run goes on).
    """
    if not preimages:
        return []
    input_sets = [list(preimage.get("input_data") or []) for preimage in preimages]
    if found is None:
        found = find_siblings(preimages, store)
    if found is None:
        return [None] * len(preimages)
    reasons: list[str | None] = []
    for preimage, inputs in zip(preimages, input_sets, strict=True):
        nearest = closest_record(preimage, found.get(input_set_key(inputs), []))
        if nearest is None:
            reasons.append(None)
            continue
        changes, closest = nearest
        process = record_process(closest)
        when = process.get("end_date_time") or process.get("start_date_time") or "unknown time"
        changes = changes or ["no field differs (another key scheme)"]
        key = str(closest.get("_id", ""))[:SHORT_VERSION]
        reasons.append(f"changed since record {key} ({when}): {'; '.join(changes)}")
    return reasons


def _exact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
