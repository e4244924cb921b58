"""The job a record was made from, rebuilt from the record alone, and the code it names.

This is a job *file* a run can take (not the key's pre-image, which the key commands
rebuild): run at the record's commit, it gives the record's key and, when the analysis
is deterministic, its files.

What a record keeps of its job, and so what the rebuilt job holds: the input locations
with the asset names, metadata record ids (``docdb_record_id``) and an older job's
asset ids the job gave, the file locations, the validated parameters (every field,
defaults included) and the dispatcher's query (a line of the notes). What a record does
not keep, and a rebuilt job lacks: the inputs' order in the job file (the record holds
them sorted, as the key does), ``group_metadata`` and the job file's name. Records
written before 2026-12-03 kept no ``docdb_record_id`` s either: their rebuilt jobs have
none, so ``job.asset_records()`` finds none.

Only a record made from a commit can be rebuilt to run: one made from uncommitted
changes (``--allow_dirty 1``) or attributed to a Code Ocean release names code that no
commit holds, and is refused with the remedy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ProvenanceError
from ..record.fields import (
    INPUT_ASSET_IDS,
    INPUT_RECORD_IDS,
    asset_name,
    by_input_location,
    record_code_tree,
    record_file_locations,
    record_process,
)
from ..stores.base import Record, record_code, record_parameters

DIRTY_MARK = "+dirty."
"""What a code version or tree carries when it was made from uncommitted changes
(``<sha>+dirty.<digest>``, see :mod:`analysis_wrapper.identity.provenance`)."""

QUERY_NOTE = "Query used to retrieve data assets: "
"""The notes' line that keeps the dispatcher's query (upstream's wording)."""

_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # sha-1, or sha-256 repositories


@dataclass(frozen=True)
class RecordedCode:
    """The code a record names: where it lives and the commit that ran.

    Parameters
    ----------
    url : str
        ``code.url``: the repository's URL (or path) as the key holds it.
    commit : str
        ``code.commit_hash``: the full commit.
    tree : str or None
        The code tree the key holds (``None`` for a record of key scheme 1).
    """

    url: str
    commit: str
    tree: str | None


@dataclass(frozen=True)
class RebuiltJob:
    """A record's job, ready to be written as a job file and run again.

    Parameters
    ----------
    key : str
        The record's key.
    location : str
        Where the record's result is (the folder its manifest is in).
    code : RecordedCode
        The code that made the record.
    job : dict
        The job file's content (the upstream shape): ``s3_location``, ``asset_name``,
        ``file_location``, ``distributed_parameters`` (the validated parameters, the
        layer that overrides every other), and ``asset_id`` and ``query`` when the
        record has them.
    """

    key: str
    location: str
    code: RecordedCode
    job: dict[str, Any]


def rebuild_job(record: Record) -> RebuiltJob:
    """Rebuild the job and the code of ``record``.

    Raises
    ------
    ProvenanceError
        When the record names no commit to check out: made from uncommitted changes,
        attributed to a release, or with no valid commit hash. The message says why
        and what to do.
    """
    return RebuiltJob(
        key=str(record.get("_id") or ""),
        location=str(record.get("location") or ""),
        code=recorded_code(record),
        job=job_document(record),
    )


def recorded_code(record: Record) -> RecordedCode:
    """The code ``record`` names, refused when no commit holds it.

    Raises
    ------
    ProvenanceError
        When the record was made from uncommitted changes, names a release and no
        commit, or has a commit hash that is not one.
    """
    key = str(record.get("_id") or "")[:12]
    code = record_code(record)
    url = str(code.get("url") or "")
    version = str(code.get("version") or "")
    commit = code.get("commit_hash")
    tree = record_code_tree(record)
    if DIRTY_MARK in version or (tree is not None and DIRTY_MARK in tree):
        raise ProvenanceError(
            f"record {key} was made from uncommitted changes (code version {version}): no "
            "commit holds the code that ran, so it cannot be reproduced; to make records "
            "that can be, commit the code and post without --allow_dirty"
        )
    if not commit:
        raise ProvenanceError(
            f"record {key} names version {version or '(none)'} of {url or 'its code'} and "
            "no commit (a Code Ocean release record), so there is nothing to check out; "
            "reproduce it by running that release of the capsule in Code Ocean"
        )
    if not isinstance(commit, str) or not _COMMIT.fullmatch(commit):
        raise ProvenanceError(
            f"record {key}: code.commit_hash {commit!r} is not a full git commit hash, so "
            "there is nothing to check out"
        )
    return RecordedCode(url=url, commit=commit, tree=tree)


def job_document(record: Record) -> dict[str, Any]:
    """The job file that makes ``record``'s job: its inputs, file locations, parameters.

    The asset names (and ids) are positional in a job file; the record keeps them by
    location. They are given for the inputs in the record's order, as far as each
    input has one (a job names all its assets or, in its first places, some).
    """
    assets = [a for a in record_code(record).get("input_data") or [] if isinstance(a, dict)]
    locations = [str(a["url"]) for a in assets if isinstance(a.get("url"), str)]
    ids = record.get(INPUT_ASSET_IDS)
    job: dict[str, Any] = {
        "s3_location": locations,
        "asset_name": _leading([asset_name(record, {"url": url}) for url in locations]),
        "file_location": record_file_locations(record) or None,
        "distributed_parameters": dict(record_parameters(record)),
    }
    if isinstance(ids, Mapping):
        asset_ids = _leading([_text(ids.get(url)) for url in locations])
        if asset_ids:
            job["asset_id"] = asset_ids
    record_ids = by_input_location(record, INPUT_RECORD_IDS)
    docdb_record_ids = _leading([record_ids.get(url) for url in locations])
    if docdb_record_ids:
        job["docdb_record_id"] = docdb_record_ids
    query = recorded_query(record)
    if query is not None:
        job["query"] = query
    return job


def recorded_query(record: Record) -> str | dict[str, Any] | None:
    """The dispatcher's query the record keeps in its notes (a JSON object or text)."""
    notes = record_process(record).get("notes")
    if not isinstance(notes, str):
        return None
    for line in notes.splitlines():
        if line.startswith(QUERY_NOTE):
            text = line[len(QUERY_NOTE) :]
            try:
                value = json.loads(text)
            except ValueError:
                return text
            # A query object was written as sorted JSON; a text query stays text.
            return value if isinstance(value, dict) else text
    return None


def _leading(values: list[str | None]) -> list[str]:
    """The values up to the first missing one."""
    given: list[str] = []
    for value in values:
        if value is None:
            break
        given.append(value)
    return given


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
