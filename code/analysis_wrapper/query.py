"""Find results: the Python API behind ``analysis-wrapper results find``.

In a notebook::

    from analysis_wrapper import find_records
    records = find_records({"isi_violations_cutoff": 0.5})
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError, UsageError
from .settings import Capsule, StoreSettings
from .stores import open_record_store
from .stores.base import Record, RecordQuery


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
) -> list[Record]:
    """Return the stored records whose parameters match, oldest first.

    Parameters
    ----------
    parameters : mapping, optional
        Parameter name to value; every one must match (``1`` matches ``1.0``).
    capsule : path, optional
        The capsule folder; found from the current folder when omitted. It locates
        the embedded stores; ``DOCDB_HOST`` and friends are read from the environment.
    """
    store = open_record_store(StoreSettings(), locate_capsule(capsule), read_only=True)
    try:
        return store.find(RecordQuery(parameters=dict(parameters or {})))
    finally:
        store.close()
