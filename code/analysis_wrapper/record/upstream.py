"""Records analysis-pipeline-utils wrote: told apart from ours, and matched to a job.

Upstream's wrapper keys a record by the sha256 of its ``Code`` sub-document as
pydantic's compact JSON (``_id`` and ``name``); ours by the key of the job. A record
whose ``_id`` is that digest of its own code is upstream's. It did a job of ours when
its code url and version, input locations, file locations and parameters (validated
with the job's model, as ours are) are the job's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..stores.base import record_code, record_input_urls, record_parameters
from .fields import record_file_locations

UPSTREAM = "analysis-pipeline-utils"


def is_upstream_record(record: Mapping[str, Any]) -> bool:
    """Whether ``record`` was written by analysis-pipeline-utils' wrapper (its ``_id``)."""
    code = record_code(dict(record))
    record_id = record.get("_id")
    if not code or not isinstance(record_id, str):
        return False
    # The stored code keeps the field order pydantic dumped it in: its compact JSON is
    # the text upstream hashed (pydantic writes non-ASCII as is, as this does).
    text = json.dumps(code, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest() == record_id


def done_by_upstream(
    preimage: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    same_parameters: Callable[[Mapping[str, Any]], bool],
    is_todays_code: Callable[[str], bool],
) -> Mapping[str, Any] | None:
    """The newest record of ``records`` upstream wrote for the job of ``preimage``, if any.

    Parameters
    ----------
    preimage : mapping
        The job's key pre-image.
    records : sequence of mapping
        Records with the job's input data, oldest first (as the store lists them).
    same_parameters : callable
        Whether a record's parameters (``file_location`` left out), validated with the
        job's model, are the job's.
    is_todays_code : callable
        Whether the code version a record names (upstream's: a commit) is the code
        that runs now (the same commit, or one with today's code tree).
    """
    code = preimage.get("code") or {}
    inputs = sorted(set(preimage.get("input_data") or []))
    files = sorted(set(preimage.get("file_location") or []))
    record: Mapping[str, Any]
    for record in reversed(records):
        stored = record_code(dict(record))
        if (
            stored.get("url") == code.get("url")
            and isinstance(stored.get("version"), str)
            and sorted(set(record_input_urls(dict(record)))) == inputs
            and record_file_locations(record) == files
            and is_upstream_record(record)
            and same_parameters(record_parameters(dict(record)))
            and is_todays_code(stored["version"])
        ):
            return record
    return None
