"""Which clients get direct PUTs, where they go, and how they are signed; no server needed.

The bucket's URL comes from the client's own endpoint rule set: virtual-hosted on AWS,
path style where configured or for dotted names, FIPS and acceleration as configured.
Clients that sign otherwise get none: unsigned ones, SigV2, S3 Express buckets.
Over HTTPS the payload goes unsigned beside its CRC32 header, as boto3 sends it. Over
HTTP, or with checksums only where required, it is signed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zlib
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("botocore", reason="the S3 backend's extra is not installed")

import boto3
from botocore.config import Config

from analysis_wrapper.stores.s3.client import new_client
from analysis_wrapper.stores.s3.direct_put import DirectPuts


@pytest.fixture(autouse=True)
def aws_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fixed keys and region, no endpoint, no profile: what a client resolves is the rule set's."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


def client_with(**config: Any) -> Any:
    """A boto3 S3 client configured with ``config``, as an AWS config file would configure it."""
    return boto3.session.Session().client("s3", config=Config(**config))


@pytest.mark.parametrize(
    ("config", "bucket", "url"),
    [
        ({}, "my-bucket", "https://my-bucket.s3.us-west-2.amazonaws.com"),
        ({"s3": {"addressing_style": "path"}}, "my-bucket", "https://s3.us-west-2.amazonaws.com/my-bucket"),
        ({}, "my.dotted.bucket", "https://s3.us-west-2.amazonaws.com/my.dotted.bucket"),
        ({"use_fips_endpoint": True}, "my-bucket", "https://my-bucket.s3-fips.us-west-2.amazonaws.com"),
        ({"s3": {"use_accelerate_endpoint": True}}, "my-bucket", "https://my-bucket.s3-accelerate.amazonaws.com"),
    ],
)  # fmt: skip
def test_the_bucket_url_is_the_one_boto3_resolves(
    config: dict[str, Any], bucket: str, url: str
) -> None:
    puts = DirectPuts.for_bucket(client_with(**config), bucket)
    assert puts is not None
    assert puts.bucket_url == url
    assert puts.region == "us-west-2"


def test_a_custom_endpoint_is_addressed_path_style(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://objects.example.org:9443")
    puts = DirectPuts.for_bucket(new_client(max_pool_connections=2), "results")
    assert puts is not None
    assert puts.bucket_url == "https://objects.example.org:9443/results"


def test_clients_that_sign_otherwise_get_no_direct_puts() -> None:
    assert DirectPuts.for_bucket(new_client(2, unsigned=True), "public-bucket") is None
    assert DirectPuts.for_bucket(client_with(signature_version="s3"), "my-bucket") is None
    express = "my-bucket--usw2-az1--x-s3"  # an S3 Express directory bucket: session auth
    assert DirectPuts.for_bucket(new_client(2), express) is None


def signed_headers(
    puts: DirectPuts, body: bytes, content_type: str | None = None
) -> dict[str, str]:
    request = puts.signed("a folder/ü.txt", io.BytesIO(body), content_type)
    return {name.lower(): value for name, value in request.headers.items()}


def test_over_https_the_payload_goes_unsigned_beside_its_crc32() -> None:
    puts = DirectPuts.for_bucket(new_client(2), "my-bucket")
    assert puts is not None
    body = b"some result bytes"
    headers = signed_headers(puts, body, "text/plain")
    crc32 = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert headers["x-amz-checksum-crc32"] == crc32
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert headers["content-type"] == "text/plain"
    assert headers["content-length"] == str(len(body))
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-checksum-crc32", "x-amz-content-sha256", "content-type"} <= set(signed)
    assert "Credential=AKIDEXAMPLE/" in headers["authorization"]
    assert "/us-west-2/s3/aws4_request" in headers["authorization"]
    request = puts.signed("a folder/ü.txt", io.BytesIO(body))
    assert request.url == "https://my-bucket.s3.us-west-2.amazonaws.com/a%20folder/%C3%BC.txt"


def test_over_http_the_payload_is_signed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    puts = DirectPuts.for_bucket(new_client(2), "my-bucket")
    assert puts is not None
    body = b"some result bytes"
    assert signed_headers(puts, body)["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()


def test_checksums_only_where_required_send_none_and_sign_the_payload() -> None:
    puts = DirectPuts.for_bucket(
        client_with(request_checksum_calculation="when_required"), "my-bucket"
    )
    assert puts is not None
    body = b"some result bytes"
    headers = signed_headers(puts, body)
    assert "x-amz-checksum-crc32" not in headers
    assert headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()


def test_a_session_token_is_sent_and_signed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-session-token")
    puts = DirectPuts.for_bucket(new_client(2), "my-bucket")
    assert puts is not None
    headers = signed_headers(puts, b"x")
    assert headers["x-amz-security-token"] == "a-session-token"
    assert "x-amz-security-token" in headers["authorization"]
