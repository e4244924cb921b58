"""Why two keys differ: their pre-images' fields, grouped as code, data and parameters.

Two records (``analysis-wrapper keys diff KEY1 KEY2``), or a planned job and the
closest stored record (``--plan 1 --explain KEY``), are compared field by field in the
plan's own words (:func:`analysis_wrapper.record.changes.describe_changes`), the older
side first, under three headings: *code* (``code.tree 59a441b94591 → 80f343a286b8
(the record's commit: b54a2268e726)``), *data* (``input_data ["s3://b/a"] →
["s3://b/b"]``, an input's version) and *parameters* (``parameters.min_spikes 20 → 30``).

Pure: the records are read by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .changes import CHANGE_GROUPS, SHORT_VERSION, grouped_changes
from .preimage import record_preimage, reproduces_key

NO_DIFFERENCE = "(no difference)"


@dataclass(frozen=True)
class KeyDiff:
    """The field-level differences between a record (the older side) and a pre-image.

    Parameters
    ----------
    groups : dict
        ``{"code": [...], "data": [...], "parameters": [...]}``, each difference in the
        plan's words.
    notes : tuple of str
        What a reader must know to trust the comparison (a record whose fields do not
        give its key).
    """

    groups: dict[str, list[str]]
    notes: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        """How many fields differ."""
        return sum(len(changes) for changes in self.groups.values())

    def lines(self) -> list[str]:
        """The differences as text: each group's name, then its differences indented."""
        lines: list[str] = []
        for group in CHANGE_GROUPS:
            lines.append(group)
            lines += [f"  {change}" for change in self.groups[group] or [NO_DIFFERENCE]]
        lines += [f"note: {note}" for note in self.notes]
        return lines

    def as_json(self) -> dict[str, Any]:
        """The differences as JSON: the groups and the notes."""
        return {
            **{group: list(self.groups[group]) for group in CHANGE_GROUPS},
            "notes": [*self.notes],
        }


def diff_records(older: Mapping[str, Any], newer: Mapping[str, Any]) -> KeyDiff:
    """What changed from the ``older`` record's key to the ``newer`` one's.

    Each record's pre-image is rebuilt from its fields
    (:func:`analysis_wrapper.record.preimage.record_preimage`); a record whose fields do
    not give its ``_id`` (written by analysis-pipeline-utils, or edited since) is
    compared as its fields are, with a note.
    """
    newer_preimage = record_preimage(newer)
    notes = [
        f"record {short_key(record)}'s fields do not give its key (a record "
        "analysis-pipeline-utils wrote, or one changed since): its fields are compared"
        for record, preimage in ((older, None), (newer, newer_preimage))
        if not reproduces_key(record, preimage)
    ]
    return KeyDiff(grouped_changes(newer_preimage, older), tuple(notes))


def diff_job(preimage: Mapping[str, Any], record: Mapping[str, Any]) -> KeyDiff:
    """What changed from a stored record to a job's pre-image (the plan's comparison)."""
    return KeyDiff(grouped_changes(preimage, record))


def short_key(record: Mapping[str, Any]) -> str:
    """A record's key cut to 12 characters, as the plan shows keys."""
    return str(record.get("_id") or "")[:SHORT_VERSION]
