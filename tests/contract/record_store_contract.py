"""The contract every record store meets, run unchanged against each backend.

A backend binds it by subclassing :class:`RecordStoreContract` in a ``test_*.py``
module and providing one fixture, ``store``: a fresh, empty, writable store, closed
after the test. A backend opened with credentials also overrides ``store_secrets``
with them, so the test of ``display_url`` can check they never show.

The expected query semantics are those of :meth:`RecordQuery.matches`, the reference.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import time
from collections.abc import Iterable
from typing import Any

import pytest

from analysis_wrapper.errors import RecordExistsError
from analysis_wrapper.stores.base import Record, RecordQuery, RecordStore
from analysis_wrapper.stores.claims import Claim, Owner

_NO_PARAMETERS = object()

CLIENT_MODULES = (b"pymongo", b"botocore", b"boto3", b"requests", b"sqlite3", b"_thread")
"""Names a pickled store must not mention: it carries no client, connection or lock."""


def key_of(name: object) -> str:
    """Return a realistic key (64 hex digits) derived from ``name``."""
    return hashlib.sha256(str(name).encode()).hexdigest()


def make_record(key: str, parameters: Any = _NO_PARAMETERS, **extra: Any) -> Record:
    """Return a Metadata-shaped record; ``parameters`` go where the runner puts them."""
    record: Record = {
        "_id": key,
        "name": key,
        "location": f"file:///results/{key}",
        "object_type": "Metadata",
    }
    if parameters is not _NO_PARAMETERS:
        record["processing"] = {
            "data_processes": [
                {
                    "process_type": "Analysis",
                    "stage": "Analysis",
                    "code": {
                        "url": "https://github.com/example/analysis",
                        "version": "0" * 40,
                        "parameters": parameters,
                    },
                    "output_parameters": {"units_passing": 3},
                }
            ]
        }
    record.update(extra)
    return record


def strict(value: Any) -> str:
    """Return JSON text that tells ``1`` from ``1.0`` and ``True`` from ``1``."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)


def ids(records: Iterable[Record]) -> list[str]:
    """Return the ``_id`` of each record, in order."""
    return [record["_id"] for record in records]


def put_in_order(store: RecordStore, records: Iterable[Record]) -> list[Record]:
    """Put ``records`` one after the other, far enough apart in time to order them."""
    written = []
    for record in records:
        store.put(record)
        written.append(record)
        time.sleep(0.01)
    return written


def with_inputs(record: Record, urls: list[str]) -> Record:
    """Give ``record`` (made with parameters) ``code.input_data`` assets at ``urls``."""
    code = record["processing"]["data_processes"][0]["code"]
    code["input_data"] = [{"url": url, "name": url.rsplit("/", 1)[-1]} for url in urls]
    return record


def record_urls(record: Record) -> list[str]:
    """The input URLs of a record made by :func:`with_inputs`."""
    return [
        asset["url"] for asset in record["processing"]["data_processes"][0]["code"]["input_data"]
    ]


def find_ids(store: RecordStore, **parameters: Any) -> list[str]:
    """Return the ids :meth:`RecordStore.find` gives for ``parameters``."""
    return ids(store.find(RecordQuery(parameters=parameters)))


_PASSWORD_IN_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^@/\s]*:[^@/\s*]+@")


class RecordStoreContract:
    """Behaviour every :class:`RecordStore` backend must show."""

    @pytest.fixture
    def store(self) -> RecordStore:
        """A fresh, empty, writable store, closed after the test; each backend overrides it."""
        raise NotImplementedError("bind the contract: override the `store` fixture")

    @pytest.fixture
    def store_secrets(self) -> list[str]:
        """Credentials the store was opened with, which must never be shown."""
        return []

    # --- get, get_many, put ------------------------------------------------------

    def test_get_missing_returns_none(self, store: RecordStore) -> None:
        """Getting a key that was never stored gives None."""
        assert store.get(key_of("missing")) is None

    def test_put_then_get_round_trips_whole_document(self, store: RecordStore) -> None:
        """A stored document comes back unchanged, types and all."""
        key = key_of("round trip")
        record = make_record(
            key,
            {"cutoff": 0.5, "count": 3, "flag": True, "nothing": None, "whole": 1.0},
            subject={
                "name": "Souris µ-12 — 日本語 🐭",
                "weights_g": [21.5, 22.0, -0.0625, 1e-300, 1.7976931348623157e308],
                "counts": [0, -7, 2**53, 1, True, False, None],
                "nested": {"deeper": {"deepest": {"ok": False, "list": [[], {}, [{}]]}}},
                "clé unicode": "valeur",
                "empty_string": "",
                "quote\"and'backslash\\": 'text "with" quotes\nand a newline\t',
            },
        )
        store.put(record)
        got = store.get(key)
        assert got is not None
        assert strict(got) == strict(record)
        assert type(got["subject"]["weights_g"][1]) is float
        assert got["subject"]["counts"][4] is True

    def test_put_does_not_change_the_callers_record(self, store: RecordStore) -> None:
        """Put leaves the dictionary it was given as it was."""
        record = make_record(key_of("caller"), {"a": 1})
        before = strict(record)
        store.put(record)
        assert strict(record) == before

    def test_get_many_returns_only_existing_keys(self, store: RecordStore) -> None:
        """get_many maps each stored key among those asked to its record, and nothing else."""
        a, b, c = (make_record(key_of(n), {"n": n}) for n in range(3))
        for record in (a, b, c):
            store.put(record)
        found = store.get_many([a["_id"], key_of("missing"), c["_id"]])
        assert sorted(found) == sorted([a["_id"], c["_id"]])
        assert strict(found[a["_id"]]) == strict(a)
        assert strict(found[c["_id"]]) == strict(c)

    def test_get_many_handles_duplicate_keys(self, store: RecordStore) -> None:
        """A key asked for several times is returned once."""
        a, b = make_record(key_of("a")), make_record(key_of("b"))
        store.put(a)
        store.put(b)
        found = store.get_many([a["_id"], a["_id"], b["_id"], a["_id"], key_of("x"), key_of("x")])
        assert sorted(found) == sorted([a["_id"], b["_id"]])

    def test_get_many_of_no_keys_is_empty(self, store: RecordStore) -> None:
        """get_many of an empty list gives an empty mapping."""
        store.put(make_record(key_of("a")))
        assert store.get_many([]) == {}

    def test_get_many_accepts_a_one_shot_iterator(self, store: RecordStore) -> None:
        """get_many consumes a generator of keys correctly (it can be read only once)."""
        keys = [key_of(n) for n in range(5)]
        for key in keys:
            store.put(make_record(key))
        found = store.get_many(key for key in keys)
        assert sorted(found) == sorted(keys)

    def test_get_many_with_more_than_a_thousand_keys(self, store: RecordStore) -> None:
        """get_many finds every one of 1,050 stored records among 1,400 keys (batching)."""
        stored = [key_of(f"stored {n}") for n in range(1050)]
        for n, key in enumerate(stored):
            store.put(make_record(key, {"n": n}))
        missing = [key_of(f"missing {n}") for n in range(350)]
        # Interleave missing and stored keys so every batch holds both kinds.
        pairs = zip(stored[: len(missing)], missing, strict=True)
        asked = [key for pair in pairs for key in pair] + stored[len(missing) :]
        found = store.get_many(asked)
        assert sorted(found) == sorted(stored)
        assert all(found[key]["_id"] == key for key in stored)
        assert found[stored[-1]]["processing"]["data_processes"][0]["code"]["parameters"] == {
            "n": 1049
        }

    def test_put_existing_id_raises_and_keeps_original(self, store: RecordStore) -> None:
        """A second put of the same _id raises RecordExistsError; the first record stays."""
        key = key_of("once")
        original = make_record(key, {"version": "first"})
        store.put(original)
        with pytest.raises(RecordExistsError):
            store.put(make_record(key, {"version": "second"}))
        got = store.get(key)
        assert got is not None
        assert strict(got) == strict(original)
        assert find_ids(store) == [key]

    def test_put_replace_overwrites(self, store: RecordStore) -> None:
        """put(replace=True) replaces the stored record as a whole."""
        key = key_of("forced")
        store.put(make_record(key, {"version": "first"}, only_in_first=True))
        newer = make_record(key, {"version": "second"})
        store.put(newer, replace=True)
        got = store.get(key)
        assert got is not None
        assert strict(got) == strict(newer)
        assert "only_in_first" not in got
        assert find_ids(store) == [key]

    def test_put_replace_of_a_new_key_inserts(self, store: RecordStore) -> None:
        """put(replace=True) of a key not yet stored stores it."""
        record = make_record(key_of("new"), {"a": 1})
        store.put(record, replace=True)
        got = store.get(record["_id"])
        assert got is not None
        assert strict(got) == strict(record)

    # --- find ----------------------------------------------------------------------

    def test_find_on_an_empty_store_is_empty(self, store: RecordStore) -> None:
        """A store with no records finds nothing."""
        assert store.find(RecordQuery()) == []
        assert store.find(RecordQuery(parameters={"a": 1})) == []

    def test_find_empty_query_returns_all(self, store: RecordStore) -> None:
        """An empty query returns every record, whole."""
        records = put_in_order(store, [make_record(key_of(n), {"n": n}) for n in range(4)])
        found = store.find(RecordQuery())
        assert [strict(r) for r in found] == [strict(r) for r in records]

    def test_find_matches_string_parameter(self, store: RecordStore) -> None:
        """A string condition returns exactly the records whose parameter equals it, whole."""
        wanted = make_record(key_of(1), {"tag": "isi_0.5", "n": 1})
        store.put(wanted)
        store.put(make_record(key_of(2), {"tag": "isi_0.1", "n": 2}))
        store.put(make_record(key_of(3), {"tag": "ISI_0.5", "n": 3}))
        store.put(make_record(key_of(4), {"tag": "isi_0.5 ", "n": 4}))
        found = store.find(RecordQuery(parameters={"tag": "isi_0.5"}))
        assert [strict(r) for r in found] == [strict(wanted)]

    def test_find_string_does_not_match_number(self, store: RecordStore) -> None:
        """The string "1" and the number 1 do not match each other."""
        store.put(make_record(key_of("text"), {"x": "1"}))
        store.put(make_record(key_of("number"), {"x": 1}))
        assert find_ids(store, x="1") == [key_of("text")]
        assert find_ids(store, x=1) == [key_of("number")]

    @pytest.mark.parametrize(
        ("stored", "wanted"),
        [(1, 1.0), (1.0, 1), (0.5, 0.5), (-3, -3), (2**40, float(2**40)), (0, 0.0)],
    )
    def test_find_numbers_compare_by_value(
        self, store: RecordStore, stored: float, wanted: float
    ) -> None:
        """A number matches an equal number whether stored or asked as int or float."""
        store.put(make_record(key_of("equal"), {"x": stored}))
        store.put(make_record(key_of("other"), {"x": stored + 1}))
        assert find_ids(store, x=wanted) == [key_of("equal")]

    def test_find_bool_does_not_match_number(self, store: RecordStore) -> None:
        """True matches only True, never 1; False matches only False, never 0."""
        store.put(make_record(key_of(True), {"flag": True}))
        store.put(make_record(key_of(1), {"flag": 1}))
        store.put(make_record(key_of(1.0), {"flag": 1.0}))
        store.put(make_record(key_of(False), {"flag": False}))
        store.put(make_record(key_of(0), {"flag": 0}))
        assert find_ids(store, flag=True) == [key_of(True)]
        assert find_ids(store, flag=False) == [key_of(False)]
        assert sorted(find_ids(store, flag=1)) == sorted([key_of(1), key_of(1.0)])
        assert find_ids(store, flag=0) == [key_of(0)]

    def test_find_none_matches_only_null(self, store: RecordStore) -> None:
        """None matches a stored null, not 0, "", False, [] or an absent parameter."""
        store.put(make_record(key_of("null"), {"x": None}))
        others: tuple[Any, ...] = (0, "", False, [], {}, "null")
        for other in others:
            store.put(make_record(key_of(repr(other)), {"x": other}))
        store.put(make_record(key_of("absent"), {"y": None}))
        assert find_ids(store, x=None) == [key_of("null")]

    def test_find_matches_list_values_exactly(self, store: RecordStore) -> None:
        """A list matches an equal list only: same items, same order, same length."""
        store.put(make_record(key_of("same"), {"x": [1, "a", None]}))
        store.put(make_record(key_of("reversed"), {"x": [None, "a", 1]}))
        store.put(make_record(key_of("longer"), {"x": [1, "a", None, 2]}))
        store.put(make_record(key_of("shorter"), {"x": [1, "a"]}))
        store.put(make_record(key_of("float"), {"x": [1.0, "a", None]}))
        assert sorted(find_ids(store, x=[1, "a", None])) == sorted(
            [key_of("same"), key_of("float")]
        )
        assert find_ids(store, x=[]) == []

    def test_find_scalar_does_not_match_a_list_holding_it(self, store: RecordStore) -> None:
        """A scalar condition does not match a stored list that contains the scalar."""
        store.put(make_record(key_of("list"), {"x": [1, 2]}))
        store.put(make_record(key_of("one"), {"x": 1}))
        assert find_ids(store, x=1) == [key_of("one")]
        assert find_ids(store, x=[1, 2]) == [key_of("list")]

    def test_find_list_of_flags_does_not_match_list_of_numbers(self, store: RecordStore) -> None:
        """[True, False] and [1, 0] do not match each other, as True does not match 1."""
        store.put(make_record(key_of("flags"), {"x": [True, False]}))
        store.put(make_record(key_of("numbers"), {"x": [1, 0]}))
        assert find_ids(store, x=[True, False]) == [key_of("flags")]
        assert find_ids(store, x=[1, 0]) == [key_of("numbers")]

    def test_find_matches_dict_values_regardless_of_key_order(self, store: RecordStore) -> None:
        """A dict matches an equal dict whatever the key order, and not a larger one."""
        store.put(make_record(key_of("same"), {"x": {"a": 1, "b": [2, 3]}}))
        store.put(make_record(key_of("larger"), {"x": {"a": 1, "b": [2, 3], "c": 4}}))
        store.put(make_record(key_of("different"), {"x": {"a": 1, "b": [3, 2]}}))
        assert find_ids(store, x={"b": [2, 3], "a": 1}) == [key_of("same")]
        assert find_ids(store, x={"a": 1}) == []

    def test_find_requires_every_condition(self, store: RecordStore) -> None:
        """Several conditions combine with AND."""
        store.put(make_record(key_of("both"), {"x": 1, "y": "a", "z": True}))
        store.put(make_record(key_of("x only"), {"x": 1, "y": "b", "z": True}))
        store.put(make_record(key_of("y only"), {"x": 2, "y": "a", "z": True}))
        store.put(make_record(key_of("no z"), {"x": 1, "y": "a"}))
        assert find_ids(store, x=1, y="a", z=True) == [key_of("both")]
        assert sorted(find_ids(store, x=1, y="a")) == sorted([key_of("both"), key_of("no z")])

    @pytest.mark.parametrize(
        "name",
        ["a.b", 'say "hi"', '"', "it's", "back\\slash", "$x", "[0]", "a b", "µ-naïve"],
    )
    def test_find_parameter_names_with_punctuation(self, store: RecordStore, name: str) -> None:
        """A parameter name with dots, quotes, backslashes or brackets is matched literally."""
        store.put(make_record(key_of("wanted"), {name: "v", "other": 1}))
        store.put(make_record(key_of("unwanted"), {name: "w", "other": 1}))
        store.put(make_record(key_of("absent"), {"other": 1}))
        assert find_ids(store, **{name: "v"}) == [key_of("wanted")]
        assert find_ids(store, **{name: "v", "other": 1}) == [key_of("wanted")]

    def test_find_dotted_name_is_not_a_path(self, store: RecordStore) -> None:
        """A name "a.b" matches the parameter named "a.b", not a["b"]."""
        store.put(make_record(key_of("flat"), {"a.b": 1}))
        store.put(make_record(key_of("nested"), {"a": {"b": 2}}))
        assert find_ids(store, **{"a.b": 1}) == [key_of("flat")]
        assert find_ids(store, **{"a.b": 2}) == []

    def test_find_missing_parameter_matches_nothing(self, store: RecordStore) -> None:
        """A condition on a parameter no record has matches nothing, even with None."""
        store.put(make_record(key_of("a"), {"x": 1}))
        store.put(make_record(key_of("b"), {}))
        assert find_ids(store, absent=1) == []
        assert find_ids(store, absent=None) == []
        assert find_ids(store, x=1, absent="x") == []

    def test_find_returns_oldest_first(self, store: RecordStore) -> None:
        """Found records come in the order they were written, not by key."""
        keys = sorted((key_of(n) for n in range(5)), reverse=True)
        put_in_order(store, [make_record(key, {"even": n % 2 == 0}) for n, key in enumerate(keys)])
        assert find_ids(store) == keys
        assert find_ids(store, even=True) == [keys[0], keys[2], keys[4]]

    def test_find_survives_records_without_processing(self, store: RecordStore) -> None:
        """Records with no, empty or odd processing are listed by an empty query, never matched."""
        odd = [
            make_record(key_of("no processing")),
            make_record(key_of("empty processing"), processing={}),
            make_record(key_of("no processes"), processing={"data_processes": []}),
            make_record(key_of("null process"), processing={"data_processes": [None]}),
            make_record(key_of("no code"), processing={"data_processes": [{"name": "x"}]}),
            make_record(key_of("null code"), processing={"data_processes": [{"code": None}]}),
            make_record(key_of("list parameters"), [1, 2]),
            make_record(key_of("string parameters"), "x=1"),
            make_record(key_of("null parameters"), None),
            make_record(key_of("string processing"), processing="none"),
        ]
        good = make_record(key_of("good"), {"x": 1})
        put_in_order(store, [*odd, good])
        assert find_ids(store) == [*ids(odd), good["_id"]]
        assert find_ids(store, x=1) == [good["_id"]]
        assert find_ids(store, x=None) == []

    # --- find_by_inputs --------------------------------------------------------------

    def test_find_by_inputs_returns_records_with_exactly_that_input_set(
        self, store: RecordStore
    ) -> None:
        """Only records whose input URL set equals the asked set qualify, in write order."""
        a, b, c = "s3://bucket/a", "s3://bucket/b", "s3://bucket/c"
        first = with_inputs(make_record(key_of("ab 1"), {"x": 1}), [b, a])
        second = with_inputs(make_record(key_of("ab 2"), {"x": 2}), [a, b])
        only_a = with_inputs(make_record(key_of("a"), {"x": 1}), [a])
        abc = with_inputs(make_record(key_of("abc"), {"x": 1}), [a, b, c])
        put_in_order(store, [first, only_a, second, abc, make_record(key_of("none"), {"x": 1})])
        found = store.find_by_inputs([[b, a, a], [c]])
        assert {key: ids(records) for key, records in found.items()} == {
            (a, b): [first["_id"], second["_id"]],
            (c,): [],
        }
        assert found[(a, b)][0] == first

    def test_find_by_inputs_batches_many_sets(self, store: RecordStore) -> None:
        """Hundreds of input sets are answered at once, each with its own record."""
        records = [
            with_inputs(make_record(key_of(n), {"n": n}), [f"s3://bucket/session-{n:04d}"])
            for n in range(600)
        ]
        for record in records:
            store.put(record)
        found = store.find_by_inputs([record_urls(record) for record in records])
        assert len(found) == len(records)
        assert all(ids(found[(record_urls(r)[0],)]) == [r["_id"]] for r in records)

    def test_find_by_inputs_follows_a_replace(self, store: RecordStore) -> None:
        """A record replaced with other inputs is found under its new inputs only."""
        old = with_inputs(make_record(key_of("k"), {"x": 1}), ["s3://bucket/old"])
        store.put(old)
        new = with_inputs(make_record(key_of("k"), {"x": 1}), ["s3://bucket/new"])
        store.put(new, replace=True)
        found = store.find_by_inputs([["s3://bucket/old"], ["s3://bucket/new"]])
        assert found == {("s3://bucket/old",): [], ("s3://bucket/new",): [new]}

    def test_find_by_inputs_of_nothing_is_empty(self, store: RecordStore) -> None:
        """No sets, or only empty sets, ask nothing."""
        store.put(with_inputs(make_record(key_of("k"), {"x": 1}), ["s3://bucket/a"]))
        assert store.find_by_inputs([]) == {}
        assert store.find_by_inputs([[]]) == {}

    # --- display -------------------------------------------------------------------

    def test_display_url_contains_no_password(
        self, store: RecordStore, store_secrets: list[str]
    ) -> None:
        """display_url names the store without a password or any secret it was opened with."""
        url = store.display_url
        assert isinstance(url, str)
        assert url.strip()
        assert not _PASSWORD_IN_URL.search(url), url
        for secret in store_secrets:
            assert secret not in url

    # --- pickling (a process pool or Dask worker gets a copy) -----------------------

    def test_store_pickled_after_use_works_in_the_copy(self, store: RecordStore) -> None:
        """A used store (client made, lock taken) pickles without them; the copy works.

        The copy reads what the original wrote, writes records and claims the
        original then sees, and carries no client, connection or lock.
        """
        first = make_record(key_of("before pickling"), {"x": 1})
        store.put(first)
        assert store.get(first["_id"]) == first
        data = pickle.dumps(store)
        for name in CLIENT_MODULES:
            assert name not in data, name
        copy: RecordStore = pickle.loads(data)
        try:
            assert copy.display_url == store.display_url
            assert copy.get(first["_id"]) == first
            second = make_record(key_of("by the copy"), {"x": 2})
            copy.put(second)
            copy.put({**second, "name": "replaced"}, replace=True)
            claim = Claim(key_of("claimed by the copy"), Owner("h", 1, "r"), 1, "running", 1, 1, 9)
            assert copy.insert_claim(claim)
            assert copy.get_claims([claim.key]) == {claim.key: claim}
            assert copy.get_many([first["_id"], second["_id"]]) == {
                first["_id"]: first,
                second["_id"]: {**second, "name": "replaced"},
            }
            again: RecordStore = pickle.loads(pickle.dumps(copy))  # a copy of a used copy
            assert again.get(second["_id"]) == {**second, "name": "replaced"}
            again.close()
        finally:
            copy.close()
        assert store.get(second["_id"]) == {**second, "name": "replaced"}
        assert store.get_claims([claim.key]) == {claim.key: claim}
