"""The S3 client's timestamp parser gives exactly what botocore's own parser gives.

Compared by ``repr`` (value, microseconds and zone class), over the forms S3 and S3-like
servers send (ISO 8601 with ``Z``, with fractional seconds of any length; RFC 1123 in
headers; epoch numbers) and forms it must leave to botocore, under several local zones:
dateutil's answer for a UTC timestamp depends on the local zone's names.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

pytest.importorskip("botocore", reason="the S3 backend's extra is not installed")

from botocore.utils import parse_timestamp as botocore_parse_timestamp

from analysis_wrapper.stores.s3 import client as s3_client
from analysis_wrapper.stores.s3.client import parse_timestamp

FORMS = [
    "2026-12-02T14:20:13Z",
    "2026-12-02T14:20:13.000Z",
    "2026-12-02T14:20:13.1Z",
    "2026-12-02T14:20:13.12Z",
    "2026-12-02T14:20:13.123Z",
    "2026-12-02T14:20:13.123456Z",
    "2026-12-02T14:20:13.1234567Z",
    "2026-12-02T14:20:13.999999999Z",
    "2026-12-02T14:20:13+00:00",
    "2026-12-02T14:20:13.5+00:00",
    "2026-07-01T00:00:00.000Z",
    "2024-02-29T23:59:59.999Z",
    "1970-01-01T00:00:00Z",
    "1000-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    # Left to botocore: headers, epochs, other offsets and shapes.
    "Wed, 02 Dec 2026 14:20:13 GMT",
    "Sun, 06 Jul 2025 01:02:03 GMT",
    "2026-12-02T14:20:13+02:00",
    "2026-12-02T14:20:13-00:00",
    "2026-12-02T14:20:13",
    "2026-12-02T14:20:13z",
    "2026-12-02 14:20:13Z",
    "20261202T142013Z",
    "2026-12-02T14:20Z",
    "2026-12-02",
    "1764685213",
    "1764685213.25",
    1764685213,
    1764685213.25,
    0,
]
BAD = ["2026-13-02T14:20:13Z", "2026-02-30T00:00:00Z", "2026-12-02T25:00:00Z", "not a date", ""]
ZONES = ["UTC", "Etc/UTC", "GMT", "America/Los_Angeles", "Europe/London", "Asia/Kolkata"]


@pytest.fixture(params=ZONES)
def local_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The local zone of the process set to each of ``ZONES`` in turn (restored after)."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("value", FORMS, ids=repr)
def test_the_same_datetime_as_botocore(local_zone: str, value: object) -> None:
    """Same instant, fields and zone class as botocore's parser, in every local zone."""
    assert repr(parse_timestamp(value)) == repr(botocore_parse_timestamp(value))
    assert parse_timestamp(value) == botocore_parse_timestamp(value)


@pytest.mark.parametrize("value", BAD, ids=repr)
def test_what_botocore_refuses_is_refused_alike(local_zone: str, value: str) -> None:
    """A timestamp that is no date raises botocore's own error."""
    with pytest.raises(ValueError) as botocore_error:
        botocore_parse_timestamp(value)
    with pytest.raises(ValueError) as ours:
        parse_timestamp(value)
    assert str(ours.value) == str(botocore_error.value)


def test_a_zone_named_utc_only_part_of_the_year_is_left_to_botocore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where dateutil's zone for a UTC timestamp changes with the date, never guess it."""
    monkeypatch.setenv("TZ", "UTC0BST,M3.5.0/1,M10.5.0")  # named UTC in winter only
    time.tzset()
    try:
        assert s3_client._zero_offset_zone() is None
        for value in ("2026-01-15T12:00:00Z", "2026-07-15T12:00:00.5Z"):
            assert repr(parse_timestamp(value)) == repr(botocore_parse_timestamp(value))
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_fast_path_is_taken_for_listings(monkeypatch: pytest.MonkeyPatch) -> None:
    """S3's listing form never reaches botocore's parser (where it is no faster)."""
    calls: list[object] = []

    def counted(value: object) -> object:
        calls.append(value)
        return botocore_parse_timestamp(value)

    parse_timestamp("2026-12-02T14:20:13.000Z")  # the local zone's answer, cached
    monkeypatch.setattr(s3_client, "botocore_parse_timestamp", counted)
    parse_timestamp("2026-12-02T14:20:13.000Z")
    assert calls == []
    parse_timestamp("Wed, 02 Dec 2026 14:20:13 GMT")
    assert calls == ["Wed, 02 Dec 2026 14:20:13 GMT"]
