"""``--plan 1 --explain KEY``: one planned job against the closest stored record.

The plan's reason for a job names what changed since the closest record with the same
input data (:func:`analysis_wrapper.record.changes.change_reasons`). ``--explain``
shows that comparison whole, for the one job whose key starts with ``KEY``: its action
and reason, the record it is compared with, and every difference grouped as code,
data and parameters. A job whose record exists is compared with that record (nothing
differs); a job that none of the stored records shares its inputs with says so.

The records come from the same indexed lookup as the plan's reasons; nothing is
scanned.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import UsageError
from ..record.changes import closest_record, find_siblings
from ..record.fields import describe_record
from ..record.keydiff import diff_job
from ..stores.base import RecordStore, input_set_key
from .context import PlannedJob


def explain_planned(planned: Sequence[PlannedJob], prefix: str, store: RecordStore) -> list[str]:
    """Explain the planned job whose key starts with ``prefix``, as lines of text.

    Raises
    ------
    UsageError
        If no job of the plan, or more than one, has a key starting with ``prefix``.
    """
    job = _the_job(planned, prefix)
    assert job.key is not None and job.preimage is not None
    lines = [
        f"explain {job.key[:12]} ({job.job_file.name}): {job.decision.action.value}, "
        f"{job.decision.reason}"
    ]
    found = find_siblings([job.preimage], store)
    if found is None:
        return [*lines, "the records with its input data could not be read (see the warning)"]
    inputs = job.preimage.get("input_data") or []
    nearest = closest_record(job.preimage, found.get(input_set_key(inputs), []))
    if nearest is None:
        return [
            *lines,
            "no stored record has its input data and file locations: nothing to compare with",
        ]
    _, record = nearest
    diff = diff_job(job.preimage, record)
    compared = "its own record" if record.get("_id") == job.key else "the closest record"
    return [
        *lines,
        f"compared with {compared}: {describe_record(record)}",
        f"{diff.count} field(s) differ, from the record to the job:",
        *diff.lines(),
    ]


def _the_job(planned: Sequence[PlannedJob], prefix: str) -> PlannedJob:
    matches = [job for job in planned if job.key is not None and job.key.startswith(prefix)]
    if not matches:
        raise UsageError(
            f"--explain {prefix}: no job of this plan has a key starting so; the plan "
            "lists each job's key (plan.json has them whole)"
        )
    if len(matches) > 1:
        named = ", ".join(sorted(job.job_file.name for job in matches))
        raise UsageError(
            f"--explain {prefix}: {len(matches)} jobs have keys starting so ({named}); give "
            "more of the key"
        )
    return matches[0]
