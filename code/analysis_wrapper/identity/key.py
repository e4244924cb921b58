"""The job key: a pure, versioned function of what determines a result.

The key is the sha256 (hex) of the canonical JSON of the key's *pre-image*::

    {"key_scheme": 2,
     "code": {"url": ..., "tree": ...},
     "input_data": [sorted, normalised input locations],
     "file_location": [sorted, normalised file locations],
     "parameters": {validated parameters, JSON mode}}

With ``INPUT_IDENTITY=content`` the pre-image also holds ``"input_versions"``: each
input's version (S3 ETag or VersionId, a local file's size and mtime) by location. The
field is absent otherwise, so the default keys are those of earlier releases.

Every string in the pre-image, object keys included, is in Unicode NFC, so text typed
on macOS (which writes NFD) and on Linux gives one key; locations and the code URL
also have their host in lower case (:func:`analysis_wrapper.job.locations.location_key_form`).
Text that was already so (all ASCII text, with lower-case hosts) is unchanged, and so
are the keys of earlier releases for it: ``KEY_SCHEME`` stays 1.

``code.tree`` is the digest of the code's folders (``code/`` and ``environment/`` by
default) at the commit that runs, so a commit that changes only job files, the README
or the App Panel leaves every key as it was. Where no tree is known (a release-pinned
capsule, code outside git) the code enters as ``{"url": ..., "version": ...}``.
Scheme 1 keyed the commit itself (``code.version``); :func:`scheme_1_key` computes a
job's key as scheme 1 did, so a plan can recognise the records made under it.

Nothing here does I/O or depends on an installed library's version, so the same job
gets the same key on any machine, under any aind-data-schema release. Changing what
goes into the pre-image means bumping ``KEY_SCHEME``: every result would run again.
"""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring  # what the encoder writes a string with
from typing import Any

from ..errors import KeyComputationError
from ..job.locations import location_key_form

KEY_SCHEME = 2
"""Version of the pre-image layout. Bump it only on purpose: every key changes."""


@dataclass(frozen=True)
class CodeIdentity:
    """Which code produced a result.

    Parameters
    ----------
    url : str
        Where the code lives: a normalised repository URL (https, no credentials, no
        ``.git``), or a repository's path (see
        :func:`analysis_wrapper.identity.provenance.resolve_code_identity`). Kept in its key
        form: NFC, host in lower case.
    version : str
        The exact version that ran: a commit, ``<commit>+dirty.<digest>`` for
        uncommitted changes, or a release for a release-pinned capsule. Recorded; in
        the key only when ``tree`` is ``None``.
    commit : str or None
        The full commit hash, when known.
    name : str or None
        A human name for the code (the repository or capsule name); not in the key.
    dirty : bool
        Whether the working tree had uncommitted changes.
    tree : str or None
        Digest of the code's folders (``paths``) at ``commit``, with
        ``+dirty.<digest>`` for their uncommitted changes; what the key holds.
    paths : tuple of str
        The folders ``tree`` digests, relative to the capsule.
    pushed : bool or None
        Whether a remote branch contains ``commit`` (``None``: not known).
    """

    url: str
    version: str
    commit: str | None = None
    name: str | None = None
    dirty: bool = False
    tree: str | None = None
    paths: tuple[str, ...] = ()
    pushed: bool | None = None

    def __post_init__(self) -> None:
        # The record names the code as the key does (one source of truth).
        object.__setattr__(self, "url", location_key_form(self.url))
        object.__setattr__(self, "version", normal_unicode(self.version))


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
        The code that will run; its ``url`` and its ``tree`` (else its ``version``)
        enter the key.
    input_data : iterable of str
        Normalised input locations; their order does not matter. They enter the key
        in their key form (:func:`analysis_wrapper.job.locations.location_key_form`).
    file_location : iterable of str
        Normalised file locations inside the inputs; their order does not matter.
        Key form too.
    parameters : mapping
        The validated parameters in JSON mode; their text enters the key in NFC
        (:func:`normal_unicode`).
    input_versions : mapping, optional
        Each input's version by location (``INPUT_IDENTITY=content``, see
        :func:`analysis_wrapper.inputs.versions.input_versions`); ``None`` leaves the field out.

    Returns
    -------
    dict
        The pre-image, ready for :func:`compute_key`; a record stores its values.

    Raises
    ------
    KeyComputationError
        If two keys of one parameters object are the same text in NFC.
    """
    preimage: dict[str, Any] = {
        "key_scheme": KEY_SCHEME,
        "code": (
            {"url": code.url, "tree": code.tree}
            if code.tree is not None
            else {"url": code.url, "version": code.version}
        ),
        "input_data": sorted(set(map(location_key_form, input_data))),
        "file_location": sorted(set(map(location_key_form, file_location))),
        "parameters": normal_unicode(dict(parameters)),
    }
    if input_versions is not None:
        preimage["input_versions"] = dict(
            sorted(
                (location_key_form(location), normal_unicode(version))
                for location, version in input_versions.items()
            )
        )
    return preimage


def scheme_1_key(preimage: Mapping[str, Any], version: str) -> str:
    """The key scheme 1 gave the job of ``preimage`` (a scheme-2 pre-image) at ``version``.

    Scheme 1 held ``code: {"url", "version"}``, the commit itself; every other field
    was as now. A record whose ``_id`` is this key, for the version it names, is a
    record of this job made under scheme 1.
    """
    earlier = dict(preimage)
    earlier["key_scheme"] = 1
    earlier["code"] = {"url": (preimage.get("code") or {}).get("url"), "version": version}
    return compute_key(earlier)


def normal_unicode(value: Any) -> Any:
    """Return ``value`` with every string, object keys included, in Unicode NFC.

    Lists, tuples and objects are walked; anything else is kept. A value already in
    NFC (all ASCII text is) is returned as the same object, and cheaply: a plan calls
    this once per job.

    Raises
    ------
    KeyComputationError
        If two keys of one object become the same text (``"é"`` typed both ways).
    """
    return _renormalised(value, "") if _needs_nfc(value) else value


def _needs_nfc(value: Any) -> bool:
    kind = value.__class__
    if kind is str:
        return not value.isascii() and not unicodedata.is_normalized("NFC", value)
    if kind is dict:
        return _dict_needs_nfc(value)
    if kind is list or kind is tuple:
        return any(_needs_nfc(item) for item in value)
    if isinstance(value, str):
        return not unicodedata.is_normalized("NFC", value)
    if isinstance(value, Mapping):
        return any(_needs_nfc(name) or _needs_nfc(item) for name, item in value.items())
    if isinstance(value, list | tuple):
        return any(_needs_nfc(item) for item in value)
    return False


def _dict_needs_nfc(value: dict[Any, Any]) -> bool:
    """:func:`_needs_nfc` of a dict, written out for the flat dict of plain values."""
    for name, item in value.items():
        if (name.__class__ is not str or not name.isascii()) and _needs_nfc(name):
            return True
        item_kind = item.__class__
        if item_kind is str:
            if not item.isascii() and not unicodedata.is_normalized("NFC", item):
                return True
        elif item_kind not in _PLAIN and _needs_nfc(item):
            return True
    return False


_PLAIN = frozenset({int, float, bool, type(None)})


def _renormalised(value: Any, path: str) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, Mapping):
        normal: dict[Any, Any] = {}
        for name, item in value.items():
            normal_name = _renormalised(name, path)
            where = f"{path}.{normal_name}" if path else str(normal_name)
            if normal_name in normal:
                raise KeyComputationError(
                    f"field {where!r} is given twice, its name written in two Unicode "
                    "forms (NFC and NFD) that are the same text; keep one"
                )
            normal[normal_name] = _renormalised(item, where)
        return normal
    if isinstance(value, list | tuple):
        items = [_renormalised(item, f"{path}[{index}]") for index, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    return value


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
        changes. A text not in Unicode NFC is encoded again from the pre-image, whose
        strings are in NFC (:func:`key_preimage`).
    """
    if not encoded:
        return hashlib.sha256(canonical_json(preimage)).hexdigest()
    # A text not in NFC is of the value before NFC (the pre-image holds the value
    # after): encode that one from the pre-image. JSON text is in NFC exactly when each
    # of its strings is (they sit between quotes, which compose with nothing).
    trusted = encoded
    for text in encoded.values():
        if not text.isascii() and not unicodedata.is_normalized("NFC", text):
            trusted = {
                name: text
                for name, text in encoded.items()
                if unicodedata.is_normalized("NFC", text)
            }
            break
    return hashlib.sha256(_assembled(preimage, trusted)).hexdigest()


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
