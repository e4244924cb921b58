"""Code Ocean pieces that need no server: the domain, the record's fields, the key."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from analysis_wrapper.config.settings import CodeOceanSettings, VersionPolicy
from analysis_wrapper.identity.codeocean import (
    CodeOceanError,
    CodeOceanIdentity,
    CodeOceanRun,
    PipelineInfo,
    base_url,
)
from analysis_wrapper.identity.key import CodeIdentity, compute_key, key_preimage
from analysis_wrapper.record.metadata import RecordInputs, build_record

KEY = "5c" * 32
START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
RUN = CodeOceanRun(
    computation_id="e2c3d4e5-f6a7-4b80-9c9d-1e2f3a4b5c6d",
    capsule_id="4e1d3c2b-7a6f-4b8e-9d0c-1a2b3c4d5e6f",
    capsule_name="aind-analysis-wrapper",
    capsule_url="https://codeocean.example.org/capsule/4544861",
    release="2.1",
    release_url="https://codeocean.example.org/capsule/4544861",
    pipeline=PipelineInfo(
        id="0b7c9d2e", name="Unit filtering pipeline", url="https://codeocean.example.org/capsule/1"
    ),
    data_asset_urls=("s3://bucket/8351747a", "https://codeocean.example.org/data-assets/50fa"),
    owner_email="owner@example.org",
)


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("codeocean.allenneuraldynamics.org", "https://codeocean.allenneuraldynamics.org"),
        ("https://codeocean.allenneuraldynamics.org/", "https://codeocean.allenneuraldynamics.org"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("  codeocean.example.org  ", "https://codeocean.example.org"),
    ],
)
def test_domain_becomes_a_base_url(domain: str, expected: str) -> None:
    """A host name gets https, as upstream; a full URL is kept; the trailing slash goes."""
    assert base_url(domain) == expected


def test_domain_with_credentials_is_refused_without_echoing_them() -> None:
    """A token pasted into CODEOCEAN_DOMAIN is refused, and masked in the message."""
    with pytest.raises(CodeOceanError, match="CODEOCEAN_API_TOKEN") as caught:
        base_url("https://me:s3cret-token@codeocean.example.org")
    assert "s3cret-token" not in str(caught.value)


def test_version_policy_defaults_to_commit_and_reads_release(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CODE_VERSION_POLICY is commit unless set; a wrong value is a validation error."""
    monkeypatch.delenv("CODE_VERSION_POLICY", raising=False)
    assert CodeOceanSettings().version_policy is VersionPolicy.COMMIT
    monkeypatch.setenv("CODE_VERSION_POLICY", "release")
    assert CodeOceanSettings().version_policy is VersionPolicy.RELEASE
    monkeypatch.setenv("CODE_VERSION_POLICY", "latest")
    with pytest.raises(ValueError, match="commit"):
        CodeOceanSettings()


def test_token_is_a_secret_in_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings never print the token."""
    monkeypatch.setenv("CODEOCEAN_API_TOKEN", "tok-123456")
    settings = CodeOceanSettings()
    assert "tok-123456" not in repr(settings)
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "tok-123456"


def record_with(run: CodeOceanRun | None) -> dict[str, Any]:
    """A record built with ``run`` as its Code Ocean run."""
    code = CodeOceanIdentity(
        url=RUN.capsule_url, version="2.1", name=RUN.capsule_name, codeocean=run
    )
    return build_record(
        RecordInputs(
            key=KEY,
            location=f"s3://bucket/{KEY}",
            code=code,
            input_data=["s3://bucket/asset"],
            asset_names={},
            file_location=[],
            parameters={"analysis_name": "Unit Filtering"},
            outputs={},
            experimenters=["scientist@example.org"],
            start=START,
            end=START + timedelta(seconds=3),
            codeocean=run,
        )
    )


def test_record_carries_pipeline_and_data_assets() -> None:
    """pipeline_name, processing.pipelines and the notes come from the Code Ocean run."""
    record = record_with(RUN)
    process = record["processing"]["data_processes"][0]
    assert process["pipeline_name"] == "Unit filtering pipeline"
    assert record["processing"]["pipelines"][0]["name"] == "Unit filtering pipeline"
    assert process["code"]["name"] == "aind-analysis-wrapper"
    assert process["code"]["version"] == "2.1"
    notes = process["notes"]
    assert "e2c3d4e5-f6a7-4b80-9c9d-1e2f3a4b5c6d" in notes
    assert "s3://bucket/8351747a" in notes and "/data-assets/50fa" in notes
    assert "owner@example.org" in notes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from aind_data_schema.core.metadata import Metadata

        Metadata.model_validate({k: v for k, v in record.items() if k != "_id"})


def test_record_outside_a_pipeline_has_no_pipeline() -> None:
    """A capsule run: no pipeline_name, no pipelines."""
    record = record_with(CodeOceanRun("c1", "cap", "name", "https://co/capsule/1"))
    assert record["processing"]["data_processes"][0]["pipeline_name"] is None
    assert record["processing"]["pipelines"] is None


def test_code_ocean_context_never_enters_the_key() -> None:
    """The key's pre-image is code url+version only: the run's metadata does not change it."""
    plain = CodeIdentity(url=RUN.capsule_url, version="2.1")
    enriched = CodeOceanIdentity(url=RUN.capsule_url, version="2.1", name="x", codeocean=RUN)
    keys = {
        compute_key(key_preimage(code, ["s3://bucket/asset"], [], {"a": 1}))
        for code in (plain, enriched)
    }
    assert len(keys) == 1
    assert key_preimage(enriched, [], [], {})["code"] == {"url": RUN.capsule_url, "version": "2.1"}
