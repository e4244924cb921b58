"""Find results: the Python API behind ``analysis-wrapper results find``.

In a notebook::

    from analysis_wrapper import find_records
    records = find_records({"isi_violations_cutoff": 0.5})
    latest = find_records(input_data="sessions/ecephys_612345_2025-03-14_10-02-11",
                          analysis_tag="example", latest=True)

"Newest" (``latest=True``, ``--latest``) means the latest
``processing.data_processes[0].end_date_time``, when the analysis finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config.settings import Capsule, StoreSettings
from ..errors import ConfigError, StoreError, UsageError
from ..identity.key import canonical_json
from ..job.locations import LocationError, location_key_form, normalise_location
from ..stores.base import Record, RecordQuery, RecordStore, record_input_urls, record_parameters
from ..stores.factory import open_record_store
from .fields import record_file_locations, record_process

MIN_KEY_PREFIX = 6
"""The shortest key prefix ``results show`` and ``results download`` accept."""


def parse_parameter_filter(text: str) -> tuple[str, Any]:
    """Read ``KEY=VALUE``; the value is JSON when it parses (``0.5``, ``true``), else text.

    Raises
    ------
    UsageError
        If there is no ``=`` or no key.
    """
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(
            f"--param {text!r}: write KEY=VALUE, e.g. --param isi_violations_cutoff=0.5"
        )
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return name.strip(), value


def locate_capsule(capsule: Path | str | None = None) -> Capsule:
    """Use ``capsule`` if given, else walk up from the current folder to find one.

    Raises
    ------
    ConfigError
        If no folder holding ``code/run_capsule.py`` is found.
    """
    if capsule is not None:
        found = Capsule(Path(capsule).resolve())
        if not found.code_dir.is_dir():
            raise ConfigError(f"--capsule {capsule}: no code/ folder there")
        return found
    start = Path.cwd()
    located = Capsule.find(start)
    if located is None:
        raise ConfigError(
            f"no capsule found above {start} (a folder holding code/run_capsule.py); "
            "run from inside the capsule or pass --capsule DIR"
        )
    return located


def find_records(
    parameters: Mapping[str, Any] | None = None,
    *,
    capsule: Path | str | None = None,
    input_data: str | Iterable[str] | None = None,
    code_version: str | None = None,
    analysis_name: str | None = None,
    analysis_tag: str | None = None,
    latest: bool = False,
) -> list[Record]:
    """Return the stored records that match every filter given, oldest first.

    Parameters
    ----------
    parameters : mapping, optional
        Parameter name to value; every one must match (``1`` matches ``1.0``).
    capsule : path, optional
        The capsule folder; found from the current folder when omitted. It locates
        the embedded stores; ``DOCDB_HOST`` and friends are read from the environment.
    input_data : str or iterable of str, optional
        Input locations (``s3://...`` or paths, normalised as job files are); the
        record's ``code.input_data`` URLs must include every one.
    code_version : str, optional
        The exact ``code.version`` (a commit, or ``<commit>+dirty.<digest>``).
    analysis_name : str, optional
        The ``analysis_name`` parameter.
    analysis_tag : str, optional
        The ``analysis_tag`` parameter.
    latest : bool
        Keep only the newest record (latest ``end_date_time``) of each group with
        the same input data and the same parameters.

    Raises
    ------
    UsageError
        If an input location cannot be normalised.
    """
    locations = [input_data] if isinstance(input_data, str) else list(input_data or [])
    query = RecordQuery(
        parameters=dict(parameters or {}),
        input_data=tuple(normalise_input(location) for location in locations),
        code_version=code_version,
        analysis_name=analysis_name,
        analysis_tag=analysis_tag,
    )
    store = open_record_store(StoreSettings(), locate_capsule(capsule), read_only=True)
    try:
        records = store.find(query)
    finally:
        store.close()
    return latest_records(records) if latest else records


def normalise_input(location: str) -> str:
    """Normalise an input location as records store it: the key form of ``s3_location``.

    Raises
    ------
    UsageError
        If the location is empty, has an unknown scheme, or escapes with ``..``.
    """
    try:
        return location_key_form(normalise_location(location))
    except LocationError as exc:
        raise UsageError(f"--input {location!r}: {exc}") from None


def finished_at(record: Record) -> datetime:
    """When the record's analysis finished (``end_date_time``); the epoch if unknown."""
    text = record_process(record).get("end_date_time")
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def latest_records(records: list[Record]) -> list[Record]:
    """Keep the newest record of each (input data, file locations, parameters) group.

    "Newest" is the latest ``processing.data_processes[0].end_date_time``; ties keep
    the later record in ``records``. The survivors keep their order in ``records``.
    """
    newest: dict[bytes, tuple[datetime, int]] = {}
    for position, record in enumerate(records):
        group = canonical_json(
            {
                "input_data": sorted(record_input_urls(record)),
                "file_location": record_file_locations(record),
                "parameters": record_parameters(record),
            }
        )
        when = finished_at(record)
        if group not in newest or when >= newest[group][0]:
            newest[group] = (when, position)
    keep = {position for _, position in newest.values()}
    return [record for position, record in enumerate(records) if position in keep]


def get_record_by_prefix(store: RecordStore, prefix: str) -> Record:
    """Return the one record whose key is ``prefix`` or starts with it.

    A full 64-character key is one lookup; a shorter prefix reads every record's key
    through :meth:`RecordStore.find` (fine for thousands of records).

    Raises
    ------
    UsageError
        If ``prefix`` is shorter than 6 characters or not hexadecimal.
    StoreError
        If no record, or more than one, has a key starting with ``prefix``.
    """
    text = prefix.strip().lower()
    if len(text) < MIN_KEY_PREFIX or any(c not in "0123456789abcdef" for c in text):
        raise UsageError(
            f"key {prefix!r}: give a key or a prefix of at least {MIN_KEY_PREFIX} hex "
            "characters, as `analysis-wrapper results find` prints it"
        )
    if len(text) == 64:
        record = store.get(text)
        found = [record] if record is not None else []
    else:
        found = [r for r in store.find(RecordQuery()) if str(r.get("_id", "")).startswith(text)]
    if not found:
        raise StoreError(f"no record with key {text} in {store.display_url}")
    if len(found) > 1:
        keys = ", ".join(sorted(str(r.get("_id"))[:12] for r in found))
        raise StoreError(f"key prefix {text} is ambiguous: {len(found)} records ({keys})")
    return found[0]
