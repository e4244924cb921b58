"""job.inputs on moto's and SeaweedFS's S3: downloads, the shared cache, listing, streams, errors.

Every test uses buckets of its own. Downloads are counted in the server's own request
log (one line per request), so "downloaded once" is what the server saw.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import NoCredentialsError

from analysis_wrapper.config.settings import InputSettings
from analysis_wrapper.errors import JobInputError, StoreError
from analysis_wrapper.identity.key import CodeIdentity, compute_key, key_preimage
from analysis_wrapper.inputs import s3 as input_s3
from analysis_wrapper.inputs.versions import input_versions
from analysis_wrapper.job.job_file import Job, bind_inputs, load_job
from servers import TEST_AWS_ENV, ServerProcess, free_port, on_each_s3_server

MiB = 1024 * 1024
REGION = TEST_AWS_ENV["AWS_DEFAULT_REGION"]
CODE = CodeIdentity(url="https://example.org/repo", version="1" * 40)

# Every test on the session's S3 server runs on moto, then on SeaweedFS.
s3_server, s3_endpoint = on_each_s3_server()


@pytest.fixture
def s3(aws_test_env: dict[str, str]) -> Any:
    """A boto3 client of the test server (for setting objects up)."""
    return boto3.client("s3")


def make_bucket(client: Any) -> str:
    bucket = f"inputs-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    return bucket


def job_file(folder: Path, **fields: Any) -> Job:
    """Write a job file under ``folder/job_dict`` and load it as the runner does."""
    path = folder / "job_dict" / f"{uuid.uuid4().hex[:8]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fields))
    return load_job(path, folder)


def bucket_policy(bucket: str, effect: str, actions: str | list[str]) -> str:
    """A bucket policy that allows or denies ``actions`` to anyone, on the bucket and its keys."""
    statement = {
        "Effect": effect,
        "Principal": "*",
        "Action": actions,
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def settings(cache: Path, max_size: int | str = "1GiB") -> InputSettings:
    return InputSettings(INPUT_CACHE_DIR=str(cache), INPUT_CACHE_MAX_SIZE=max_size)


def requests_for(server: ServerProcess, method: str, bucket: str, key: str) -> list[int]:
    """The status of every ``method`` request for ``bucket/key`` in the server's log.

    moto logs ``GET /bucket/key?query HTTP/1.1" 200``; SeaweedFS (its request log on)
    ``"<identity>" GET "/bucket/key" 200 <duration>``.
    """
    time.sleep(0.3)  # the server logs a request just after answering it
    text = server.log_path.read_text(errors="replace")
    path = rf"/{bucket}/{re.escape(key)}"
    moto = rf"{method} {path}(?:\?[^ ]*)? HTTP/1\.1(?:\x1b\[0m)?\" (\d{{3}})"
    seaweedfs = rf"\" {method} \"{path}(?:\?[^\"]*)?\" (\d{{3}}) "
    pattern = seaweedfs if server.name == "weed mini" else moto
    return [int(status) for status in re.findall(pattern, text)]


# --- files, the cache, listing, streaming ----------------------------------------------


def test_a_small_file_is_downloaded_once_and_reused_by_the_next_job(
    s3: Any, s3_server: ServerProcess, tmp_path: Path
) -> None:
    """Two jobs on one asset read the same cached copy; the server saw one GET."""
    bucket = make_bucket(s3)
    s3.put_object(Bucket=bucket, Key="asset/spike_times.json", Body=b'{"units": 3}')
    paths = []
    for _ in range(2):
        job = job_file(tmp_path / "data", s3_location=[f"s3://{bucket}/asset"])
        bind_inputs(job, settings=settings(tmp_path / "cache"))
        paths.append(job.inputs[0].local_path("spike_times.json"))
        with job.inputs[0].open("spike_times.json") as handle:
            assert json.load(handle) == {"units": 3}
    assert paths[0] == paths[1] and paths[0].name == "spike_times.json"
    assert paths[0].is_relative_to(tmp_path / "cache")
    assert requests_for(s3_server, "GET", bucket, "asset/spike_times.json") == [200]
    assert len(requests_for(s3_server, "HEAD", bucket, "asset/spike_times.json")) == 4


def test_a_multipart_object_downloads_whole(
    s3: Any, s3_server: ServerProcess, tmp_path: Path
) -> None:
    """A 9 MiB object uploaded in two parts (ETag ``-2``) arrives byte for byte."""
    bucket = make_bucket(s3)
    payload = bytes(range(256)) * (9 * MiB // 256)
    source = tmp_path / "big.bin"
    source.write_bytes(payload)
    parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_file(str(source), bucket, "asset/raw/big.bin", Config=parts)
    etag = s3.head_object(Bucket=bucket, Key="asset/raw/big.bin")["ETag"].strip('"')
    assert etag.endswith("-2")
    job = job_file(
        tmp_path / "data",
        s3_location=[f"s3://{bucket}/asset"],
        file_location=[f"s3://{bucket}/asset/raw/big.bin"],
    )
    bind_inputs(job, settings=settings(tmp_path / "cache"))
    local = job.inputs.local_path(job.inputs.files[0])
    assert hashlib.sha256(local.read_bytes()).digest() == hashlib.sha256(payload).digest()
    assert input_versions(job) == {f"s3://{bucket}/asset/raw/big.bin": f"etag:{etag}"}
    assert requests_for(s3_server, "GET", bucket, "asset/raw/big.bin") == [200]


def test_glob_lists_a_prefix_of_many_files_over_several_pages(s3: Any, tmp_path: Path) -> None:
    """1,100 objects (two listing pages): glob finds them all, folders included."""
    bucket = make_bucket(s3)
    keys = [f"asset/probe_{n % 4}/chunk_{n:04d}.bin" for n in range(1096)]
    keys += ["asset/top.nwb", "asset/ephys.zarr/.zarray", "asset/ephys.zarr/0.0", "asset/x.nwb"]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=b"."), keys))
    job = job_file(tmp_path / "data", s3_location=[f"s3://{bucket}/asset"])
    asset = job.inputs[0]
    assert len(asset.glob("**/*.bin")) == 1096
    assert asset.glob("*.nwb") == [f"s3://{bucket}/asset/top.nwb", f"s3://{bucket}/asset/x.nwb"]
    assert asset.glob("**/*.zarr") == [f"s3://{bucket}/asset/ephys.zarr"]
    assert asset.glob("probe_3/chunk_000?.bin") == [
        f"s3://{bucket}/asset/probe_3/chunk_{n:04d}.bin" for n in (3, 7)
    ]
    assert job.inputs.glob("**/*.nwb") == asset.glob("**/*.nwb")


def test_open_stream_reads_over_the_network_without_caching(
    s3: Any, s3_server: ServerProcess, tmp_path: Path
) -> None:
    """url() is the s3:// URL; open_stream reads ranges through s3fs; nothing is cached."""
    bucket = make_bucket(s3)
    s3.put_object(Bucket=bucket, Key="asset/ephys.zarr/.zarray", Body=b'{"zarr_format": 2}')
    job = job_file(tmp_path / "data", s3_location=[f"s3://{bucket}/asset"])
    bind_inputs(job, settings=settings(tmp_path / "cache"))
    assert job.inputs[0].url("ephys.zarr") == f"s3://{bucket}/asset/ephys.zarr"
    with job.inputs[0].open_stream("ephys.zarr/.zarray") as handle:
        assert json.loads(handle.read()) == {"zarr_format": 2}
    assert not (tmp_path / "cache").exists()
    assert set(requests_for(s3_server, "GET", bucket, "asset/ephys.zarr/.zarray")) <= {200, 206}


def _fetch_in_a_process(
    location: str, data: str, cache: str, start: Any, queue: multiprocessing.Queue[str]
) -> None:
    """In a spawned process: bind a job and fetch one object, at the same moment as another."""
    job = Job(s3_location=[location]).bind(Path(data) / "job.json", Path(data))
    bind_inputs(job, settings=settings(Path(cache)))
    start.wait(timeout=60)
    path = job.inputs[0].local_path("big.bin")
    queue.put(f"{path}\t{hashlib.sha256(path.read_bytes()).hexdigest()}")


def test_two_processes_fetching_one_object_at_once_download_it_once(
    s3: Any, s3_server: ServerProcess, tmp_path: Path
) -> None:
    """Two spawned processes, released together: one GET on the server, one complete copy."""
    bucket = make_bucket(s3)
    payload = b"\x5a" * (24 * MiB)
    s3.put_object(Bucket=bucket, Key="asset/big.bin", Body=payload)
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[str] = context.Queue()
    start = context.Barrier(2)
    arguments = (f"s3://{bucket}/asset", str(tmp_path), str(tmp_path / "cache"), start, queue)
    workers = [context.Process(target=_fetch_in_a_process, args=arguments) for _ in range(2)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert len(set(results)) == 1
    path, digest = results[0].split("\t")
    assert digest == hashlib.sha256(payload).hexdigest()
    assert Path(path).stat().st_size == len(payload)
    assert requests_for(s3_server, "GET", bucket, "asset/big.bin") == [200]
    leftovers = [p.name for p in Path(path).parent.iterdir() if p.name != "big.bin"]
    assert leftovers == []


def test_a_cache_at_its_bound_evicts_the_least_recently_used_object(
    s3: Any, s3_server: ServerProcess, tmp_path: Path
) -> None:
    """Bound 2.5 objects: fetching a, b, c evicts a, so a is downloaded again; b stays."""
    bucket = make_bucket(s3)
    for name in "abc":
        s3.put_object(Bucket=bucket, Key=f"asset/{name}.bin", Body=name.encode() * 1000)
    job = job_file(tmp_path / "data", s3_location=[f"s3://{bucket}/asset"])
    bind_inputs(job, settings=settings(tmp_path / "cache", 2500))
    first = {}
    for name in "abc":
        first[name] = job.inputs[0].local_path(f"{name}.bin")
        time.sleep(0.02)
    assert not first["a"].exists() and first["b"].exists() and first["c"].exists()
    assert job.inputs[0].local_path("a.bin").read_bytes() == b"a" * 1000
    assert requests_for(s3_server, "GET", bucket, "asset/a.bin") == [200, 200]
    assert requests_for(s3_server, "GET", bucket, "asset/c.bin") == [200]
    assert not first["b"].exists()  # now b was the least recently used


def test_a_code_ocean_mount_is_read_without_any_request(
    s3: Any, s3_server: ServerProcess, tmp_path: Path
) -> None:
    """With /data/<asset name>/ present, the S3 asset is read there: the server sees nothing."""
    bucket = make_bucket(s3)
    s3.put_object(Bucket=bucket, Key="ecephys_1/units.nwb", Body=b"on s3")
    mounted = tmp_path / "data" / "ecephys_1" / "units.nwb"
    mounted.parent.mkdir(parents=True)
    mounted.write_bytes(b"mounted")
    job = job_file(
        tmp_path / "data", s3_location=[f"s3://{bucket}/ecephys_1"], asset_name=["ecephys_1"]
    )
    assert job.inputs[0].local_path("units.nwb") == mounted
    assert job.inputs[0].glob("*.nwb") == [f"s3://{bucket}/ecephys_1/units.nwb"]
    assert requests_for(s3_server, "GET", bucket, "ecephys_1/units.nwb") == []
    assert requests_for(s3_server, "HEAD", bucket, "ecephys_1/units.nwb") == []


# --- errors ------------------------------------------------------------------------------


def test_a_missing_object_names_the_job_file_and_field(s3: Any, tmp_path: Path) -> None:
    """A file_location with no object: JobInputError naming the file and the field."""
    bucket = make_bucket(s3)
    s3.put_object(Bucket=bucket, Key="asset/present.json", Body=b"{}")
    job = job_file(
        tmp_path / "data",
        s3_location=[f"s3://{bucket}/asset"],
        file_location=[f"s3://{bucket}/asset/absent.nwb"],
    )
    for attempt in (
        lambda: job.inputs.local_path(job.inputs.files[0]),
        lambda: input_versions(job),
    ):
        with pytest.raises(JobInputError) as caught:
            attempt()
        message = str(caught.value)
        assert str(job.source_file) in message and "'file_location[0]'" in message
        assert f"no object s3://{bucket}/asset/absent.nwb" in message


def test_a_folder_an_empty_prefix_and_a_missing_bucket_are_explained(
    s3: Any, tmp_path: Path
) -> None:
    """A prefix asked for as a file, a prefix with no objects, a bucket that is not there."""
    bucket = make_bucket(s3)
    s3.put_object(Bucket=bucket, Key="asset/ephys.zarr/.zarray", Body=b"{}")
    job = job_file(tmp_path / "data", s3_location=[f"s3://{bucket}/asset"])
    with pytest.raises(JobInputError, match=r"is a folder on S3, not a file; list its files"):
        job.inputs[0].local_path("ephys.zarr")
    empty = job_file(tmp_path / "data", s3_location=[f"s3://{bucket}/no-such-asset"])
    with pytest.raises(JobInputError, match=r"'s3_location\[0\]'.*holds no objects"):
        empty.inputs[0].glob("*")
    with pytest.raises(JobInputError, match=r"'s3_location\[0\]'.*holds no objects"):
        input_versions(empty)
    gone = job_file(tmp_path / "data", s3_location=["s3://no-such-bucket-7f3a/asset"])
    with pytest.raises(JobInputError, match="bucket 'no-such-bucket-7f3a' does not exist"):
        gone.inputs[0].local_path("x.json")


def test_access_denied_is_a_store_error_naming_the_input_and_remedy(
    s3: Any, tmp_path: Path
) -> None:
    """A bucket policy that denies reading: StoreError with HTTP 403, the URL and the fix."""
    bucket = make_bucket(s3)
    s3.put_object(Bucket=bucket, Key="asset/f.json", Body=b"{}")
    s3.put_bucket_policy(Bucket=bucket, Policy=bucket_policy(bucket, "Deny", "s3:*"))
    job = job_file(
        tmp_path / "data",
        s3_location=[f"s3://{bucket}/asset"],
        file_location=[f"s3://{bucket}/asset/f.json"],
    )
    bind_inputs(job, settings=settings(tmp_path / "cache"))
    # (moto applies bucket policies to object reads, not to listings)
    for attempt in (
        lambda: job.inputs[0].local_path("f.json"),
        lambda: input_versions(job),
        lambda: job.inputs[0].open_stream("f.json"),
    ):
        with pytest.raises(StoreError) as caught:
            attempt()
        message = str(caught.value)
        assert str(job.source_file) in message and "access denied" in message.lower()
        assert f"s3://{bucket}" in message
        assert "check the AWS credentials" in message
        assert TEST_AWS_ENV["AWS_SECRET_ACCESS_KEY"] not in message
        assert caught.value.transient is False  # the job is not tried again


def test_an_unreachable_s3_is_a_transient_store_error_naming_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_test_env: dict[str, str]
) -> None:
    """S3 at a closed port, after the bounded retries: a transient StoreError (job retried)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    job = job_file(
        tmp_path / "data",
        s3_location=["s3://some-bucket/asset"],
        file_location=["s3://some-bucket/asset/f.json"],
    )
    bind_inputs(job, settings=settings(tmp_path / "cache"))
    for attempt in (lambda: job.inputs[0].local_path("f.json"), lambda: job.inputs[0].glob("*")):
        with pytest.raises(StoreError, match="cannot reach S3") as caught:
            attempt()
        assert str(job.source_file) in str(caught.value)
        assert caught.value.transient is True


def test_a_file_location_outside_its_asset_is_refused(s3: Any, tmp_path: Path) -> None:
    """A file_location in another prefix than every s3_location fails at binding."""
    bucket = make_bucket(s3)
    job = job_file(
        tmp_path / "data",
        s3_location=[f"s3://{bucket}/asset"],
        file_location=[f"s3://{bucket}/asset-other/f.nwb"],
    )
    with pytest.raises(JobInputError, match=r"'file_location\[0\]'.*not inside any"):
        bind_inputs(job)


# --- the input identity opt-in -------------------------------------------------------------


def test_content_identity_changes_the_key_when_an_object_is_re_uploaded(
    s3: Any, tmp_path: Path
) -> None:
    """Re-uploading changes input_versions and the key; the default key does not move."""
    bucket = make_bucket(s3)
    for n in range(3):
        s3.put_object(Bucket=bucket, Key=f"asset/part_{n}.bin", Body=f"v1 {n}".encode())
    job = job_file(tmp_path / "data", s3_location=[f"s3://{bucket}/asset"])

    def keys() -> tuple[str, str]:
        default = compute_key(key_preimage(CODE, job.s3_location, [], {"x": 1}))
        content = key_preimage(CODE, job.s3_location, [], {"x": 1}, input_versions(job))
        return default, compute_key(content)

    before = keys()
    assert keys() == before  # nothing changed, nothing moves
    s3.put_object(Bucket=bucket, Key="asset/part_1.bin", Body=b"v2 1")
    after = keys()
    assert after[0] == before[0]
    assert after[1] != before[1]
    assert before[0] != before[1]


# --- no credentials: public buckets are read anonymously ---------------------------------


def _remove_credentials(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Leave boto3's chain nothing to find: no variables, files, container or instance role."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(folder / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_without_credentials_a_public_bucket_is_read_anonymously(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Download, listing, streaming and content versions all work unsigned; the log says so."""
    bucket = make_bucket(s3)
    # Readable by anyone: the objects' ACL (moto asks it for HEAD, which it does not
    # map to s3:GetObject as S3 does) and the bucket's policy, as on an open-data bucket.
    for key, body in (("asset/a.json", b'{"a": 1}'), ("asset/sub/b.json", b'{"b": 2}')):
        s3.put_object(Bucket=bucket, Key=key, Body=body, ACL="public-read")
    public = bucket_policy(bucket, "Allow", ["s3:GetObject", "s3:ListBucket"])
    s3.put_bucket_policy(Bucket=bucket, Policy=public)
    _remove_credentials(monkeypatch, tmp_path)
    with pytest.raises(NoCredentialsError):  # what a signed client does here
        boto3.session.Session().client("s3").list_objects_v2(Bucket=bucket)

    job = job_file(tmp_path / "data", s3_location=[f"s3://{bucket}/asset"])
    bind_inputs(job, settings=settings(tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="analysis_wrapper.inputs.s3"):
        local = job.inputs[0].local_path("a.json")
    assert json.loads(local.read_text()) == {"a": 1}
    assert "reading S3 inputs anonymously" in caplog.text
    assert input_s3.anonymous() is True
    assert job.inputs[0].glob("**/*.json") == [
        f"s3://{bucket}/asset/a.json",
        f"s3://{bucket}/asset/sub/b.json",
    ]
    with job.inputs[0].open_stream("sub/b.json") as handle:
        assert json.loads(handle.read()) == {"b": 2}
    assert set(input_versions(job)) == {f"s3://{bucket}/asset"}


def test_without_credentials_a_private_bucket_says_none_were_found(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Denied to an anonymous reader: the message says no credentials were found, and how."""
    bucket = make_bucket(s3)
    s3.put_object(Bucket=bucket, Key="asset/f.json", Body=b"{}")
    s3.put_bucket_policy(Bucket=bucket, Policy=bucket_policy(bucket, "Deny", "s3:*"))
    _remove_credentials(monkeypatch, tmp_path)
    job = job_file(tmp_path / "data", s3_location=[f"s3://{bucket}/asset"])
    bind_inputs(job, settings=settings(tmp_path / "cache"))
    for attempt in (
        lambda: job.inputs[0].local_path("f.json"),
        lambda: job.inputs[0].open_stream("f.json"),
    ):
        with pytest.raises(StoreError) as caught:
            attempt()
        message = str(caught.value)
        assert "access denied" in message and "no AWS credentials were found" in message
        assert "AWS_PROFILE" in message and f"s3://{bucket}" in message
        assert caught.value.transient is False


def test_with_credentials_inputs_are_read_signed(s3: Any, tmp_path: Path) -> None:
    """The test credentials are found: the client signs (a private bucket stays readable)."""
    bucket = make_bucket(s3)
    s3.put_object(Bucket=bucket, Key="asset/f.json", Body=b"{}")
    job = job_file(tmp_path / "data", s3_location=[f"s3://{bucket}/asset"])
    bind_inputs(job, settings=settings(tmp_path / "cache"))
    assert job.inputs[0].local_path("f.json").read_bytes() == b"{}"
    assert input_s3.anonymous() is False
