"""Fixtures for the AIND DocDB REST API stand-in: certificate, server, client environment.

tests/conftest.py imports the fixture functions once, so one stand-in serves the whole
session; each is registered under the name without ``_fixture`` (``docdb_api``, ...), so
test parameters do not shadow an import. They build
on ``mongo_uri`` from ``servers.py``. The stand-in accepts one set of AWS test
credentials, distinctive enough that a test can tell they never show in a message.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from standins.docdb_api import DocDbApiStandIn, make_certificate

ACCESS_KEY = "AKIADOCDBSTANDIN7Q2W"
SECRET_KEY = "standin-secret-4f9c2e71b0"
REGION = "us-west-2"
DATABASE = "docdb_api_tests"

# Variables through which boto3 could find other credentials than the test ones.
_OTHER_AWS_SOURCES = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_REGION",
)


def fresh_collection() -> str:
    """A collection name no other test uses."""
    return f"records_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session", name="docdb_api_certificate")
def docdb_api_certificate_fixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate (SAN IP:127.0.0.1, DNS:localhost) and its key."""
    return make_certificate(tmp_path_factory.mktemp("docdb-api-tls"))


@pytest.fixture(scope="session", name="docdb_api_server")
def docdb_api_server_fixture(
    mongo_uri: str, docdb_api_certificate: tuple[Path, Path]
) -> Iterator[DocDbApiStandIn]:
    """The DocDB REST API stand-in over HTTPS on a free loopback port, backed by SecantusDB."""
    cert, key = docdb_api_certificate
    standin = DocDbApiStandIn(
        mongo_uri, cert, key, access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION
    )
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture(name="docdb_api")
def docdb_api_fixture(docdb_api_server: DocDbApiStandIn) -> Iterator[DocDbApiStandIn]:
    """The stand-in with no recorded calls, no pending faults and the default page cap."""
    docdb_api_server.reset()
    yield docdb_api_server
    docdb_api_server.reset()


def docdb_client_env(standin: DocDbApiStandIn, folder: Path) -> dict[str, str]:
    """Environment for a client of ``standin``: its CA, the test credentials, the region.

    ``folder`` holds nothing; the AWS config files are pointed into it so no file of
    the machine's own AWS configuration is read.
    """
    return {
        "REQUESTS_CA_BUNDLE": str(standin.cert_file),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-aws-credentials"),
        "AWS_CONFIG_FILE": str(folder / "no-aws-config"),
    }


@pytest.fixture(name="docdb_api_env")
def docdb_api_env_fixture(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, docdb_api: DocDbApiStandIn
) -> dict[str, str]:
    """Set the client environment of :func:`docdb_client_env` for this test; return it."""
    for name in _OTHER_AWS_SOURCES:
        monkeypatch.delenv(name, raising=False)
    values = docdb_client_env(docdb_api, tmp_path)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def production_stores_env(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, bucket: str, database: str
) -> dict[str, str]:
    """The environment of a run on S3 (``bucket``) with MongoDB or the REST stand-in.

    ``kind`` is ``"mongo+s3"`` (SecantusDB, database ``database``) or ``"rest+s3"``
    (the stand-in, a fresh collection). S3 is the session's server, signed with the
    stand-in's credentials, which it also takes.
    """
    s3_endpoint: str = request.getfixturevalue("s3_endpoint")
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "ANALYSIS_BUCKET": f"s3://{bucket}/analysis",
    }
    if kind == "mongo+s3":
        return env | {
            "DOCDB_HOST": request.getfixturevalue("mongo_uri"),
            "DOCDB_DATABASE": database,
            "DOCDB_COLLECTION": "results",
        }
    standin: DocDbApiStandIn = request.getfixturevalue("docdb_api")
    return (
        env
        | docdb_client_env(standin, tmp_path)
        | {
            "DOCDB_HOST": standin.host,
            "DOCDB_DATABASE": DATABASE,
            "DOCDB_COLLECTION": fresh_collection(),
        }
    )
