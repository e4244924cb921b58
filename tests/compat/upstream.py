"""Running upstream's own code: analysis-pipeline-utils 0.2.8 and result-access, from PyPI.

``make test`` installs both into ``.ci/.venv-upstream`` (``ANALYSIS_WRAPPER_UPSTREAM_BIN``
names its ``bin``). Upstream's code runs there, unpatched, in a process of its own,
configured by the environment variables a capsule of theirs reads.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from standins.docdb_api import DocDbApiStandIn
from standins.docdb_fixtures import docdb_client_env

UPSTREAM_BIN = Path(
    os.environ.get(
        "ANALYSIS_WRAPPER_UPSTREAM_BIN",
        Path(__file__).resolve().parents[2] / ".ci" / ".venv-upstream" / "bin",
    )
)


def run_upstream(
    script: str,
    *args: str,
    standin: DocDbApiStandIn,
    scratch: Path,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with upstream's interpreter, as a client of the DocDB stand-in."""
    python = UPSTREAM_BIN / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: run the tests with `make test`, which installs it")
    return subprocess.run(
        [str(python), "-c", script, *args],
        cwd=scratch,
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(scratch),
            "DOCDB_HOST": standin.host,
            **docdb_client_env(standin, scratch),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
