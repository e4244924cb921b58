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
from json.encoder import encode_basestring  # what the encoder writes a string with
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


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
"""The one canonical encoder, made once (``json.dumps`` with options makes one per call)."""


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
        return _CANONICAL.encode(value).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError (lone surrogates) included
        _reject_non_finite(value, "")  # name the field, when a NaN or infinity is the cause
        raise KeyComputationError(f"value has no canonical JSON form: {exc}") from exc


def compute_key(preimage: Mapping[str, Any], encoded: Mapping[str, str] | None = None) -> str:
    """Return the key (sha256 hex of the canonical JSON) of a pre-image.

    Parameters
    ----------
    preimage : mapping
        The pre-image (:func:`key_preimage`).
    encoded : mapping, optional
        The canonical JSON (as text) of some of the pre-image's values, by field, which
        the caller already has: a plan encodes its code and each distinct parameter set
        once, not once per job. The key is the same; only the time to compute it
        changes.
    """
    if not encoded:
        return hashlib.sha256(canonical_json(preimage)).hexdigest()
    return hashlib.sha256(_assembled(preimage, encoded)).hexdigest()


def _assembled(preimage: Mapping[str, Any], encoded: Mapping[str, str]) -> bytes:
    """``canonical_json(preimage)``, with the given texts of some values spliced in.

    The fields go in sorted order, as ``sort_keys`` writes them. A list of strings
    (the locations) is written string by string with the function the encoder itself
    writes strings with, an int as the encoder does, anything else by
    :func:`canonical_json`.
    """
    parts = []
    for name in sorted(preimage):
        text = encoded.get(name)
        if text is None:
            value = preimage[name]
            kind = value.__class__
            if kind is list:
                try:
                    text = "[" + ",".join(map(encode_basestring, value)) + "]"
                except TypeError:  # not only strings
                    text = canonical_json(value).decode("utf-8")
            elif kind is int:
                text = int.__repr__(value)
            else:
                text = canonical_json(value).decode("utf-8")
        parts.append(encode_basestring(name) + ":" + text)
    try:
        return ("{" + ",".join(parts) + "}").encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, as canonical_json says
        raise KeyComputationError(f"value has no canonical JSON form: {exc}") from exc


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
