"""Results in a local folder: ``<root>/<key>/`` with ``manifest.json`` written last.

A result is assembled in a hidden staging folder beside its final place and renamed
into place in one step, so a reader never sees half a result under ``<key>/``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import StoreError
from ..manifest import MANIFEST_NAME


class LocalResultStore:
    """A results store in a local folder.

    Parameters
    ----------
    root : Path
        The folder; created on the first publish.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def url(self) -> str:
        """The folder as a ``file://`` URL."""
        return self.root.resolve().as_uri()

    def location(self, key: str) -> str:
        """Return ``<url>/<key>``."""
        return f"{self.url}/{key}"

    def publish(self, key: str, folder: Path, manifest: Mapping[str, Any]) -> str:
        """Copy ``folder`` to ``<root>/<key>/``, manifest last, replacing what was there."""
        token = uuid.uuid4().hex[:12]
        staging = self.root / f".staging-{key}-{token}"
        final = self.root / key
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.copytree(folder, staging)
            (staging / MANIFEST_NAME).unlink(missing_ok=True)  # a stale one; ours comes last
            partial = staging / f".{MANIFEST_NAME}.partial"
            partial.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            os.replace(partial, staging / MANIFEST_NAME)
            if final.exists():
                # A folder no record points to (a crashed run) or one being forced
                # over: move it aside in one step, then delete it.
                retired = self.root / f".retired-{key}-{token}"
                os.replace(final, retired)
                shutil.rmtree(retired, ignore_errors=True)
            os.replace(staging, final)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise StoreError(
                f"cannot publish to results folder {self.root}: {exc.strerror or exc}; "
                "check that it exists and is writable, or set ANALYSIS_BUCKET"
            ) from exc
        return self.location(key)

    def has_manifest(self, location: str) -> bool | None:
        """Check ``<location>/manifest.json`` for a ``file://`` location."""
        if not location.startswith("file://"):
            return None
        path = Path(unquote(urlsplit(location).path)) / MANIFEST_NAME
        return path.is_file()

    def read_manifest(self, key: str) -> dict[str, Any] | None:
        """Return ``<root>/<key>/manifest.json``, or ``None`` if absent."""
        path = self.root / key / MANIFEST_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        return data if isinstance(data, dict) else None

    def download(self, location: str, relative_path: str, target: Path) -> bool:
        """Copy ``<location>/<relative_path>`` to ``target`` for a ``file://`` location.

        Raises
        ------
        StoreError
            If the file is missing or unreadable, or ``relative_path`` leaves the folder.
        """
        if not location.startswith("file://"):
            return False
        folder = Path(unquote(urlsplit(location).path))
        source = folder / relative_path
        if ".." in Path(relative_path).parts or Path(relative_path).is_absolute():
            raise StoreError(f"{location}: file {relative_path!r} is outside the result folder")
        try:
            shutil.copyfile(source, target)
        except OSError as exc:
            raise StoreError(f"cannot read {source}: {exc.strerror or exc}") from exc
        return True
