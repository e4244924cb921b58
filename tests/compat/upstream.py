"""Running upstream's own code: analysis-pipeline-utils 0.2.8 and result-access, from PyPI.

``make test`` installs both into ``.ci/.venv-upstream`` (``ANALYSIS_WRAPPER_UPSTREAM_BIN``
names its ``bin``). Upstream's code runs there, unpatched, in a process of its own,
configured by the environment variables a capsule of theirs reads.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import CapsuleCopy
from standins.docdb_api import DocDbApiStandIn
from standins.docdb_fixtures import DATABASE, docdb_client_env, fresh_collection

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


def docdb_env(standin: DocDbApiStandIn) -> dict[str, str]:
    """A capsule's record store settings for a fresh collection of the stand-in."""
    return {
        "DOCDB_HOST": standin.host,
        "DOCDB_DATABASE": DATABASE,
        "DOCDB_COLLECTION": fresh_collection(),
    }


def code_of(record: dict[str, Any]) -> dict[str, Any]:
    """A record's ``processing.data_processes[0].code``."""
    code: dict[str, Any] = record["processing"]["data_processes"][0]["code"]
    return code


def post_example(
    capsule: CapsuleCopy, standin: DocDbApiStandIn, env: dict[str, str]
) -> list[dict[str, Any]]:
    """Post the example's jobs to ``env``'s collection; return the records stored there."""
    done = capsule.run("--dry_run", "0", env=env)
    assert done.returncode == 0, done.stderr
    return list(standin.mongo[DATABASE][env["DOCDB_COLLECTION"]].find({}))
