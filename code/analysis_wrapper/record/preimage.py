"""A stored record's key pre-image, rebuilt from the record's own fields.

A record keeps every value its key was computed from
(:func:`analysis_wrapper.identity.key.key_preimage`), so the pre-image, and from it the
key, can be rebuilt from the record alone, without the result folder's ``key.json``::

    code.url                                  -> code.url
    code_identity.tree (else code.version)    -> code.tree (else code.version)
    code.input_data[].url                     -> input_data
    code.parameters.file_location             -> file_location
    code.parameters, less file_location       -> parameters
    input_versions (INPUT_IDENTITY=content)   -> input_versions

A record without a code tree was made either under key scheme 1 (which keyed the
commit) or by a release-pinned capsule (which keys its release): both forms are tried,
and the one whose key is the record's ``_id`` is the pre-image. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import KeyComputationError
from ..identity.key import CodeIdentity, compute_key, key_preimage
from ..stores.base import record_code, record_input_urls, record_parameters
from .fields import record_code_tree, record_file_locations, record_input_versions


def record_preimage(record: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild the pre-image of a record's key from the record's fields.

    Parameters
    ----------
    record : mapping
        A stored record, as the runner writes it.

    Returns
    -------
    dict
        The pre-image whose key (:func:`compute_key`) is the record's ``_id``, when one
        of the forms a record can have been keyed under gives it; otherwise the form
        the record's fields call for today (see :func:`reproduces_key`: a record
        analysis-pipeline-utils wrote is keyed by its own ``code``).
    """
    candidates = _candidates(record)
    wanted = record.get("_id")
    for candidate in candidates:
        if _key_of(candidate) == wanted:
            return candidate
    return candidates[0]


def reproduces_key(record: Mapping[str, Any], preimage: Mapping[str, Any] | None = None) -> bool:
    """Whether the record's fields (or ``preimage``, rebuilt from them) give its ``_id``."""
    rebuilt = record_preimage(record) if preimage is None else preimage
    return _key_of(rebuilt) == record.get("_id")


def _candidates(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pre-images the record could have been keyed under, today's form first."""
    code = record_code(dict(record))
    url = str(code.get("url") or "")
    version = str(code.get("version") or "")
    tree = record_code_tree(record)
    preimage = key_preimage(
        CodeIdentity(url=url, version=version, tree=tree),
        record_input_urls(dict(record)),
        record_file_locations(record),
        record_parameters(dict(record)),
        record_input_versions(record),
    )
    if tree is not None:
        return [preimage]
    # No tree: a release-pinned capsule (scheme 2, keyed by its version), or scheme 1,
    # which keyed the commit in the same place.
    scheme_1 = {**preimage, "key_scheme": 1}
    return [preimage, scheme_1]


def _key_of(preimage: Mapping[str, Any]) -> str | None:
    try:
        return compute_key(preimage)
    except KeyComputationError:  # a hand-edited record holding a value with no JSON form
        return None
