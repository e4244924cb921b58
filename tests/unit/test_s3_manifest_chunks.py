"""The pure parts of batched manifest checks on S3: chunks, prefixes, what a page answers."""

from __future__ import annotations

import contextlib
import hashlib
import random
from typing import Any, cast

import pytest

pytest.importorskip("botocore", reason="the S3 backend's extra is not installed")

from analysis_wrapper.stores.s3 import manifests as s3_manifests
from analysis_wrapper.stores.s3.manifests import (
    BOTH,
    BYTES,
    TREE,
    _answered,
    _chunks,
    _common_prefix,
    _orders_of,
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
    after = "p/a/manifest.jso"
    assert _answered(wanted, keys, True, after, BOTH) == [True, False]
    assert _answered(wanted, keys, False, after, BOTH) == [True, False, False, False]
    assert _answered(wanted[2:], keys, True, after, BOTH) == []


def test_a_page_answers_only_names_both_orders_put_in_it() -> None:
    """``p/ab/x`` sorts after ``p/ab-c`` in bytes, before it in a tree: left unanswered."""
    wanted = ["p/ab-c/manifest.json", "p/ab/x/manifest.json", "p/ab0/manifest.json"]
    tree_page = ["p/ab-c/manifest.json", "p/ab.d", "p/ab0/manifest.json"]  # as SeaweedFS lists
    assert _answered(wanted, tree_page, False, "p/ab-c/manifest.jso", BOTH) == [True]
    assert _answered(wanted[1:], ["p/ab/x/manifest.json"], True, "p/ab/x/manifest.jso", BOTH) == [
        True
    ]
    assert _answered(wanted, tree_page, False, "p/ab-c/manifest.jso", frozenset({BYTES})) == [
        True,
        False,
        True,
    ]


def test_a_page_tells_which_order_it_was_listed_in() -> None:
    """Keys out of one order rule it out; a page in both keeps both."""
    tree_page = ["p/ab/x/manifest.json", "p/ab-c/manifest.json"]
    assert _orders_of("p/ab/x/manifest.jso", tree_page, BOTH) == {TREE}
    assert _orders_of("p/ab-", sorted(tree_page), BOTH) == {BYTES}
    assert _orders_of("p/a", ["p/a/b"], BOTH) == {BYTES}  # a tree skips what lies under p/a
    assert _orders_of("p/a/manifest.jso", ["p/a/manifest.json", "p/b/x"], BOTH) == BOTH
    assert _orders_of("p/b", ["p/a"], BOTH) == frozenset()


def test_a_seek_past_a_folder_s_name_answers_nothing_under_it() -> None:
    """After ``p/a`` a tree's listing skips ``p/a/...``: those names are not answered."""
    assert _answered(["p/a/manifest.json"], [], False, "p/a", BOTH) == []
    assert _answered(["p/a/manifest.json"], [], False, "p/a", frozenset({BYTES})) == [False]


class ListingServer:
    """An in-memory S3 that lists in byte order (S3) or a tree's order (SeaweedFS).

    A tree lists each folder's entries in order, a folder's content where its name
    sorts, and ``StartAfter`` skips what lies under that name; HEADs are counted.
    """

    def __init__(self, keys: set[str], tree: bool) -> None:
        self.keys, self.heads, self.url = keys, 0, "s3://b"
        order = (lambda key: key.split("/")) if tree else (lambda key: key)
        self.ordered = sorted(keys, key=order)
        self.after = lambda key, start: (
            order(key) > order(start) and not (tree and key.startswith(start + "/"))
        )

    def list_objects_v2(self, Prefix: str, StartAfter: str, MaxKeys: int, **_: Any) -> Any:
        page = [k for k in self.ordered if k.startswith(Prefix) and self.after(k, StartAfter)]
        listed = [{"Key": key} for key in page[:MaxKeys]]
        return {"Contents": listed, "IsTruncated": len(page) > MaxKeys}

    def has_manifest(self, location: str) -> bool:
        self.heads += 1
        return location.removeprefix("s3://b/") + "/manifest.json" in self.keys

    def _client(self) -> Any:
        return self

    def _retried(self, action: Any, what: str) -> Any:
        return action()

    def _translated(self, doing: str, bucket: str) -> Any:
        return contextlib.nullcontext()


@pytest.mark.parametrize("tree", [False, True], ids=["bytes", "tree"])
@pytest.mark.parametrize("seed", range(40))
def test_seeking_answers_truly_in_either_order(
    tree: bool, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random folders whose names share starts and differ by ``-``, ``.``, ``/``: all right."""
    monkeypatch.setattr(s3_manifests, "PAGE", 7)
    monkeypatch.setattr(s3_manifests, "SPARSE_TARGETS", 0)  # list on, however few a page answers
    rng = random.Random(seed)
    folders = {
        "/".join("".join(rng.choices("a-./0", k=rng.randint(1, 3))).strip("/") or "a"
                 for _ in range(rng.randint(1, 3)))
        for _ in range(60)
    }  # fmt: skip
    keys = {f"{folder}/{name}" for folder in folders for name in ("key.json", "units.csv")}
    keys |= {f"{folder}/manifest.json" for folder in folders if rng.random() < 0.7}
    server = ListingServer(keys, tree)
    locations = [f"s3://b/{folder}" for folder in sorted(folders)]
    answers = s3_manifests.find_manifests(cast(Any, server), locations, in_flight=2)
    heads = server.heads
    assert answers == {location: server.has_manifest(location) for location in locations}
    if not tree:
        assert heads == 0  # in S3's order, seeking always answers the next target


def test_dense_folders_list_alike_in_either_order() -> None:
    """Job folders of equal-length names (as the store makes them): no HEAD in a tree either."""
    folders = [f"p/{hashlib.sha256(str(n).encode()).hexdigest()}/a" for n in range(500)]
    keys = {f"{folder}/{name}" for folder in folders for name in ("key.json", "manifest.json")}
    for tree in (False, True):
        server = ListingServer(keys, tree)
        answers = s3_manifests.find_manifests(cast(Any, server), [f"s3://b/{f}" for f in folders])
        assert set(answers.values()) == {True}
        assert server.heads == 0
