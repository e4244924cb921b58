"""The pure parts of batched manifest checks on S3: chunks, prefixes, what a page answers."""

from __future__ import annotations

import hashlib

import pytest

pytest.importorskip("botocore", reason="the S3 backend's extra is not installed")

from analysis_wrapper.stores.s3_manifests import (
    _answered,
    _chunks,
    _common_prefix,
    _split,
)


def names(count: int) -> list[str]:
    """``count`` sorted manifest keys under ``p/``, as 64-hex-digit job keys make them."""
    return sorted(
        f"p/{hashlib.sha256(str(n).encode()).hexdigest()}/a/manifest.json" for n in range(count)
    )


def test_split_keeps_order_and_bounds_each_run() -> None:
    """Runs are contiguous, cover every name once, and none is over the limit."""
    sorted_names = names(3000)
    runs = _split(sorted_names, 250)
    assert [name for run in runs for name in run] == sorted_names
    assert max(len(run) for run in runs) <= 250
    assert all(len(_common_prefix(run[0], run[-1])) > len("p/") for run in runs)


def test_split_of_a_short_run_is_the_run() -> None:
    """Up to the limit, nothing is cut."""
    assert _split(["a", "b"], 2) == [["a", "b"]]


def test_split_descends_through_a_long_shared_prefix() -> None:
    """Names sharing more than the first character are cut where they differ."""
    run = [f"p/x/{n:03d}" for n in range(30)]
    runs = _split(run, 10)
    assert [name for part in runs for name in part] == run
    assert [len(part) for part in runs] == [10, 10, 10]


def test_chunks_never_mix_buckets() -> None:
    """Each chunk holds one bucket's targets, in order."""
    targets = sorted([("b1", name) for name in names(300)] + [("b2", name) for name in names(5)])
    chunks = _chunks(targets, 8)
    assert all(len({bucket for bucket, _ in chunk}) == 1 for chunk in chunks)
    assert sorted(target for chunk in chunks for target in chunk) == targets


@pytest.mark.parametrize(
    ("first", "last", "common"),
    [("abc", "abd", "ab"), ("abc", "abc", "abc"), ("a", "b", ""), ("ab", "abc", "ab")],
)
def test_common_prefix(first: str, last: str, common: str) -> None:
    """The longest start both share."""
    assert _common_prefix(first, last) == common


def test_a_truncated_page_answers_only_up_to_its_last_key() -> None:
    """Names after the page's last key are left for the next seek."""
    keys = ["p/a/manifest.json", "p/a/x", "p/c/manifest.jso0"]
    wanted = ["p/a/manifest.json", "p/b/manifest.json", "p/c/manifest.json", "p/d/manifest.json"]
    assert _answered(wanted, keys, truncated=True) == [True, False]
    assert _answered(wanted, keys, truncated=False) == [True, False, False, False]
    assert _answered(wanted[2:], keys, truncated=True) == []
