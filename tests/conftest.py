"""Shared fixtures: a private copy of the test capsule in a real git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

# The RO-Crate validator's HTTP cache, holding the RO-Crate 1.1 context (offline).
from ro_crates import validator_cache  # noqa: F401

# Session fixtures that start real servers (moto and SeaweedFS S3, SecantusDB) on demand.
from servers import (  # noqa: F401
    aws_test_env,
    dask_cluster,
    dask_worker_env,
    mongo_server,
    mongo_uri,
    moto_s3_server,
    s3_endpoint,
    s3_server,
    seaweedfs_server,
)
from standins.docdb_fixtures import (  # noqa: F401
    docdb_api_certificate_fixture,
    docdb_api_env_fixture,
    docdb_api_fixture,
    docdb_api_server_fixture,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEST_CAPSULE = Path(__file__).resolve().parent / "capsule"
"""The framework's test capsule: a frozen copy of the example, so code/ is the user's."""

# Variables that choose stores or identities; each test starts without them.
_ISOLATED_ENV = (
    "DOCDB_HOST",
    "DOCDB_DATABASE",
    "DOCDB_COLLECTION",
    "DOCDB_VERSION",
    "ANALYSIS_BUCKET",
    "CODEOCEAN_EMAIL",
    "CODEOCEAN_API_TOKEN",
    "CO_COMPUTATION_ID",
    "CO_CAPSULE_ID",
    "CO_PIPELINE_ID",
)


def without_retry_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the runner's tries of a step wait 0 s between them; each try is still real.

    Not by patching ``time.sleep``: that is the one ``time`` module of the process, and
    every thread that waits with it (pymongo's monitors, a claim's heartbeat) would spin.
    """
    from analysis_wrapper.common.retry import RetryPolicy

    no_wait = RetryPolicy(attempts=1, base_delay_s=0.0, max_delay_s=0.0)
    monkeypatch.setattr("analysis_wrapper.run.tries.TRANSIENT_RETRY_POLICY", no_wait)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test with no store or Code Ocean variables set."""
    for name in _ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _fresh_boto3_default_session() -> Iterator[None]:
    """Give every test a boto3 default session made from its own environment.

    ``boto3.client(...)`` goes through one module-wide session that keeps the
    credentials it first found: a test that ran with the DocDB stand-in's keys in its
    environment would otherwise sign every later test's requests with them (moto takes
    any key; SeaweedFS answers ``InvalidAccessKeyId``).
    """
    import boto3

    boto3.DEFAULT_SESSION = None
    yield
    boto3.DEFAULT_SESSION = None


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with a fixed identity; return stdout."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.org",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.org",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


@dataclass
class CapsuleCopy:
    """A copy of the test capsule, committed in its own git repository."""

    root: Path

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def job_dir(self) -> Path:
        return self.data / "job_dict"

    @property
    def store(self) -> Path:
        return self.root / ".analysis_store"

    def run(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``code/run_capsule.py`` with this interpreter; never raises on failure."""
        return subprocess.run(
            [sys.executable, "-u", str(self.code / "run_capsule.py"), *args],
            cwd=cwd or self.code,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def cli(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``analysis-wrapper`` console command; never raises on failure."""
        return subprocess.run(
            [sys.executable, "-m", "analysis_wrapper", *args],
            cwd=cwd or self.root,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def commit(self, message: str = "change") -> None:
        """Commit everything in the copy."""
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", message)


CAPSULE_REMOTE = "https://github.com/example-lab/example-capsule.git"
"""The ``origin`` of every capsule copy (never fetched: it only names the code)."""


def make_capsule_copy(root: Path) -> CapsuleCopy:
    """Copy the test capsule (code/, data/, results/) to ``root`` and commit it.

    The framework comes from the test run's own import path, not from the copy.
    """
    root.mkdir(parents=True)
    shutil.copytree(
        TEST_CAPSULE / "code", root / "code", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(TEST_CAPSULE / "data", root / "data")
    (root / "results").mkdir()
    (root / "results" / ".gitkeep").touch()
    shutil.copy(REPO_ROOT / ".gitignore", root / ".gitignore")
    git(root, "init", "-q", "-b", "main")
    # A capsule is posted from a repository with a remote: a bare path never names code.
    git(root, "remote", "add", "origin", CAPSULE_REMOTE)
    copy = CapsuleCopy(root)
    copy.commit("test capsule")
    return copy


@contextmanager
def isolated_environment() -> Iterator[None]:
    """Unset the store and Code Ocean variables (for module-scoped fixtures)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in _ISOLATED_ENV:
            patch.delenv(name, raising=False)
        yield


@pytest.fixture
def capsule(tmp_path: Path) -> CapsuleCopy:
    """A fresh, committed copy of the test capsule (code/, data/, results/)."""
    return make_capsule_copy(tmp_path / "capsule")
