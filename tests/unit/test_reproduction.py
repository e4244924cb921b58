"""The parts of `results reproduce`: the job rebuilt from a record, refusals, the comparison.

Records are built by the framework's own record builder (aind-data-schema validated);
folders, manifests and the rerun's process are real files and a real process.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from analysis_wrapper.errors import ProvenanceError
from analysis_wrapper.identity.key import CodeIdentity
from analysis_wrapper.job.job_file import Job
from analysis_wrapper.record.crate import CRATE_NAME
from analysis_wrapper.record.metadata import RecordInputs, build_record
from analysis_wrapper.reproduction.checkout import fetch_sources
from analysis_wrapper.reproduction.comparison import (
    Verdict,
    add_rerun_crate,
    compare_with_manifest,
    differing_paths,
    without_run_fields,
)
from analysis_wrapper.reproduction.job_rebuild import rebuild_job
from analysis_wrapper.reproduction.rerun import (
    prepare_input_directory,
    rerun_environment,
    run_commit_capsule,
)
from analysis_wrapper.run.outputs import add_crate
from analysis_wrapper.stores.manifest import build_manifest
from conftest import git

KEY = "ab" * 32
COMMIT = "c0ffee" + "0" * 34
START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
PARAMETERS = {"analysis_name": "Unit Filtering", "analysis_tag": None, "cutoff": 0.5}


def record(code: CodeIdentity | None = None, **changes: Any) -> dict[str, Any]:
    """A record as a run builds it; ``changes`` replace fields of its inputs."""
    inputs: dict[str, Any] = {
        "key": KEY,
        "location": f"s3://bucket/results/{KEY}/20260102T030405Z-abcdef",
        "code": code
        or CodeIdentity(
            url="https://github.com/lab/capsule",
            version=COMMIT,
            commit=COMMIT,
            name="capsule",
            tree="7" * 64,
            paths=("code", "environment"),
            pushed=True,
        ),
        "input_data": ["s3://bucket/a/session_1", "s3://bucket/b/session_2"],
        "asset_names": {"s3://bucket/a/session_1": "session_1", "s3://bucket/b/session_2": "two"},
        "file_location": ["s3://bucket/a/session_1/spikes.json"],
        "parameters": PARAMETERS,
        "outputs": {"units": 3},
        "experimenters": ["scientist@example.org"],
        "start": START,
        "end": START + timedelta(seconds=2),
        "query": None,
        **changes,
    }
    return build_record(RecordInputs(**inputs))


def test_the_job_is_rebuilt_from_the_record() -> None:
    """Inputs, asset names, file locations, every parameter and the query; the code."""
    # A dispatcher's query object is kept as JSON text in the notes, as a run writes it.
    rebuilt = rebuild_job(record(query=json.dumps({"subject_id": "612345"}, sort_keys=True)))

    assert rebuilt.key == KEY
    assert rebuilt.location.endswith("/20260102T030405Z-abcdef")
    assert (rebuilt.code.url, rebuilt.code.commit, rebuilt.code.tree) == (
        "https://github.com/lab/capsule",
        COMMIT,
        "7" * 64,
    )
    assert rebuilt.job == {
        "s3_location": ["s3://bucket/a/session_1", "s3://bucket/b/session_2"],
        "asset_name": ["session_1", "two"],
        "file_location": ["s3://bucket/a/session_1/spikes.json"],
        "distributed_parameters": PARAMETERS,
        "query": {"subject_id": "612345"},
    }
    job = Job.model_validate(rebuilt.job)  # a job file the framework takes
    assert job.distributed_parameters == PARAMETERS


def test_names_are_given_as_far_as_every_input_has_one() -> None:
    """Asset names are positional in a job: after a missing one, none can be placed."""
    rebuilt = rebuild_job(record(asset_names={"s3://bucket/b/session_2": "two"}, query="text"))
    assert rebuilt.job["asset_name"] == []
    assert rebuilt.job["query"] == "text"
    assert "file_location" in rebuilt.job and "asset_id" not in rebuilt.job
    no_files = rebuild_job(record(file_location=[]))
    assert no_files.job["file_location"] is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            CodeIdentity(
                url="https://github.com/lab/capsule",
                version=f"{COMMIT}+dirty.0123456789ab",
                commit=COMMIT,
                dirty=True,
                tree="7" * 64 + "+dirty.0123456789ab",
            ),
            f"record {KEY[:12]} was made from uncommitted changes (code version {COMMIT}+dirty.",
        ),
        (
            CodeIdentity(url="https://codeocean.example.org/capsule/123", version="2.1"),
            "names version 2.1 of https://codeocean.example.org/capsule/123 and no commit",
        ),
        (None, "code.commit_hash 'c0ffee0' is not a full git commit hash"),
    ],
    ids=["dirty", "release", "abbreviated-commit"],
)
def test_records_with_no_commit_to_check_out_are_refused(
    code: CodeIdentity | None, expected: str
) -> None:
    """A dirty-tree, release or malformed record: one line that says why and what to do."""
    stored = record(code)
    if code is None:  # a hand-made record: the schema takes 7 hex digits, git needs all
        stored["processing"]["data_processes"][0]["code"]["commit_hash"] = "c0ffee0"
    with pytest.raises(ProvenanceError) as refused:
        rebuild_job(stored)
    assert expected in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_tree_marked_dirty_is_refused_even_when_the_version_is_not() -> None:
    """The key's tree is what the record promises; its +dirty mark is enough to refuse."""
    stored = record()
    stored["code_identity"]["tree"] += "+dirty.0123456789ab"
    with pytest.raises(ProvenanceError, match="uncommitted changes"):
        rebuild_job(stored)


def result_folder(root: Path) -> Path:
    """A result folder as a run leaves it: files and metadata.nd.json."""
    folder = root / "result"
    (folder / "figures").mkdir(parents=True)
    (folder / "units.csv").write_text("unit,passes\nu0,True\n")
    (folder / "figures" / "a.png").write_bytes(b"\x89PNG fake")
    metadata = {k: v for k, v in record().items() if k != "_id"}
    (folder / "metadata.nd.json").write_text(json.dumps(metadata, indent=2))
    return folder


def test_identical_differing_missing_and_new_files(tmp_path: Path) -> None:
    """Each path compared by size and sha256 with the manifest."""
    stored = result_folder(tmp_path)
    manifest = build_manifest(KEY, stored)
    again = tmp_path / "again"
    shutil.copytree(stored, again)
    assert {c.verdict for c in compare_with_manifest(manifest, again)} == {Verdict.IDENTICAL}

    (again / "units.csv").write_text("unit,passes\nu0,False\n")
    (again / "figures" / "a.png").unlink()
    (again / "figures" / "b.png").write_bytes(b"new")
    compared = {c.path: c for c in compare_with_manifest(manifest, again)}

    assert {path: c.verdict for path, c in compared.items()} == {
        "figures/a.png": Verdict.MISSING,
        "figures/b.png": Verdict.NEW,
        "metadata.nd.json": Verdict.IDENTICAL,
        "units.csv": Verdict.DIFFERS,
    }
    units = compared["units.csv"]
    assert units.stored is not None and units.reproduced is not None
    assert units.stored.size == 20 and units.reproduced.size == 21
    assert units.stored.sha256 != units.reproduced.sha256
    assert compared["figures/a.png"].reproduced is None
    assert compared["figures/b.png"].stored is None


def test_metadata_is_compared_without_the_runs_own_fields(tmp_path: Path) -> None:
    """New times, location, experimenter and push state are the run's; outputs are the result's."""
    stored = result_folder(tmp_path)
    manifest = build_manifest(KEY, stored)
    stored_metadata = json.loads((stored / "metadata.nd.json").read_text())
    again = tmp_path / "again"
    shutil.copytree(stored, again)
    rerun_record = record(
        location=f"file:///tmp/{KEY}/20270101T000000Z-123456",
        experimenters=["someone.else@example.org"],
        start=START + timedelta(days=400),
        end=START + timedelta(days=400, seconds=9),
    )
    rerun_record["code_identity"]["pushed"] = None
    metadata = {k: v for k, v in rerun_record.items() if k != "_id"}
    (again / "metadata.nd.json").write_text(json.dumps(metadata, indent=2))
    stored_json = {"metadata.nd.json": stored_metadata}

    [same] = [c for c in compare_with_manifest(manifest, again, stored_json) if "meta" in c.path]
    assert same.verdict is Verdict.IDENTICAL
    assert same.stored != same.reproduced
    assert "run's own fields" in same.note
    # Without the stored JSON at hand, only the digests can be compared.
    [by_digest] = [c for c in compare_with_manifest(manifest, again) if "meta" in c.path]
    assert by_digest.verdict is Verdict.DIFFERS

    metadata["processing"]["data_processes"][0]["output_parameters"]["units"] = 4
    (again / "metadata.nd.json").write_text(json.dumps(metadata, indent=2))
    [changed] = [c for c in compare_with_manifest(manifest, again, stored_json) if "meta" in c.path]
    assert changed.verdict is Verdict.DIFFERS
    assert changed.note == "at processing.data_processes[0].output_parameters.units"


def test_the_reruns_crate_is_built_and_compared_without_the_runs_own_fields(
    tmp_path: Path,
) -> None:
    """The rerun's crate is built as a publish would, compared without the run's fields.

    A dry run writes none; times, experimenters and file digests are the run's (or
    compared file by file); a parameter it names differently is named.
    """
    stored = result_folder(tmp_path)
    stored_record = record()
    manifest = add_crate(build_manifest(KEY, stored), stored, stored_record)
    stored_crate = json.loads((stored / CRATE_NAME).read_text())
    again = tmp_path / "again"
    shutil.copytree(stored, again)
    (again / CRATE_NAME).unlink()
    rerun_record = record(
        experimenters=["someone.else@example.org"],
        start=START + timedelta(days=400),
        end=START + timedelta(days=400, seconds=9),
    )
    (again / "metadata.nd.json").write_text(
        json.dumps({k: v for k, v in rerun_record.items() if k != "_id"}, indent=2)
    )

    add_rerun_crate(manifest, again, KEY)
    assert (again / CRATE_NAME).is_file()
    [crate] = [
        c
        for c in compare_with_manifest(manifest, again, {CRATE_NAME: stored_crate})
        if c.path == CRATE_NAME
    ]
    assert crate.verdict is Verdict.IDENTICAL and crate.stored != crate.reproduced
    assert "run's own fields" in crate.note

    changed = json.loads((again / CRATE_NAME).read_text())
    for entity in changed["@graph"]:
        if entity.get("@type") == "PropertyValue" and entity.get("name") == "cutoff":
            entity["value"] = "0.75"
    (again / CRATE_NAME).write_text(json.dumps(changed))
    [crate] = [
        c
        for c in compare_with_manifest(manifest, again, {CRATE_NAME: stored_crate})
        if c.path == CRATE_NAME
    ]
    assert crate.verdict is Verdict.DIFFERS and crate.note.startswith("at @graph[")
    # A result from before crates has none to compare: none is made for the rerun.
    (again / CRATE_NAME).unlink()
    add_rerun_crate({"files": manifest["files"][:1]}, again, KEY)
    assert not (again / CRATE_NAME).exists()


def test_the_run_fields_are_all_that_is_dropped() -> None:
    """A record without its run fields keeps its code, inputs, parameters and outputs."""
    kept = without_run_fields(record())
    process = kept["processing"]["data_processes"][0]
    assert "location" not in kept and "start_date_time" not in process
    assert "experimenters" not in process and "pushed" not in kept["code_identity"]
    assert process["code"]["parameters"]["cutoff"] == 0.5
    assert process["output_parameters"] == {"units": 3}
    assert process["notes"] == f"Git commit hash: {COMMIT}"
    assert differing_paths({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}], "c": 1}) == ["a[1].b", "c"]
    assert differing_paths({"a": 1}, {"a": 1.0}) == ["a"]  # as stored, not as numbers


def test_the_rerun_cannot_post_and_reads_asset_records_where_the_job_did(tmp_path: Path) -> None:
    """Stores replaced by empty local ones; METADATA_HOST kept; not Code Ocean; the code URL."""
    environ = {
        "DOCDB_HOST": "mongodb://db.example.org:27017",
        "ANALYSIS_BUCKET": "s3://results/prefix",
        "CO_COMPUTATION_ID": "abc",
        "CODE_VERSION_POLICY": "release",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "core.pager",
        "GIT_CONFIG_VALUE_0": "cat",
        "AWS_PROFILE": "lab",
    }
    env = rerun_environment(environ, tmp_path, "https://github.com/lab/capsule", "content")

    assert env["DOCDB_HOST"] == f"sqlite://{tmp_path}/records.sqlite"
    assert env["ANALYSIS_BUCKET"] == f"{tmp_path}/results"
    assert env["METADATA_HOST"] == "mongodb://db.example.org:27017"
    assert "CO_COMPUTATION_ID" not in env and env["CODE_VERSION_POLICY"] == "commit"
    assert (env["GIT_CONFIG_COUNT"], env["GIT_CONFIG_KEY_1"], env["GIT_CONFIG_VALUE_1"]) == (
        "2",
        "remote.origin.url",
        "https://github.com/lab/capsule",
    )
    assert env["INPUT_IDENTITY"] == "content" and env["AWS_PROFILE"] == "lab"
    embedded = rerun_environment({"METADATA_HOST": ""}, tmp_path, "", None)
    assert embedded["METADATA_HOST"] == "none" and "INPUT_IDENTITY" not in embedded
    assert "GIT_CONFIG_COUNT" not in embedded
    chosen = rerun_environment({"METADATA_HOST": "api.example.org"}, tmp_path, "", None)
    assert chosen["METADATA_HOST"] == "api.example.org"


def test_the_input_directory_holds_the_job_and_links_to_the_data(tmp_path: Path) -> None:
    """The data folder's entries are linked; its own jobs and fixed parameters are not."""
    data = tmp_path / "data"
    (data / "sessions" / "s1").mkdir(parents=True)
    (data / "sessions" / "s1" / "spikes.json").write_text("[]")
    (data / "lookup.csv").write_text("a,b\n")
    (data / "job_dict").mkdir()
    (data / "job_dict" / "other.json").write_text("{}")
    (data / "analysis_parameters.json").write_text('{"fixed_parameters": {"cutoff": 9}}')
    rebuilt = rebuild_job(record())

    folder = prepare_input_directory(tmp_path / "input", data, rebuilt)

    assert sorted(p.name for p in folder.iterdir()) == ["job_dict", "lookup.csv", "sessions"]
    assert (folder / "sessions" / "s1" / "spikes.json").read_text() == "[]"
    [job_file] = (folder / "job_dict").iterdir()
    assert job_file.name == f"reproduce-{KEY[:12]}.json"
    assert json.loads(job_file.read_text()) == rebuilt.job


def test_a_failed_or_crashed_rerun_says_why(tmp_path: Path) -> None:
    """The run's summary names the job's error; a run that died before it, its last line."""
    script = tmp_path / "run_capsule.py"
    script.write_text(
        "import json, sys\n"
        "from pathlib import Path\n"
        "results = Path(sys.argv[sys.argv.index('--results_directory') + 1])\n"
        "print('working on it')\n"
        "if not sys.argv[-1].endswith('crash'):\n"
        "    job = {'key': 'k' * 64, 'action': 'run', 'status': 'failed',\n"
        "           'error': 'job.json: run_analysis raised ValueError: bad\\n  input'}\n"
        "    (results / 'run_summary.json').write_text(json.dumps({'jobs': [job]}))\n"
        "    sys.exit(1)\n"
        "print('Traceback: it broke', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    lines: list[str] = []
    env = {"PATH": "/usr/bin:/bin"}

    failed = run_commit_capsule(script, tmp_path / "in", tmp_path / "out", env, lines.append)

    assert failed.folder is None and failed.key == "k" * 64
    assert failed.error == "the job run: job.json: run_analysis raised ValueError: bad input"
    assert lines == ["working on it"]

    crash = tmp_path / "crash"
    crash.mkdir()
    crashed = run_commit_capsule(script, tmp_path / "in", crash, env, lines.append)
    assert crashed.error is not None and crashed.key is None
    assert "before its summary" in crashed.error
    assert crashed.error.endswith("Traceback: it broke")
    missing = run_commit_capsule(tmp_path / "none.py", tmp_path, tmp_path, env, print)
    assert missing.error == f"the commit has no none.py at {tmp_path}"


def test_a_missing_commit_is_fetched_from_the_remotes_that_name_the_code(tmp_path: Path) -> None:
    """Remotes whose URL names the record's code first (their transport), then its URL."""
    git(tmp_path, "init", "-q")
    git(tmp_path, "remote", "add", "origin", "git@github.com:lab/capsule.git")
    git(tmp_path, "remote", "add", "fork", "https://github.com/someone/capsule")
    url = "https://github.com/lab/capsule"
    assert fetch_sources(tmp_path, url) == ["origin", url]
    git(tmp_path, "remote", "add", "mirror", "https://github.com/lab/capsule.git/")
    assert fetch_sources(tmp_path, url) == ["origin", "mirror"]  # the URL itself, once
    assert fetch_sources(tmp_path, "https://gitlab.com/other/code") == [
        "https://gitlab.com/other/code"
    ]
    gone = str(tmp_path / "no-such-repository")
    assert fetch_sources(tmp_path, gone) == []  # a path of the machine that made the record
    assert fetch_sources(tmp_path, "") == []
