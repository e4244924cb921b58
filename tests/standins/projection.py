"""Find projections as MongoDB (and so the DocDB API's DocumentDB) evaluates them.

The stand-in hands plain projections (``{"a.b": 1}``, ``{"big": 0}``) to SecantusDB.
A projection with computed fields (``{"tag": "$processing.data_processes.code.parameters.tag"}``,
the form result-access uses) it evaluates itself: SecantusDB 0.7.0b3 leaves out every
computed field whose path goes through an array (``"$location"`` alone works), where
MongoDB returns the values found along the path. The rules, from MongoDB's manual
("Field Paths"; "Project Fields to Return from Query"):

- ``"$a.b"`` on a document follows the names; through an array it is evaluated on each
  element, keeping the array's shape (an array of arrays gives an array of arrays);
  elements that are neither documents nor arrays, and elements where the rest of the
  path is missing, give nothing; a path missing at the top leaves the field out.
- ``"a.b": 1`` keeps ``a.b`` and the documents around it; through an array it keeps
  each element document's ``b`` (an element without it becomes ``{}``) and drops
  the element values that are not documents.
- ``_id`` is kept unless ``"_id": 0``.
"""

from __future__ import annotations

from typing import Any

MISSING: Any = object()
"""What a path that leads nowhere evaluates to (the field is then left out)."""


def is_computed(projection: dict[str, Any] | None) -> bool:
    """Whether ``projection`` computes any field (a ``"$path"`` string)."""
    return bool(projection) and any(
        isinstance(value, str) and value.startswith("$") for value in projection.values()
    )


def evaluate_path(value: Any, path: str) -> Any:
    """``"$path"`` (given without its ``$``) evaluated on ``value``; :data:`MISSING` if none."""
    return _follow(value, path.split("."))


def _follow(value: Any, names: list[str]) -> Any:
    if not names:
        return value
    if isinstance(value, dict):
        return _follow(value[names[0]], names[1:]) if names[0] in value else MISSING
    if isinstance(value, list):
        found = [_follow(element, names) for element in value if isinstance(element, dict | list)]
        return [element for element in found if element is not MISSING]
    return MISSING


def _include(value: Any, names: list[str]) -> Any:
    if not names:
        return value
    if isinstance(value, dict):
        if names[0] not in value:
            return MISSING
        kept = _include(value[names[0]], names[1:])
        return MISSING if kept is MISSING else {names[0]: kept}
    if isinstance(value, list):
        kept = [_include(element, names) for element in value if isinstance(element, dict | list)]
        return [{} if element is MISSING else element for element in kept]
    return MISSING


def _merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    for name, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(name), dict):
            _merge(into[name], value)
        elif isinstance(value, list) and isinstance(into.get(name), list):
            for mine, theirs in zip(into[name], value, strict=True):
                if isinstance(mine, dict) and isinstance(theirs, dict):
                    _merge(mine, theirs)
        else:
            into[name] = value


def project(document: dict[str, Any], projection: dict[str, Any]) -> dict[str, Any]:
    """``document`` as a find with ``projection`` (inclusions and ``"$path"`` fields) returns it.

    Raises
    ------
    ValueError
        For a projection this module does not evaluate (exclusions beside computed
        fields, operator expressions): the stand-in answers 400 rather than guess.
    """
    result: dict[str, Any] = {}
    if projection.get("_id", 1) and "_id" in document:
        result["_id"] = document["_id"]
    for name, spec in projection.items():
        if name == "_id" and not isinstance(spec, str):
            continue
        if isinstance(spec, str) and spec.startswith("$"):
            value = evaluate_path(document, spec[1:])
            if value is not MISSING:
                result[name] = value
        elif spec in (1, True):
            kept = _include(document, name.split("."))
            if kept is not MISSING:
                _merge(result, kept)
        else:
            raise ValueError(f"projection {name}: {spec!r} is not evaluated by the stand-in")
    return result
