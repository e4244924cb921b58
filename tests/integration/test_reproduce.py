"""`results reproduce KEY`: a record's job run again at its commit, files compared.

Each test posts one job of the test capsule (a real git repository) to real stores,
the embedded ones or an S3 server with SecantusDB (MongoDB) or the AIND DocDB REST
stand-in, then runs `analysis-wrapper results reproduce` as a user would, in a process
of its own. S3 runs read their input from S3 too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest

import analysis_wrapper
from analysis_wrapper.config.settings import Capsule, StoreSettings
from analysis_wrapper.stores.base import RecordQuery
from analysis_wrapper.stores.factory import open_record_store, open_result_store
from conftest import CapsuleCopy, git, make_capsule_copy
from standins.docdb_fixtures import REGION, production_stores_env

EXAMPLE_FILES = {"key.json", "metadata.nd.json", "ro-crate-metadata.json", "units.csv", "units.png"}
ANALYSIS_LINE = '    write_csv(rows, results_dir / "units.csv")\n'


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def one_job(capsule: CapsuleCopy) -> Path:
    """Keep the first job file alone, committed; return it."""
    first, *others = sorted(capsule.job_dir.glob("*.json"))
    for job_file in others:
        job_file.unlink()
    capsule.commit("one job")
    return first


def inputs_on_s3(capsule: CapsuleCopy, job_file: Path, bucket: str) -> None:
    """Upload the job's session to S3 and point the job at it (committed)."""
    job = json.loads(job_file.read_text())
    session = job["s3_location"][0]
    s3 = boto3.client("s3")
    for path in sorted((capsule.data / session).rglob("*")):
        relative = path.relative_to(capsule.data).as_posix()
        s3.put_object(Bucket=bucket, Key=f"inputs/{relative}", Body=path.read_bytes())
    job["s3_location"] = [f"s3://{bucket}/inputs/{session}"]
    job_file.write_text(json.dumps(job, indent=2))
    capsule.commit("the input on S3")


def change_analysis(capsule: CapsuleCopy, extra: str, message: str) -> None:
    """Add lines after the analysis writes units.csv, and commit."""
    script = capsule.code / "run_capsule.py"
    source = script.read_text()
    assert ANALYSIS_LINE in source
    script.write_text(source.replace(ANALYSIS_LINE, ANALYSIS_LINE + extra, 1))
    capsule.commit(message)


def post(capsule: CapsuleCopy, *args: str) -> str:
    """Post the capsule's one job; return its key."""
    ok(capsule.run("--dry_run", "0", *args))
    summary = json.loads((capsule.results / "run_summary.json").read_text())
    assert summary["ran"] == 1, summary
    key: str = summary["jobs"][0]["key"]
    return key


def reproduce(capsule: CapsuleCopy, key: str, *args: str, **kwargs: Any) -> Any:
    """Run `analysis-wrapper results reproduce KEY ...` in the capsule."""
    return capsule.cli("results", "reproduce", key, *args, **kwargs)


def verdicts(stdout: str) -> dict[str, str]:
    """The table's verdict for each file."""
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("file "))
    rows = [
        line.split() for line in lines[header + 1 :] if not line.startswith(("reproduced", "not "))
    ]
    return {row[0]: row[1] for row in rows}


def worktrees(repository: Path) -> list[str]:
    """The work trees git knows of in ``repository``."""
    listed = git(repository, "worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in listed.splitlines() if line.startswith("worktree ")]


def stored(capsule: CapsuleCopy) -> tuple[list[dict[str, Any]], list[str]]:
    """The records, and the locations of every published folder, in the configured stores."""
    settings = StoreSettings()
    records = open_record_store(settings, Capsule(capsule.root), read_only=True)
    try:
        found = records.find(RecordQuery())
    finally:
        records.close()
    results = open_result_store(settings, Capsule(capsule.root))
    return found, sorted(folder.location for folder in results.list_published())


def manifest_of(capsule: CapsuleCopy, key: str) -> tuple[str, dict[str, Any]]:
    """The record's location and its manifest."""
    records, _ = stored(capsule)
    location = next(str(r["location"]) for r in records if r["_id"] == key)
    manifest = open_result_store(StoreSettings(), Capsule(capsule.root)).read_manifest(location)
    assert manifest is not None
    return location, manifest


def overwrite(location: str, name: str, data: bytes) -> None:
    """Replace one stored file of a result folder, local or on S3."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        (Path(unquote(parts.path)) / name).write_bytes(data)
    else:
        boto3.client("s3").put_object(
            Bucket=parts.netloc, Key=f"{parts.path.strip('/')}/{name}", Body=data
        )


@pytest.fixture
def store_env(
    request: pytest.FixtureRequest,
    capsule: CapsuleCopy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The store combination ``request.param`` names, set in the environment.

    The capsule then holds one job, committed; on S3 its input is on S3 too.
    """
    kind = request.param
    job_file = one_job(capsule)
    if kind == "embedded":
        yield kind
        return
    bucket = f"reproduce-{uuid.uuid4().hex[:12]}"
    database = f"reproduce_{uuid.uuid4().hex[:8]}"
    env = production_stores_env(kind, request, tmp_path, bucket, database)
    env["INPUT_CACHE_DIR"] = str(tmp_path / "input-cache")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    inputs_on_s3(capsule, job_file, bucket)
    yield kind


@pytest.mark.parametrize("store_env", ["embedded", "mongo+s3", "rest+s3"], indirect=True)
def test_a_fresh_record_reproduces_identically(
    store_env: str, capsule: CapsuleCopy, tmp_path: Path
) -> None:
    """Every file identical (exit 0), kept in --dir; nothing posted; the worktree gone."""
    key = post(capsule)
    records_before, folders_before = stored(capsule)
    keep = tmp_path / "again"

    done = ok(reproduce(capsule, key[:10], "--dir", str(keep)))

    assert verdicts(done.stdout) == dict.fromkeys(sorted(EXAMPLE_FILES), "identical")
    assert done.stdout.splitlines()[-1] == f"reproduced: all {len(EXAMPLE_FILES)} file(s) identical"
    assert f"rerun   key {key[:12]} (the record's)" in done.stdout
    assert f"files   {keep / key}" in done.stdout
    _, manifest = manifest_of(capsule, key)
    digests = {entry["path"]: entry["sha256"] for entry in manifest["files"]}
    units = (keep / key / "units.csv").read_bytes()
    assert hashlib.sha256(units).hexdigest() == digests["units.csv"]
    if store_env != "embedded":
        assert (
            "s3://"
            in json.loads((keep / key / "metadata.nd.json").read_text())["processing"][
                "data_processes"
            ][0]["code"]["input_data"][0]["url"]
        )
    assert stored(capsule) == (records_before, folders_before), "reproduce posted something"
    assert worktrees(capsule.root) == [str(capsule.root)]


@pytest.mark.parametrize("store_env", ["embedded", "mongo+s3"], indirect=True)
def test_an_old_record_reproduces_with_its_own_commit(store_env: str, capsule: CapsuleCopy) -> None:
    """After a commit that changes units.csv, the old record still reproduces: its code ran.

    The user's work tree, with an uncommitted change, is left as it was.
    """
    old_key = post(capsule)
    change_analysis(
        capsule,
        '    with open(results_dir / "units.csv", "a") as out:\n        out.write("# v2\\n")\n',
        "units.csv says v2",
    )
    new_key = post(capsule)
    assert new_key != old_key
    old_digests = {f["path"]: f["sha256"] for f in manifest_of(capsule, old_key)[1]["files"]}
    new_digests = {f["path"]: f["sha256"] for f in manifest_of(capsule, new_key)[1]["files"]}
    assert old_digests["units.csv"] != new_digests["units.csv"]
    notes = capsule.code / "notes.py"
    notes.write_text("# not committed\n")
    status = git(capsule.root, "status", "--porcelain")

    for key in (old_key, new_key):
        done = ok(reproduce(capsule, key))
        assert set(verdicts(done.stdout).values()) == {"identical"}, done.stdout
        assert f"rerun   key {key[:12]} (the record's)" in done.stdout

    assert git(capsule.root, "status", "--porcelain") == status
    assert notes.read_text() == "# not committed\n"
    assert worktrees(capsule.root) == [str(capsule.root)]


@pytest.mark.parametrize("store_env", ["embedded", "mongo+s3"], indirect=True)
def test_changed_stored_files_and_a_nondeterministic_analysis_are_named(
    store_env: str, capsule: CapsuleCopy
) -> None:
    """Differing (both sizes), missing and new files are named, and the exit is 1."""
    change_analysis(
        capsule,
        '    (results_dir / "nonce.txt").write_text(__import__("uuid").uuid4().hex)\n',
        "a file that differs in every run",
    )
    key = post(capsule)
    location, manifest = manifest_of(capsule, key)
    # The stored result is changed: units.csv (file and manifest), units.png no longer
    # listed, and a file listed that no run writes.
    changed = b"unit_id,passes\nunit_00,True\n"
    files = {entry["path"]: entry for entry in manifest["files"]}
    stored_units = files["units.csv"]
    files["units.csv"] = {
        "path": "units.csv",
        "size": len(changed),
        "sha256": hashlib.sha256(changed).hexdigest(),
    }
    del files["units.png"]
    files["summary.txt"] = {"path": "summary.txt", "size": 3, "sha256": "0" * 64}
    manifest["files"] = sorted(files.values(), key=lambda entry: entry["path"])
    overwrite(location, "units.csv", changed)
    overwrite(location, "manifest.json", json.dumps(manifest).encode())

    done = reproduce(capsule, key)

    assert done.returncode == 1, done.stdout + done.stderr
    assert verdicts(done.stdout) == {
        "key.json": "identical",
        "metadata.nd.json": "identical",
        "nonce.txt": "differs",
        # The crate still says what the run did (the same files; their digests are
        # compared one by one): only the manifest was edited.
        "ro-crate-metadata.json": "identical",
        "summary.txt": "missing",
        "units.csv": "differs",
        "units.png": "new",
    }
    units_row = next(line for line in done.stdout.splitlines() if line.startswith("units.csv"))
    assert units_row.split()[2:] == [
        str(len(changed)),
        hashlib.sha256(changed).hexdigest()[:12],
        str(stored_units["size"]),
        stored_units["sha256"][:12],
    ]
    assert done.stdout.splitlines()[-1] == (
        "not reproduced: 3 identical, 2 differs, 1 missing, 1 new (of 7 file(s))"
    )
    assert worktrees(capsule.root) == [str(capsule.root)]


def test_a_record_from_a_dirty_tree_is_refused(capsule: CapsuleCopy) -> None:
    """A record posted with --allow_dirty 1 names no commit of its code: exit 2, the remedy."""
    one_job(capsule)
    script = capsule.code / "run_capsule.py"
    script.write_text(script.read_text() + "\n# not committed\n")
    key = post(capsule, "--allow_dirty", "1")

    done = reproduce(capsule, key)

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert f"record {key[:12]} was made from uncommitted changes" in done.stderr
    assert "commit the code and post without --allow_dirty" in done.stderr
    assert worktrees(capsule.root) == [str(capsule.root)]


def test_an_unknown_key_or_input_folder_is_a_usage_error(
    capsule: CapsuleCopy, tmp_path: Path
) -> None:
    """A key no record has, or no such input folder: exit 2, one line with the remedy."""
    done = reproduce(capsule, "abcdef12")
    assert done.returncode == 2
    assert "no record with key abcdef12 in sqlite:///" in done.stderr
    assert "analysis-wrapper results find" in done.stderr
    missing = tmp_path / "no-data"
    done = reproduce(capsule, "abcdef12", "--input_directory", str(missing))
    assert done.returncode == 2
    assert done.stderr.strip().endswith(f"--input_directory {missing}: no such folder")


def test_an_unreachable_commit_is_refused_then_fetched(tmp_path: Path) -> None:
    """A clone without the record's commit fetches it from its remote, or is refused.

    The capsule posts from a commit it has not pushed; a second clone of the same
    remote is refused (exit 2, the remedy) until the commit is pushed, then fetches it
    and reproduces the record.
    """
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    first = make_capsule_copy(tmp_path / "first")
    git(first.root, "remote", "set-url", "origin", str(remote))
    git(first.root, "push", "-q", "origin", "main")
    second = tmp_path / "second"
    git(tmp_path, "clone", "-q", "-b", "main", str(remote), str(second))
    one_job(first)
    key = post(first)
    env = {
        "DOCDB_HOST": "sqlite://" + (first.store / "records.sqlite").as_posix(),
        "ANALYSIS_BUCKET": (first.store / "results").as_uri(),
    }
    commit = git(first.root, "rev-parse", "HEAD").strip()

    refused = first.cli("results", "reproduce", key, env=env, cwd=second)

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"commit {commit[:12]} of record {key[:12]} is not in the repository" in refused.stderr
    assert "not our ref" in refused.stderr  # git's own reason
    assert "git push" in refused.stderr and "git fetch <remote>" in refused.stderr
    assert worktrees(second) == [str(second)]

    git(first.root, "push", "-q", "origin", "main")
    done = ok(first.cli("results", "reproduce", key, env=env, cwd=second))

    assert set(verdicts(done.stdout).values()) == {"identical"}, done.stdout
    assert git(second, "cat-file", "-t", commit).strip() == "commit"
    assert worktrees(second) == [str(second)]


BLOCKING_ANALYSIS = """\
    if os.environ.get("REPRODUCE_STARTED"):
        Path(os.environ["REPRODUCE_STARTED"]).touch()
        for _ in range(600):  # until SIGINT; a minute at most, so a broken test ends
            time.sleep(0.1)
"""


def test_ctrl_c_removes_the_worktree(capsule: CapsuleCopy, tmp_path: Path) -> None:
    """SIGINT to the command's process group mid-run: exit 130, no worktree, no files left."""
    one_job(capsule)
    script = capsule.code / "run_capsule.py"
    script.write_text("import os\nimport time\n" + script.read_text())
    change_analysis(capsule, BLOCKING_ANALYSIS, "an analysis that can be made to wait")
    key = post(capsule)
    started = tmp_path / "started"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "analysis_wrapper", "results", "reproduce", key],
        cwd=capsule.root,
        env={**os.environ, "REPRODUCE_STARTED": str(started), "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the rerun's analysis never started"
            time.sleep(0.1)
        assert len(worktrees(capsule.root)) == 2  # the checkout, while the analysis runs
        os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    assert process.returncode == 130, stderr
    assert "interrupted: nothing was posted, and no worktree is left behind" in stderr
    assert worktrees(capsule.root) == [str(capsule.root)]
    assert [p for p in scratch.iterdir() if p.name.startswith("analysis-wrapper-reproduce")] == []


def test_the_commits_own_framework_runs_when_its_code_holds_one(
    capsule: CapsuleCopy, tmp_path: Path
) -> None:
    """A capsule whose code/ holds the framework (as the template's does) reruns with it."""
    one_job(capsule)
    framework = Path(analysis_wrapper.__file__).parent
    copy = capsule.code / "analysis_wrapper"
    shutil.copytree(framework, copy, ignore=shutil.ignore_patterns("__pycache__"))
    init = copy / "__init__.py"
    init.write_text(
        init.read_text()
        + '\nif __import__("os").environ.get("FRAMEWORK_USED"):\n'
        + '    with open(__import__("os").environ["FRAMEWORK_USED"], "a") as _out:\n'
        + '        _out.write(__file__ + "\\n")\n'
    )
    capsule.commit("the framework in code/")
    key = post(capsule)
    used = tmp_path / "used.txt"

    done = ok(reproduce(capsule, key, env={"FRAMEWORK_USED": str(used)}))

    assert set(verdicts(done.stdout).values()) == {"identical"}, done.stdout
    # Imported once by the rerun, from the checkout's code/ (never by the command itself,
    # which runs from this test's framework).
    [path] = used.read_text().splitlines()
    assert path.endswith("/checkout/code/analysis_wrapper/__init__.py"), path
    assert not Path(path).exists(), "the checkout is removed"
