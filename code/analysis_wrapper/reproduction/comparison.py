"""The files a rerun wrote, compared one by one with the stored result's manifest.

Each path is *identical* (same size and sha256), *differs*, is *missing* (the manifest
lists it, the rerun did not write it) or is *new* (the rerun wrote it, the manifest
does not list it).

``metadata.nd.json`` differs in every run: it holds the run's own times, its result's
location, who ran it and whether its commit was pushed. It is compared without those
fields (:data:`RUN_FIELDS`), so it is identical when everything that describes the
result is: the code, the inputs, the parameters and the outputs. Where the stored JSON
of a differing file is at hand, the fields that differ are named.

A rerun is a dry run, which publishes nothing and so writes no ``ro-crate-metadata.json``:
:func:`add_rerun_crate` builds the rerun's from its record and files, as a publish would,
and it is compared without the run's own fields too (:data:`CRATE_RUN_FIELDS`).
"""

from __future__ import annotations

import copy
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..record.crate import CRATE_NAME, build_crate
from ..run.outputs import FRAMEWORK_FILES, METADATA_FILE_NAME, write_json
from ..stores.manifest import MANIFEST_NAME, file_sha256

RUN_FIELDS = (
    "location",
    "processing.data_processes[].start_date_time",
    "processing.data_processes[].end_date_time",
    "processing.data_processes[].experimenters",
    "processing.data_processes[].pipeline_name",
    "processing.data_processes[].notes (its Code Ocean lines)",
    "processing.pipelines",
    "code_identity.pushed",
)
"""The fields of ``metadata.nd.json`` that describe the run, not the result."""

CRATE_RUN_FIELDS = (
    "the run's startTime, endTime and agent, and the folder's datePublished (its end)",
    "the experimenters (Person entities, the folder's author)",
    "each File's contentSize and sha256 (each file is compared on its own)",
)
"""What of ``ro-crate-metadata.json`` describes the run, or is compared file by file."""

_CODE_OCEAN_NOTE = "code ocean "  # the notes' lines about a Code Ocean computation
_MOST_PATHS_NAMED = 3


class Verdict(str, enum.Enum):
    """How one file of the rerun compares with the stored result."""

    IDENTICAL = "identical"
    DIFFERS = "differs"
    MISSING = "missing"
    NEW = "new"


@dataclass(frozen=True)
class FileFacts:
    """A file's size in bytes and sha256 (hex)."""

    size: int
    sha256: str


@dataclass(frozen=True)
class FileComparison:
    """One path: its verdict, its stored and its new size and digest, and a note.

    ``stored`` is ``None`` for a new file, ``reproduced`` for a missing one.
    """

    path: str
    verdict: Verdict
    stored: FileFacts | None
    reproduced: FileFacts | None
    note: str = ""


def compare_with_manifest(
    manifest: Mapping[str, Any],
    folder: Path,
    stored_json: Mapping[str, Any] | None = None,
) -> list[FileComparison]:
    """Compare every file under ``folder`` with the manifest's, sorted by path.

    Parameters
    ----------
    manifest : mapping
        The stored result's ``manifest.json`` (``files``: path, size, sha256).
    folder : Path
        The rerun's folder for the job.
    stored_json : mapping, optional
        The stored content of some JSON files, by path, already checked against the
        manifest: ``metadata.nd.json`` is then compared without the run's own fields,
        and a JSON file that differs has its differing fields named.
    """
    stored_json = stored_json or {}
    listed = {
        str(entry["path"]): FileFacts(int(entry.get("size") or 0), str(entry.get("sha256")))
        for entry in manifest.get("files") or []
        if isinstance(entry, Mapping) and entry.get("path")
    }
    written = {
        path.relative_to(folder).as_posix(): path
        for path in folder.rglob("*")
        if path.is_file() and path.relative_to(folder).as_posix() != MANIFEST_NAME
    }
    compared = []
    for relative in sorted(listed.keys() | written.keys()):
        stored = listed.get(relative)
        if relative not in written:
            compared.append(FileComparison(relative, Verdict.MISSING, stored, None))
            continue
        new_file = written[relative]
        reproduced = FileFacts(new_file.stat().st_size, file_sha256(new_file))
        if stored is None:
            compared.append(FileComparison(relative, Verdict.NEW, None, reproduced))
        elif stored == reproduced:
            compared.append(FileComparison(relative, Verdict.IDENTICAL, stored, reproduced))
        else:
            verdict, note = _compare_content(relative, new_file, stored_json.get(relative))
            compared.append(FileComparison(relative, verdict, stored, reproduced, note))
    return compared


def _compare_content(relative: str, new_file: Path, stored: Any) -> tuple[Verdict, str]:
    """The verdict on two files whose bytes differ, from their JSON where it is at hand."""
    if stored is None:
        return Verdict.DIFFERS, ""
    try:
        new = json.loads(new_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Verdict.DIFFERS, "not JSON any more"
    if relative == METADATA_FILE_NAME:
        stored, new = without_run_fields(stored), without_run_fields(new)
    elif relative == CRATE_NAME:
        stored, new = crate_without_run_fields(stored), crate_without_run_fields(new)
    paths = differing_paths(stored, new)
    if not paths:
        if relative in (METADATA_FILE_NAME, CRATE_NAME):
            return Verdict.IDENTICAL, "apart from the run's own fields (times, location, ...)"
        return Verdict.IDENTICAL, "the same JSON, written differently"
    shown = ", ".join(paths[:_MOST_PATHS_NAMED])
    more = len(paths) - _MOST_PATHS_NAMED
    return Verdict.DIFFERS, f"at {shown}" + (f" and {more} more" if more > 0 else "")


def without_run_fields(metadata: Any) -> Any:
    """A copy of a ``metadata.nd.json`` without :data:`RUN_FIELDS`."""
    if not isinstance(metadata, dict):
        return metadata
    kept = copy.deepcopy(metadata)
    kept.pop("location", None)
    identity = kept.get("code_identity")
    if isinstance(identity, dict):
        identity.pop("pushed", None)
    processing = kept.get("processing")
    if isinstance(processing, dict):
        processing.pop("pipelines", None)
        for process in processing.get("data_processes") or []:
            if not isinstance(process, dict):
                continue
            for name in ("start_date_time", "end_date_time", "experimenters", "pipeline_name"):
                process.pop(name, None)
            notes = process.get("notes")
            if isinstance(notes, str):
                lines = [n for n in notes.splitlines() if not n.startswith(_CODE_OCEAN_NOTE)]
                process["notes"] = "\n".join(lines) or None
    return kept


def add_rerun_crate(manifest: Mapping[str, Any], folder: Path, key: str) -> None:
    """Write the rerun's ``ro-crate-metadata.json`` into ``folder``, as a publish would.

    Only when the stored result has one (results from before crates have none) and the
    rerun wrote its record; built from that record and the rerun's files.
    """
    listed = {str(entry.get("path")) for entry in manifest.get("files") or []}
    metadata = folder / METADATA_FILE_NAME
    if CRATE_NAME not in listed or (folder / CRATE_NAME).exists() or not metadata.is_file():
        return
    try:
        record = {**json.loads(metadata.read_text(encoding="utf-8")), "_id": key}
    except ValueError:
        return  # compared as it is: its own verdict says it differs
    files = [
        {"path": relative, "size": path.stat().st_size, "sha256": file_sha256(path)}
        for relative, path in sorted(
            (path.relative_to(folder).as_posix(), path) for path in folder.rglob("*")
        )
        if path.is_file() and relative not in (MANIFEST_NAME, CRATE_NAME)
    ]
    crate = build_crate(record, files, FRAMEWORK_FILES)
    write_json(folder / CRATE_NAME, crate)


def crate_without_run_fields(crate: Any) -> Any:
    """A copy of a crate without :data:`CRATE_RUN_FIELDS`."""
    if not isinstance(crate, dict) or not isinstance(crate.get("@graph"), list):
        return crate
    kept = copy.deepcopy(crate)
    graph = []
    for entity in kept["@graph"]:
        if not isinstance(entity, dict):
            graph.append(entity)
            continue
        types = entity.get("@type")
        types = types if isinstance(types, list) else [types]
        if "Person" in types:
            continue
        if "CreateAction" in types:
            for name in ("startTime", "endTime", "agent"):
                entity.pop(name, None)
        if entity.get("@id") == "./":
            entity.pop("datePublished", None)
            entity.pop("author", None)  # the experimenters
        if "File" in types:
            entity.pop("contentSize", None)
            entity.pop("sha256", None)
        graph.append(entity)
    kept["@graph"] = graph
    return kept


def differing_paths(stored: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted paths (``a.b[0].c``) at which two JSON values differ, in order."""
    if isinstance(stored, dict) and isinstance(new, dict):
        found = []
        for name in sorted(stored.keys() | new.keys()):
            path = f"{prefix}.{name}" if prefix else str(name)
            if name not in stored or name not in new:
                found.append(path)
            else:
                found += differing_paths(stored[name], new[name], path)
        return found
    if isinstance(stored, list) and isinstance(new, list) and len(stored) == len(new):
        found = []
        for index, (old_item, new_item) in enumerate(zip(stored, new, strict=True)):
            found += differing_paths(old_item, new_item, f"{prefix}[{index}]")
        return found
    same = type(stored) is type(new) and stored == new
    return [] if same else [prefix or "(the whole value)"]
