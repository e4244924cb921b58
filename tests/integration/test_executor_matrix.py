"""Every executor with every store, on workers that import nothing of this repository.

Executors: serial, a process pool, a Dask LocalCluster, and an external Dask cluster
whose scheduler and workers run from a folder and an environment that cannot import
this repository's ``code/`` or the framework (``servers.dask_cluster``). Stores: the
embedded ones, SecantusDB + moto S3, and the AIND DocDB REST stand-in + moto S3.

The capsule is the example plus a helper module that exists only in the capsule's own
copy: a worker can run its analysis only if the wrapper shipped the capsule's code.
Each analysis leaves a call file, so "ran once" is counted, not assumed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from analysis_wrapper.config.settings import Capsule, StoreSettings
from analysis_wrapper.stores.base import RecordQuery
from analysis_wrapper.stores.factory import open_record_store, open_result_store
from conftest import CapsuleCopy
from servers import DaskCluster
from standins.docdb_fixtures import REGION, production_stores_env

JOB_COUNT = 6
EXECUTORS = ["serial", "process", "dask-local", "dask-external"]
STORES = ["embedded", "mongo+s3", "rest+s3"]
EXAMPLE_FILES = {"units.csv", "units.png", "metadata.nd.json", "key.json", "ro-crate-metadata.json"}


def add_helper_module(capsule: CapsuleCopy, calls: Path) -> str:
    """Give the capsule a helper module found nowhere else; return its token.

    The analysis calls it once per job: it leaves a file in ``calls`` and returns a
    line the analysis writes to ``helper.txt``.
    """
    token = uuid.uuid4().hex[:12]
    module = f"lab_helper_{token}"
    (capsule.code / f"{module}.py").write_text(
        "from pathlib import Path\n"
        "import uuid\n\n"
        f"CALLS = Path({str(calls)!r})\n\n\n"
        "def note_call(name: str) -> str:\n"
        '    (CALLS / f"{name}.{uuid.uuid4().hex}").touch()\n'
        f'    return "made by {module}"\n'
    )
    script = capsule.code / "run_capsule.py"
    source = script.read_text()
    source = source.replace(
        "from analysis_wrapper import", f"import {module}\nfrom analysis_wrapper import", 1
    )
    marker = '    write_csv(rows, results_dir / "units.csv")\n'
    assert marker in source
    source = source.replace(
        marker,
        marker + f"    name = f\"{{session['session_id']}}-{{parameters.isi_violations_cutoff}}\"\n"
        f'    (results_dir / "helper.txt").write_text({module}.note_call(name))\n',
    )
    script.write_text(source)
    capsule.commit("a helper module of the lab's own")
    return f"made by {module}"


@pytest.fixture
def store_env(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    """The environment that selects the store combination in ``request.param``."""
    kind = request.param
    if kind == "embedded":
        yield {}
        return
    s3_endpoint: str = request.getfixturevalue("s3_endpoint")
    bucket = f"matrix-{uuid.uuid4().hex[:12]}"
    database = f"matrix_{uuid.uuid4().hex[:8]}"
    env = production_stores_env(kind, request, tmp_path, bucket, database)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    yield env


def executor_arguments(executor: str, request: pytest.FixtureRequest) -> list[str]:
    if executor == "serial":
        return []
    if executor == "process":
        return ["--executor", "process", "--workers", "2"]
    if executor == "dask-local":
        return ["--executor", "dask", "--workers", "2"]
    cluster: DaskCluster = request.getfixturevalue("dask_cluster")
    return ["--executor", "dask", "--scheduler_address", cluster.address]


def posted(capsule: CapsuleCopy, env: dict[str, str]) -> dict[str, dict[str, object]]:
    """The run's records, read through the stores the environment selects."""
    settings = StoreSettings()
    assert (settings.docdb_host or "") == env.get("DOCDB_HOST", "")
    records = open_record_store(settings, Capsule(capsule.root), read_only=True)
    try:
        return {str(record["_id"]): record for record in records.find(RecordQuery())}
    finally:
        records.close()


@pytest.mark.parametrize("store_env", STORES, indirect=True)
@pytest.mark.parametrize("executor", EXECUTORS)
def test_every_job_posted_once_then_skipped(
    executor: str,
    store_env: dict[str, str],
    capsule: CapsuleCopy,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Six jobs posted once each, with the capsule's own helper module; a second run skips all."""
    calls = tmp_path / "calls"
    calls.mkdir()
    helper_line = add_helper_module(capsule, calls)
    arguments = ["--dry_run", "0", *executor_arguments(executor, request)]

    done = capsule.run(*arguments, env=store_env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads((capsule.results / "run_summary.json").read_text())
    assert (summary["ran"], summary["skipped"], summary["failed"]) == (JOB_COUNT, 0, 0)
    keys = {job["key"] for job in summary["jobs"]}
    called = sorted(path.name.rsplit(".", 1)[0] for path in calls.iterdir())
    assert len(called) == JOB_COUNT and len(set(called)) == JOB_COUNT, called

    records = posted(capsule, store_env)
    assert set(records) == keys
    results = open_result_store(StoreSettings(), Capsule(capsule.root))
    for key, record in records.items():
        location = str(record["location"])
        assert location.startswith(f"{results.url}/{key}/")
        manifest = results.read_manifest(location)
        assert manifest is not None, location
        assert {entry["path"] for entry in manifest["files"]} == EXAMPLE_FILES | {"helper.txt"}
        copy = tmp_path / f"helper-{key[:12]}.txt"
        assert results.download(location, "helper.txt", copy)
        assert copy.read_text() == helper_line

    again = capsule.run(*arguments, env=store_env)
    assert again.returncode == 0, again.stderr
    summary = json.loads((capsule.results / "run_summary.json").read_text())
    assert (summary["ran"], summary["skipped"], summary["failed"]) == (0, JOB_COUNT, 0)
    assert len(list(calls.iterdir())) == JOB_COUNT, "the second run ran nothing"
    assert set(posted(capsule, store_env)) == keys
