"""The job key: a pure, versioned function of what determines a result.

The key is the sha256 (hex) of the canonical JSON of the key's *pre-image*::

    {"key_scheme": 1,
     "code": {"url": ..., "version": ...},
     "input_data": [sorted, normalised input locations],
     "file_location": [sorted, normalised file locations],
     "parameters": {validated parameters, JSON mode}}

With ``INPUT_IDENTITY=content`` the pre-image also holds ``"input_versions"``: each
input's version (S3 ETag or VersionId, a local file's size and mtime) by location. The
field is absent otherwise, so the default keys are those of earlier releases.

Nothing here does I/O or depends on an installed library's version, so the same job
gets the same key on any machine, under any aind-data-schema release. Changing what
goes into the pre-image means bumping ``KEY_SCHEME``: every result would run again.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import KeyComputationError

KEY_SCHEME = 1
"""Version of the pre-image layout. Bump it only on purpose: every key changes."""


@dataclass(frozen=True)
class CodeIdentity:
    """Which code produced a result.

    Parameters
    ----------
    url : str
        Where the code lives: a normalised repository URL (https, no credentials, no
        ``.git``), or the repository's path when it has no remote.
    version : str
        The exact version that ran: a commit, ``<commit>+dirty.<digest>`` for
        uncommitted changes, or a release for a release-pinned capsule.
    commit : str or None
        The full commit hash, when known.
    name : str or None
        A human name for the code (the repository or capsule name); not in the key.
    dirty : bool
        Whether the working tree had uncommitted changes.
    """

    url: str
    version: str
    commit: str | None = None
    name: str | None = None
    dirty: bool = False


def key_preimage(
    code: CodeIdentity,
    input_data: Iterable[str],
    file_location: Iterable[str],
    parameters: Mapping[str, Any],
    input_versions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build the pre-image of a job's key.

    Parameters
    ----------
    code : CodeIdentity
        The code that will run; only its ``url`` and ``version`` enter the key.
    input_data : iterable of str
        Normalised input locations; their order does not matter.
    file_location : iterable of str
        Normalised file locations inside the inputs; their order does not matter.
    parameters : mapping
        The validated parameters in JSON mode.
    input_versions : mapping, optional
        Each input's version by location (``INPUT_IDENTITY=content``, see
        :func:`analysis_wrapper.input_versions.input_versions`); ``None`` leaves the field out.

    Returns
    -------
    dict
        The pre-image, ready for :func:`compute_key`.
    """
    preimage: dict[str, Any] = {
        "key_scheme": KEY_SCHEME,
        "code": {"url": code.url, "version": code.version},
        "input_data": sorted(set(input_data)),
        "file_location": sorted(set(file_location)),
        "parameters": dict(parameters),
    }
    if input_versions is not None:
        preimage["input_versions"] = dict(sorted(input_versions.items()))
    return preimage


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` the one way the key is computed from.

    Sorted keys, no whitespace, UTF-8, and no NaN or infinity (JSON has none, and
    they compare unequal to themselves).

    Raises
    ------
    KeyComputationError
        If ``value`` holds a non-finite float or a value JSON cannot represent; the
        message names the field.
    """
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError (lone surrogates) included
        _reject_non_finite(value, "")  # name the field, when a NaN or infinity is the cause
        raise KeyComputationError(f"value has no canonical JSON form: {exc}") from exc


def compute_key(preimage: Mapping[str, Any]) -> str:
    """Return the key (sha256 hex of the canonical JSON) of a pre-image."""
    return hashlib.sha256(canonical_json(preimage)).hexdigest()


def _reject_non_finite(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        where = path or "value"
        raise KeyComputationError(
            f"field {where!r} is {value}, which has no JSON form and cannot be part of a "
            "key; use None for a missing value or a finite number"
        )
    if isinstance(value, Mapping):
        for name, item in value.items():
            _reject_non_finite(item, f"{path}.{name}" if path else str(name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _reject_non_finite(item, f"{path}[{index}]")
