"""job.inputs on local data: paths, files, glob, Code Ocean mounts, errors, content identity."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from analysis_wrapper.config.settings import InputIdentity, InputSettings
from analysis_wrapper.errors import ConfigError, JobInputError
from analysis_wrapper.identity.key import CodeIdentity, compute_key, key_preimage
from analysis_wrapper.inputs.asset_records import AssetRecords
from analysis_wrapper.inputs.patterns import glob_pattern
from analysis_wrapper.inputs.versions import InputVersions, input_versions
from analysis_wrapper.job.job_file import Job, bind_inputs, load_job

INPUT_VARIABLES = (
    "METADATA_HOST",
    "METADATA_DATABASE",
    "METADATA_COLLECTION",
    "METADATA_VERSION",
    "INPUT_IDENTITY",
    "INPUT_CACHE_DIR",
    "INPUT_CACHE_MAX_SIZE",
)


@pytest.fixture(autouse=True)
def _no_input_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in INPUT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def job_in(data: Path, **fields: object) -> Job:
    """A job file under ``data/job_dict``, loaded as the runner loads it."""
    path = data / "job_dict" / "job.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fields))
    return load_job(path, data)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An input directory with one asset folder: two files and a nested folder."""
    root = tmp_path / "data"
    write(root / "sessions" / "s1" / "spike_times.json", '{"n": 1}')
    write(root / "sessions" / "s1" / "probe_a" / "units.nwb", "nwb a")
    write(root / "sessions" / "s1" / "probe_b" / "units.nwb", "nwb b")
    write(root / "sessions" / "s1" / "probe_b" / "lfp.zarr" / ".zarray", "{}")
    return root


def test_local_path_and_open_read_a_file_of_a_local_asset(data: Path) -> None:
    """An asset's relative path resolves inside it; open gives its bytes."""
    job = job_in(data, s3_location=["sessions/s1"])
    asset = job.inputs[0]
    assert asset.local_path("spike_times.json") == data / "sessions/s1/spike_times.json"
    with asset.open("probe_a/units.nwb") as handle:
        assert handle.read() == b"nwb a"
    assert asset.local_path() == data / "sessions/s1"
    assert len(job.inputs) == 1 and [a.location for a in job.inputs] == ["sessions/s1"]


def test_whole_locations_take_file_urls_absolute_and_relative_paths(data: Path) -> None:
    """job.inputs accepts file:// URLs, absolute paths, and paths under the input dir."""
    job = job_in(data, s3_location=["sessions/s1"])
    target = data / "sessions/s1/spike_times.json"
    assert job.inputs.local_path(target.as_uri()) == target
    assert job.inputs.local_path(str(target)) == target
    assert job.inputs.local_path("sessions/s1/spike_times.json") == target
    assert job.inputs.url("sessions/s1/probe_b/lfp.zarr") == str(target.parent / "probe_b/lfp.zarr")


def test_glob_matches_within_one_level_and_across_levels(data: Path) -> None:
    """`*` stays in a level, `**/` spans any number (none included); folders match too."""
    job = job_in(data, s3_location=["sessions/s1"])
    asset = job.inputs[0]
    assert asset.glob("*.json") == ["sessions/s1/spike_times.json"]
    assert asset.glob("*.nwb") == []
    assert asset.glob("**/*.nwb") == [
        "sessions/s1/probe_a/units.nwb",
        "sessions/s1/probe_b/units.nwb",
    ]
    assert asset.glob("**/*.zarr") == ["sessions/s1/probe_b/lfp.zarr"]
    assert asset.glob("probe_?/units.nwb") == asset.glob("**/*.nwb")
    assert asset.glob("probe_[!a]/*") == [
        "sessions/s1/probe_b/lfp.zarr",
        "sessions/s1/probe_b/units.nwb",
    ]
    found = job.inputs.glob("**/units.nwb")
    assert [job.inputs.local_path(location).read_bytes() for location in found] == [
        b"nwb a",
        b"nwb b",
    ]


@pytest.mark.parametrize("pattern", ["", "/abs/*", "../*", "a/../../b"])
def test_glob_refuses_patterns_outside_the_asset(pattern: str) -> None:
    """A pattern must stay inside the asset."""
    with pytest.raises(ValueError, match="relative to the asset"):
        glob_pattern(pattern)


def test_code_ocean_mount_is_preferred_for_an_s3_asset(data: Path) -> None:
    """An S3 asset whose asset_name is a folder of the input directory is read there."""
    write(data / "ecephys_1" / "nwb" / "session.nwb", "mounted")
    job = job_in(
        data,
        s3_location=["s3://bucket-that-is-never-asked/prefix/ecephys_1"],
        asset_name=["ecephys_1"],
        file_location=["s3://bucket-that-is-never-asked/prefix/ecephys_1/nwb/session.nwb"],
    )
    asset = job.inputs[0]
    assert asset.mount == data / "ecephys_1"
    assert asset.local_path("nwb/session.nwb") == data / "ecephys_1/nwb/session.nwb"
    with job.inputs.open(job.inputs.files[0]) as handle:
        assert handle.read() == b"mounted"
    assert asset.url("nwb/session.nwb") == str(data / "ecephys_1/nwb/session.nwb")
    # glob over the mount gives the S3 locations, the same as without a mount
    assert asset.glob("**/*.nwb") == [
        "s3://bucket-that-is-never-asked/prefix/ecephys_1/nwb/session.nwb"
    ]


def test_missing_input_names_job_file_field_and_remedy(data: Path) -> None:
    """A missing s3_location folder fails with one line naming the file and the field."""
    job = job_in(data, s3_location=["sessions/nope"])
    with pytest.raises(JobInputError) as caught:
        job.inputs[0].local_path()
    message = str(caught.value)
    assert str(data / "job_dict" / "job.json") in message
    assert "'s3_location[0]'" in message
    assert "does not exist" in message and "check the job file" in message
    with pytest.raises(JobInputError, match="not a folder"):
        job.inputs[0].glob("*")


def test_missing_file_inside_an_asset_names_the_input(data: Path) -> None:
    """A missing file the analysis asks for is named in the error."""
    job = job_in(data, s3_location=["sessions/s1"])
    with pytest.raises(JobInputError, match=r"input 'sessions/s1/absent.json'.*does not exist"):
        job.inputs[0].open("absent.json")


def test_file_location_outside_its_asset_is_refused(data: Path) -> None:
    """A file_location not inside any s3_location names the field and the remedy."""
    write(data / "elsewhere" / "f.json")
    job = job_in(data, s3_location=["sessions/s1"], file_location=["elsewhere/f.json"])
    with pytest.raises(JobInputError) as caught:
        bind_inputs(job)
    assert "'file_location[0]'" in str(caught.value)
    assert "not inside any of the job's assets" in str(caught.value)
    with pytest.raises(JobInputError, match="file_location"):
        job.inputs.files  # noqa: B018 - the lazy binding raises the same error


def test_file_location_in_s3fs_form_is_read_as_s3_inside_its_asset(data: Path) -> None:
    """`bucket/key` (s3fs.glob's form) inside an S3 asset is that S3 object, mounted here."""
    write(data / "asset_a" / "x.nwb", "via mount")
    job = job_in(
        data,
        s3_location=["s3://some-bucket/asset_a"],
        asset_name=["asset_a"],
        file_location=["some-bucket/asset_a/x.nwb"],
    )
    assert job.inputs.local_path(job.inputs.files[0]) == data / "asset_a" / "x.nwb"


def test_a_path_outside_the_asset_is_refused(data: Path) -> None:
    """Paths given to an asset must be relative and stay inside it."""
    job = job_in(data, s3_location=["sessions/s1"])
    for path in ("../s2/x", "/etc/passwd", "s3://b/k"):
        with pytest.raises(JobInputError, match="not a path inside the asset"):
            job.inputs[0].local_path(path)


def test_job_with_inputs_pickles_and_reads_after(data: Path) -> None:
    """A bound job travels to a worker (pickle) and reads its inputs there."""
    job = job_in(data, s3_location=["sessions/s1"])
    bind_inputs(job, settings=InputSettings(INPUT_CACHE_DIR=str(data / "cache")))
    job.inputs[0].local_path("spike_times.json")
    copy = pickle.loads(pickle.dumps(job))
    assert copy.inputs[0].local_path("spike_times.json") == data / "sessions/s1/spike_times.json"
    assert copy.inputs.settings.cache_directory == data / "cache"


def test_open_stream_of_a_local_input_opens_the_file(data: Path) -> None:
    """open_stream on a local input is an ordinary open file."""
    job = job_in(data, s3_location=["sessions/s1"])
    with job.inputs[0].open_stream("spike_times.json") as handle:
        assert json.loads(handle.read()) == {"n": 1}


# --- asset records without a source ----------------------------------------------------


def test_asset_records_are_none_without_a_source(data: Path) -> None:
    """No METADATA_HOST and no DOCDB_HOST: every record is None, nothing is asked."""
    job = job_in(data, s3_location=["sessions/s1"], docdb_record_id=["id-1", "id-2"])
    records = job.asset_records()
    assert list(records) == [None, None]
    assert not records.available and records.missing == ["id-1", "id-2"]
    assert records.get("subject.subject_id") is None


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, None),
        ({"DOCDB_HOST": "api.example.org"}, "api.example.org"),
        ({"DOCDB_HOST": "sqlite:///x.sqlite"}, None),
        ({"DOCDB_HOST": "api.example.org", "METADATA_HOST": "none"}, None),
        ({"DOCDB_HOST": "api.example.org", "METADATA_HOST": "mongodb://h/"}, "mongodb://h/"),
    ],
)
def test_asset_records_source_falls_back_to_docdb_host(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: str | None
) -> None:
    """METADATA_HOST wins; unset, DOCDB_HOST's server (not an embedded SQLite) is used."""
    monkeypatch.delenv("DOCDB_HOST", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert InputSettings().asset_records_host == expected


def test_asset_records_source_with_a_scheme_it_cannot_use_is_a_config_error(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """METADATA_HOST=http://... is refused with the accepted forms named."""
    monkeypatch.setenv("METADATA_HOST", "http://user:pw@host")
    job = job_in(data, s3_location=["sessions/s1"], docdb_record_id=["a"])
    with pytest.raises(ConfigError, match="METADATA_HOST") as caught:
        job.asset_records()
    assert "pw" not in str(caught.value)


def test_asset_records_get_follows_dotted_paths() -> None:
    """get() walks dicts and list indices; a missing step gives the default."""
    records = AssetRecords(
        ["a", "b"],
        {"a": {"subject": {"subject_id": "612345"}, "procedures": [{"kind": "surgery"}]}},
        "source",
    )
    assert records.get("subject.subject_id") == "612345"
    assert records.get("procedures.0.kind") == "surgery"
    assert records.get("procedures.3.kind", default="-") == "-"
    assert records.get("subject.subject_id", index=1) is None
    assert records.missing == ["b"] and records[1] is None and records.by_id("a") is records[0]


# --- settings --------------------------------------------------------------------------


def test_cache_settings_parse_sizes_and_default_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """INPUT_CACHE_MAX_SIZE takes units; the folder defaults under XDG_CACHE_HOME."""
    monkeypatch.setenv("INPUT_CACHE_MAX_SIZE", "500MB")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    settings = InputSettings()
    assert int(settings.cache_max_size) == 500_000_000
    assert settings.cache_directory == tmp_path / "aind-analysis-wrapper"
    assert settings.input_identity is InputIdentity.LOCATION
    monkeypatch.delenv("INPUT_CACHE_MAX_SIZE")
    assert int(InputSettings().cache_max_size) == 20 * 1024**3


# --- content identity ------------------------------------------------------------------

CODE = CodeIdentity(url="https://example.org/repo", version="0" * 40)


def test_default_preimage_has_no_input_versions() -> None:
    """Without the opt-in the pre-image (hence every existing key) is unchanged."""
    preimage = key_preimage(CODE, ["a"], [], {"x": 1})
    assert "input_versions" not in preimage
    assert compute_key(preimage) == compute_key(key_preimage(CODE, ["a"], [], {"x": 1}, None))


def test_input_versions_of_a_local_asset_follow_size_and_mtime(data: Path) -> None:
    """Rewriting a file of the asset changes its version and so the key."""
    job = job_in(data, s3_location=["sessions/s1"])
    first = input_versions(job)
    assert list(first) == ["sessions/s1"] and first["sessions/s1"].startswith("sha256:")
    assert input_versions(job) == first
    target = data / "sessions/s1/spike_times.json"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = input_versions(job)
    assert second != first
    key = compute_key(key_preimage(CODE, job.s3_location, [], {}, first))
    assert key != compute_key(key_preimage(CODE, job.s3_location, [], {}, second))
    assert key != compute_key(key_preimage(CODE, job.s3_location, [], {}))


def test_input_versions_use_file_locations_and_the_plan_memo(data: Path) -> None:
    """With file_location the files are versioned; a memo shared by a plan is reused."""
    job = job_in(
        data,
        s3_location=["sessions/s1"],
        file_location=["sessions/s1/spike_times.json"],
    )
    memo: dict[str, str] = {}
    versions = input_versions(job, memo)
    size = (data / "sessions/s1/spike_times.json").stat().st_size
    assert list(versions) == ["sessions/s1/spike_times.json"]
    assert versions["sessions/s1/spike_times.json"].startswith(f"size:{size},mtime_ns:")
    write(data / "sessions/s1/spike_times.json", '{"n": 22}')
    assert input_versions(job, memo) == versions  # the memo answers within one plan
    assert input_versions(job) != versions


def test_input_versions_of_a_missing_input_is_a_job_input_error(data: Path) -> None:
    """A missing input cannot be versioned: the job is invalid, with its field named."""
    job = job_in(data, s3_location=["sessions/missing"])
    with pytest.raises(JobInputError, match=r"'s3_location\[0\]'.*does not exist"):
        input_versions(job)


def test_a_bad_input_setting_is_one_config_error_naming_the_variable(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """INPUT_IDENTITY=bogus: ConfigError naming the variable and the accepted values."""
    monkeypatch.setenv("INPUT_IDENTITY", "bogus")
    job = job_in(data, s3_location=["sessions/s1"])
    with pytest.raises(ConfigError, match=r"INPUT_IDENTITY='bogus'.*'location' or 'content'"):
        job.inputs  # noqa: B018 - binding reads the settings
    monkeypatch.setenv("INPUT_IDENTITY", "")  # empty means unset
    assert job.inputs.settings.input_identity is InputIdentity.LOCATION


def test_input_versions_per_plan_is_none_by_default_and_reads_nothing(data: Path) -> None:
    """Default: no versions, no I/O (a missing input is not even looked at)."""
    job = job_in(data, s3_location=["sessions/missing"])
    assert InputVersions(InputSettings())(job) is None
    opted = InputVersions(InputSettings(INPUT_IDENTITY="content"))
    with pytest.raises(JobInputError, match="does not exist"):
        opted(job)
    present = job_in(data, s3_location=["sessions/s1"])
    assert opted(present) == input_versions(present)
    assert list(opted.memo) == [f"{data}|sessions/s1"]
