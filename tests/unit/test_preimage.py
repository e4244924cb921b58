"""record_preimage: a record's key pre-image rebuilt from its fields gives its key."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from analysis_wrapper.identity.key import CodeIdentity, compute_key, key_preimage, scheme_1_key
from analysis_wrapper.record.metadata import RecordInputs, build_record
from analysis_wrapper.record.preimage import record_preimage, reproduces_key

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TREE = "ab" * 32
START = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
CODE = CodeIdentity(
    url="https://github.com/example/analysis", version=COMMIT, commit=COMMIT, tree=TREE
)
PARAMETERS = {"cutoff": 0.5, "count": 20, "name": "Zoë", "grid": [1, 2.0], "off": None}


def recorded(preimage: dict[str, Any], key: str, code: CodeIdentity = CODE) -> dict[str, Any]:
    """The record the runner builds for a job of ``preimage`` and ``key``, as stored."""
    record = build_record(
        RecordInputs(
            key=key,
            location=f"file:///store/{key}/a1",
            code=code,
            input_data=preimage["input_data"],
            asset_names={},
            file_location=preimage["file_location"],
            parameters=preimage["parameters"],
            outputs={},
            experimenters=["someone@example.org"],
            start=START,
            end=START + timedelta(seconds=1),
            input_versions=preimage.get("input_versions"),
        )
    )
    # Through JSON, as every store hands a record back.
    stored: dict[str, Any] = json.loads(json.dumps(record))
    return stored


def test_a_record_gives_back_its_pre_image_and_key() -> None:
    """Inputs, file locations, parameters (NFC text, ints and floats apart) and the tree."""
    preimage = key_preimage(
        CODE, ["s3://Bucket/b", "sessions/a"], ["sessions/a/x.json"], PARAMETERS
    )
    key = compute_key(preimage)
    record = recorded(preimage, key)
    assert record_preimage(record) == preimage
    assert compute_key(record_preimage(record)) == key
    assert reproduces_key(record)


def test_content_identity_keeps_the_input_versions() -> None:
    """With INPUT_IDENTITY=content, the versions come back from the record too."""
    versions = {"s3://bucket/b": "etag-1", "sessions/a/x.json": "12:1700000000000000000"}
    preimage = key_preimage(CODE, ["s3://bucket/b"], ["sessions/a/x.json"], {"x": 1}, versions)
    key = compute_key(preimage)
    rebuilt = record_preimage(recorded(preimage, key))
    assert rebuilt["input_versions"] == versions
    assert compute_key(rebuilt) == key


def test_a_release_record_is_keyed_by_its_version() -> None:
    """A release-pinned capsule's record has no tree: its key holds the release."""
    release = CodeIdentity(url="https://codeocean.example.org/capsule/1", version="3.1")
    preimage = key_preimage(release, ["s3://bucket/b"], [], {"x": 1})
    key = compute_key(preimage)
    rebuilt = record_preimage(recorded(preimage, key, release))
    assert rebuilt["code"] == {"url": release.url, "version": "3.1"}
    assert rebuilt["key_scheme"] == 2
    assert compute_key(rebuilt) == key


def test_a_scheme_1_record_is_recognised() -> None:
    """A record keyed under scheme 1 (the commit itself) rebuilds to scheme 1."""
    preimage = key_preimage(CODE, ["s3://bucket/b"], [], {"x": 1})
    old_key = scheme_1_key(preimage, COMMIT)
    old_code = CodeIdentity(url=CODE.url, version=COMMIT, commit=COMMIT)  # no tree then
    rebuilt = record_preimage(recorded(preimage, old_key, old_code))
    assert rebuilt["key_scheme"] == 1
    assert rebuilt["code"] == {"url": CODE.url, "version": COMMIT}
    assert compute_key(rebuilt) == old_key


def test_a_changed_record_no_longer_reproduces_its_key() -> None:
    """Editing a stored parameter is seen: the fields no longer give the record's _id."""
    preimage = key_preimage(CODE, ["s3://bucket/b"], [], {"x": 1})
    record = recorded(preimage, compute_key(preimage))
    record["processing"]["data_processes"][0]["code"]["parameters"]["x"] = 2
    assert not reproduces_key(record)
    assert record_preimage(record)["parameters"] == {"x": 2}  # still today's form
