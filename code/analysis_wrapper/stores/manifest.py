"""The manifest: the list of a result's files with their sizes and sha256 digests.

``manifest.json`` is published after every other file of a result, so its presence
says the upload finished; its digests let a reader check what it downloads.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """Return the sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(key: str, folder: Path) -> dict[str, Any]:
    """List every file under ``folder`` (but a manifest) with size and sha256.

    Paths are POSIX, relative to ``folder``, sorted.
    """
    found = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    found.pop(MANIFEST_NAME, None)
    files = [
        {"path": relative, "size": path.stat().st_size, "sha256": file_sha256(path)}
        for relative, path in sorted(found.items())  # by POSIX string, as S3 lists keys
    ]
    return {"key": key, "created": datetime.now(timezone.utc).isoformat(), "files": files}
