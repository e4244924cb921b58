"""The project's own settings, committed with the capsule: ``[tool.analysis-wrapper]``.

Read from the ``pyproject.toml`` beside ``code/`` (the capsule's top folder). Unlike
the environment, these are the same for everyone who runs the capsule's commit, which
is what a setting that changes keys must be::

    [tool.analysis-wrapper]
    code_paths = ["code", "environment"]   # the default

``code_paths`` are the folders whose content can change a result: the key holds the
digest of their git trees, so a commit that touches nothing in them (job files, the
README, the App Panel) leaves every key as it was, and the dirty check looks only
there. Add a folder your analysis reads code or configuration from; a folder that
does not exist counts as empty.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import tomllib
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..errors import UsageError

PYPROJECT = "pyproject.toml"
TABLE = "analysis-wrapper"
DEFAULT_CODE_PATHS = ("code", "environment")


class ProjectSettings(BaseModel):
    """``[tool.analysis-wrapper]`` of the capsule's ``pyproject.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code_paths: tuple[str, ...] = DEFAULT_CODE_PATHS

    @field_validator("code_paths")
    @classmethod
    def _relative_folders(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        if not paths:
            raise ValueError("list at least one folder (the default is code, environment)")
        normal = []
        for path in paths:
            pure = PurePosixPath(path)
            if pure.is_absolute() or ".." in pure.parts or str(pure) in ("", "."):
                raise ValueError(f"{path!r} must be a folder inside the capsule, like 'code'")
            normal.append(str(pure))
        return tuple(sorted(set(normal)))


def project_settings(capsule_root: Path) -> ProjectSettings:
    """The settings of the capsule at ``capsule_root`` (the defaults without a table).

    Raises
    ------
    UsageError
        If ``pyproject.toml`` cannot be read or its table is not valid; the message
        names the file, the field and the remedy.
    """
    path = capsule_root / PYPROJECT
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ProjectSettings()
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        table = tomllib.loads(text).get("tool", {}).get(TABLE, {})
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    try:
        return ProjectSettings.model_validate(table)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "table"
        raise UsageError(
            f"{path}: [tool.{TABLE}] {field}: {first['msg']} "
            f"(fields: {', '.join(ProjectSettings.model_fields)})"
        ) from None
