"""The record store contract bound to the AIND DocDB REST API, plus what only it does.

Every test talks to the HTTPS stand-in (tests/standins/docdb_api.py) through the real
aind-data-access-api client over real TLS; the stand-in keeps the records in SecantusDB.
Below the contract: pagination past the server's page cap, URL-sized batches,
signatures and credentials, the payload limit, retries, TLS, and configuration.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from analysis_wrapper.common.retry import RetryPolicy
from analysis_wrapper.errors import ConfigError, FencedOutError, RecordExistsError, StoreError
from analysis_wrapper.stores.base import RecordQuery
from analysis_wrapper.stores.claims import Claim, Claims, Failure, Owner
from analysis_wrapper.stores.docdb_api.session import TimeoutSession
from analysis_wrapper.stores.docdb_api.store import DocDbApiRecordStore
from contract.claim_store_contract import (
    ClaimStoreContract,
    FakeClock,
    record_by,
    sample_claim,
    worker,
)
from contract.record_store_contract import (
    RecordStoreContract,
    ids,
    key_of,
    make_record,
    strict,
)
from servers import free_port
from standins.docdb_api import (
    MAX_PAYLOAD_BYTES,
    MAX_URL_CHARS,
    DocDbApiStandIn,
    make_certificate,
)
from standins.docdb_fixtures import ACCESS_KEY, DATABASE, SECRET_KEY, fresh_collection

FAST = RetryPolicy(attempts=3, base_delay_s=0.001, max_delay_s=0.002)
WRONG_SECRET = "wrong-secret-Zq8vX3Lk0p"
SESSION_TOKEN = "session-token-Jw4nR8tQ2m"


class Waits(list[float]):
    """Records the waits a store asked for instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def open_store(
    standin: DocDbApiStandIn, collection: str | None = None, **options: Any
) -> DocDbApiRecordStore:
    """A store on a collection of the stand-in (a fresh one unless named)."""
    return DocDbApiRecordStore(
        standin.host, DATABASE, collection or fresh_collection(), "v1", **options
    )


def backing(standin: DocDbApiStandIn, store: DocDbApiRecordStore) -> Any:
    """The MongoDB collection behind ``store``, read directly."""
    return standin.mongo[DATABASE][store.collection]


def seed(standin: DocDbApiStandIn, store: DocDbApiRecordStore, count: int) -> list[str]:
    """Insert ``count`` records straight into the backing collection, in order."""
    records = [make_record(key_of(f"seed {n}"), {"n": n, "tenth": n % 10}) for n in range(count)]
    backing(standin, store).insert_many(records)
    return ids(records)


def assert_clean(message: str, *secrets: str) -> None:
    """No secret, and no key id, appears in ``message``."""
    for secret in (SECRET_KEY, ACCESS_KEY, WRONG_SECRET, SESSION_TOKEN, *secrets):
        assert not secret or secret not in message


# --- the contract, bound -------------------------------------------------------------


class TestDocDbApiRecordStore(RecordStoreContract):
    """The record store contract through the REST API stand-in, over HTTPS."""

    @pytest.fixture
    def store(
        self, docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
    ) -> Iterator[DocDbApiRecordStore]:
        store = open_store(docdb_api)
        yield store
        store.close()

    @pytest.fixture
    def store_secrets(self) -> list[str]:
        return [SECRET_KEY, ACCESS_KEY]


class TestDocDbApiClaimStore(ClaimStoreContract):
    """The claim store contract through the stand-in, each worker its own store.

    The takeover is check, write, verify rather than a guaranteed compare-and-set (see
    analysis_wrapper.stores.docdb_api.claims); the tests under "claims" below show what
    it gives.
    """

    atomic_replace = False

    @pytest.fixture
    def claim_stores(
        self, docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
    ) -> Iterator[Callable[[], DocDbApiRecordStore]]:
        collection = fresh_collection()
        opened: list[DocDbApiRecordStore] = []

        def open_handle() -> DocDbApiRecordStore:
            opened.append(open_store(docdb_api, collection))
            return opened[-1]

        yield open_handle
        for store in opened:
            store.close()


# --- pagination and batching ---------------------------------------------------------


def test_find_pages_through_the_server_cap_in_insertion_order(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """Find over 1,200 records with a 500-record page cap returns all, oldest first."""
    store = open_store(docdb_api)
    keys = seed(docdb_api, store, 1200)
    found = store.find(RecordQuery())
    assert ids(found) == keys
    pages = docdb_api.calls_to("find")
    assert [call.status for call in pages] == [200] * 4  # 500 + 500 + 200, then empty
    store.close()


def test_find_filters_on_the_server(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """A scalar condition is sent to the server: 120 of 1,200 records come in one page."""
    store = open_store(docdb_api)
    keys = seed(docdb_api, store, 1200)
    found = store.find(RecordQuery(parameters={"tenth": 3}))
    assert ids(found) == keys[3::10]
    assert len(docdb_api.calls_to("find")) == 2  # one page, then the empty one
    store.close()


def test_get_many_batches_fit_in_a_url_and_page_through_a_small_cap(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """Get_many of 1,200 stored among 1,300 keys finds all, each URL under Gateway's limit."""
    store = open_store(docdb_api)
    keys = seed(docdb_api, store, 1200)
    docdb_api.page_cap = 30  # smaller than a batch: each batch needs several pages
    asked = [key_of(f"absent {n}") for n in range(100)] + keys[::-1]
    found = store.get_many(asked)
    assert sorted(found) == sorted(keys)
    assert all(found[key]["_id"] == key for key in keys)
    calls = docdb_api.calls_to("find")
    assert all(call.status == 200 for call in calls)
    assert max(call.url_length for call in calls) <= MAX_URL_CHARS
    assert len(calls) >= 1200 / 30  # no page held more than the cap
    store.close()


def test_get_many_with_every_key_present_needs_one_request_per_batch(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """When a batch is all found in one page, no extra (empty) page is asked for."""
    store = open_store(docdb_api)
    keys = seed(docdb_api, store, 50)
    assert sorted(store.get_many(keys)) == sorted(keys)
    assert len(docdb_api.calls_to("find")) == 1
    store.close()


# --- what is stored ---------------------------------------------------------------------


def test_stored_document_is_the_record_and_nothing_else(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """The backing collection holds exactly the record: no bookkeeping field is added."""
    store = open_store(docdb_api)
    record = make_record(key_of("plain"), {"a": 1.0, "b": [1, 2]})
    store.put(record)
    newer = make_record(key_of("plain"), {"a": 2})
    store.put(newer, replace=True)
    (document,) = backing(docdb_api, store).find({})
    assert strict(document) == strict(newer)
    store.close()


def test_writes_are_signed_and_reads_are_not(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """Writes (insert_one, update_one) carry a verified SigV4 signature; find carries none."""
    store = open_store(docdb_api)
    store.put(make_record(key_of("a")))
    store.put(make_record(key_of("a"), {"x": 1}), replace=True)
    assert store.get(key_of("a")) is not None
    signed = {call.action: call.signed for call in docdb_api.calls}
    assert signed == {"insert_one": True, "update_one": True, "find": False}
    store.close()


# --- credentials and signatures -------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("AWS_SECRET_ACCESS_KEY", WRONG_SECRET, "signature"),
        ("AWS_ACCESS_KEY_ID", "AKIANOTKNOWN00000000", "security token"),
        ("AWS_DEFAULT_REGION", "eu-central-1", "region"),
    ],
)
def test_wrong_credentials_are_one_clear_error(
    docdb_api: DocDbApiStandIn,
    docdb_api_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    value: str,
    said: str,
) -> None:
    """A refused signature is a StoreError naming the store and the remedy, at once."""
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.setenv(variable, value)
    caplog.set_level(logging.DEBUG)
    store = open_store(docdb_api, sleep=Waits())
    with pytest.raises(StoreError) as raised:
        store.put(make_record(key_of("a")))
    message = str(raised.value)
    assert "\n" not in message
    assert store.display_url in message
    assert "HTTP 403" in message
    assert said in message
    assert "AWS_SECRET_ACCESS_KEY" in message
    assert raised.value.transient is False  # a job is not tried again with these either
    shown_value = "" if variable == "AWS_DEFAULT_REGION" else value
    assert_clean(message, shown_value)
    assert_clean(caplog.text, shown_value)
    assert [call.status for call in docdb_api.calls_to("insert_one")] == [403]  # no retry
    assert backing(docdb_api, store).count_documents({}) == 0
    store.close()


def test_missing_credentials_fail_before_any_request(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no AWS credentials a write is refused before it is sent, saying what to set."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = open_store(docdb_api)
    with pytest.raises(StoreError, match=r"none were found.*AWS_ACCESS_KEY_ID") as raised:
        store.put(make_record(key_of("a")))
    assert store.display_url in str(raised.value)
    assert raised.value.transient is False
    assert docdb_api.calls == []
    store.close()


def test_missing_region_fails_before_any_request(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With credentials but no region a write is refused before it is sent."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    store = open_store(docdb_api)
    with pytest.raises(StoreError, match="AWS_DEFAULT_REGION"):
        store.put(make_record(key_of("a")))
    assert docdb_api.calls == []
    store.close()


def test_reads_need_no_credentials(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no AWS credentials at all, get, get_many and find still work."""
    writer = open_store(docdb_api)
    record = make_record(key_of("a"), {"x": 1})
    writer.put(record)
    writer.close()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name)
    reader = open_store(docdb_api, writer.collection, read_only=True)
    assert strict(reader.get(key_of("a"))) == strict(record)
    assert list(reader.get_many([key_of("a"), key_of("b")])) == [key_of("a")]
    assert ids(reader.find(RecordQuery(parameters={"x": 1}))) == [key_of("a")]
    reader.close()


def test_read_only_store_never_writes(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """A put on a read-only store is a StoreError and sends nothing."""
    store = open_store(docdb_api, read_only=True)
    for replace in (False, True):
        with pytest.raises(StoreError, match="read-only"):
            store.put(make_record(key_of("a")), replace=replace)
    assert docdb_api.calls == []
    store.close()


# --- limits -----------------------------------------------------------------------------


def test_record_over_the_payload_limit_is_refused_and_not_stored(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """A record over 10 MiB is one StoreError naming the size and the remedy; nothing stored."""
    store = open_store(docdb_api)
    record = make_record(key_of("big"), {"x": 1}, blob="x" * (MAX_PAYLOAD_BYTES + 1000))
    for replace in (False, True):
        with pytest.raises(StoreError, match=r"HTTP 413.*10\.5 MB.*result files") as raised:
            store.put(record, replace=replace)
        assert store.display_url in str(raised.value)
        assert raised.value.transient is False
    assert [c.status for c in docdb_api.calls if c.method == "POST"] == [413, 413]
    assert store.get(key_of("big")) is None
    assert backing(docdb_api, store).count_documents({}) == 0
    store.close()


# --- transient failures and retries ----------------------------------------------------


def test_unreachable_host_is_retried_then_one_clear_error(docdb_api_env: dict[str, str]) -> None:
    """A closed port: a bounded number of attempts, then a StoreError naming the store."""
    waits = Waits()
    store = DocDbApiRecordStore(
        f"127.0.0.1:{free_port()}", DATABASE, "records", "v1", retry_policy=FAST, sleep=waits
    )
    with pytest.raises(StoreError, match=r"cannot connect \(3 attempts\).*DOCDB_HOST") as raised:
        store.get(key_of("a"))
    assert store.display_url in str(raised.value)
    assert raised.value.transient is True
    assert len(waits) == 2
    with pytest.raises(StoreError, match="cannot connect") as raised:
        store.put(make_record(key_of("a")))
    assert raised.value.transient is True
    assert len(waits) == 4
    store.close()


def test_server_errors_are_retried_until_the_request_succeeds(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """Two 503 answers, then a good one: the read succeeds after two waits."""
    waits = Waits()
    store = open_store(docdb_api, retry_policy=FAST, sleep=waits)
    store.put(make_record(key_of("a")))
    docdb_api.fail("find", 503, times=2)
    assert store.get(key_of("a")) is not None
    assert [call.status for call in docdb_api.calls_to("find")] == [503, 503, 200]
    assert len(waits) == 2
    store.close()


def test_persistent_server_errors_fail_after_the_last_attempt(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """A 502 that never clears fails after the policy's attempts, saying so."""
    store = open_store(docdb_api, retry_policy=FAST, sleep=Waits())
    docdb_api.fail("insert_one", 502, times=10)
    with pytest.raises(StoreError, match=r"HTTP 502.*after 3 attempts") as raised:
        store.put(make_record(key_of("a")))
    assert store.display_url in str(raised.value)
    assert raised.value.transient is True
    assert len(docdb_api.calls_to("insert_one")) == 3
    store.close()


@pytest.mark.parametrize(
    ("status", "transient"),
    [(429, True), (500, True), (503, True), (504, True), (400, False), (401, False), (404, False)],
)
def test_which_http_answers_are_transient_store_errors(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str], status: int, transient: bool
) -> None:
    """Throttling and 5xx that outlast the retries are transient (a job may try again)."""
    store = open_store(docdb_api, retry_policy=FAST, sleep=Waits())
    docdb_api.fail("find", status, times=FAST.attempts)
    with pytest.raises(StoreError, match=f"HTTP {status}") as raised:
        store.get(key_of("a"))
    assert raised.value.transient is transient
    assert len(docdb_api.calls_to("find")) == (FAST.attempts if transient else 1)
    store.close()


def test_insert_whose_reply_was_lost_is_not_a_duplicate(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """The insert lands but its reply is a 502: the retry's 409 is recognised as our own."""
    store = open_store(docdb_api, retry_policy=FAST, sleep=Waits())
    record = make_record(key_of("a"), {"x": 1})
    docdb_api.fail("insert_one", 502, after_write=True)
    store.put(record)
    assert [call.status for call in docdb_api.calls_to("insert_one")] == [502, 409]
    assert strict(store.get(key_of("a"))) == strict(record)
    store.close()


def test_lost_reply_then_another_writers_record_is_a_duplicate(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """After a retried insert, a 409 for a different stored record is RecordExistsError."""
    store = open_store(docdb_api, retry_policy=FAST, sleep=Waits())
    backing(docdb_api, store).insert_one(make_record(key_of("a"), {"writer": "other"}))
    docdb_api.fail("insert_one", 503)
    with pytest.raises(RecordExistsError):
        store.put(make_record(key_of("a"), {"writer": "me"}))
    assert [call.status for call in docdb_api.calls_to("insert_one")] == [503, 409]
    store.close()


def test_duplicate_reported_with_another_status_is_still_a_duplicate(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """A gateway that answers a duplicate insert with 500 and MongoDB's E11000 text."""
    store = open_store(docdb_api, retry_policy=FAST, sleep=Waits())
    backing(docdb_api, store).insert_one(make_record(key_of("a")))
    docdb_api.fail("insert_one", 500, message="E11000 duplicate key error collection: x")
    with pytest.raises(RecordExistsError, match=key_of("a")):
        store.put(make_record(key_of("a"), {"x": 1}))
    assert [call.status for call in docdb_api.calls_to("insert_one")] == [500]
    store.close()


def test_record_with_no_json_form_is_refused_before_sending(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """A NaN in a record is a StoreError naming the key; nothing is sent."""
    store = open_store(docdb_api)
    with pytest.raises(StoreError, match=f"{key_of('nan')}.*JSON") as raised:
        store.put(make_record(key_of("nan"), {"x": float("nan")}))
    assert raised.value.transient is False
    assert docdb_api.calls == []
    store.close()


# --- TLS and configuration --------------------------------------------------------------


def test_untrusted_certificate_fails_at_once_naming_the_remedy(
    docdb_api: DocDbApiStandIn,
    docdb_api_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A server certificate the CA bundle does not vouch for: no retry, REQUESTS_CA_BUNDLE."""
    cert, _ = make_certificate(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    waits = Waits()
    store = open_store(docdb_api, retry_policy=FAST, sleep=waits)
    with pytest.raises(StoreError, match=r"TLS certificate.*REQUESTS_CA_BUNDLE") as raised:
        store.get(key_of("a"))
    assert waits == []
    assert raised.value.transient is False
    store.close()


def test_construction_makes_no_request(docdb_api: DocDbApiStandIn) -> None:
    """Opening and closing a store sends nothing, even to a closed port."""
    store = open_store(docdb_api)
    store.close()
    DocDbApiRecordStore(f"127.0.0.1:{free_port()}", DATABASE, "records", "v2").close()
    assert docdb_api.calls == []


@pytest.mark.parametrize(
    ("arguments", "variable"),
    [
        (("https://docdb.example.org", "analysis", "records", "v1"), "DOCDB_HOST"),
        (("docdb.example.org/v1", "analysis", "records", "v1"), "DOCDB_HOST"),
        (("alice:s3cret-pw@docdb.example.org", "analysis", "records", "v1"), "DOCDB_HOST"),
        (("docdb.example.org", "analysis", "records/x", "v1"), "DOCDB_COLLECTION"),
        (("docdb.example.org", "my db", "records", "v1"), "DOCDB_DATABASE"),
        (("docdb.example.org", "analysis", "records", "1"), "DOCDB_VERSION"),
    ],
)
def test_values_that_cannot_form_the_url_are_config_errors(
    arguments: tuple[str, str, str, str], variable: str
) -> None:
    """A host with a scheme, path or credentials, or an odd name, is a ConfigError."""
    with pytest.raises(ConfigError, match=variable) as raised:
        DocDbApiRecordStore(*arguments)
    assert "s3cret-pw" not in str(raised.value)


def test_missing_client_package_is_a_config_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without aind-data-access-api installed, opening the store says what to install."""
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "aind_data_access_api" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError, match=r"pip install 'aind-analysis-wrapper\[docdb\]'"):
        DocDbApiRecordStore("api.example.org", "analysis", "results", "v1")


def test_display_url_is_the_collection_url() -> None:
    """display_url is https://host/version/database/collection."""
    store = DocDbApiRecordStore("api.example.org:8443/", "analysis", "results", "v2")
    assert store.display_url == "https://api.example.org:8443/v2/analysis/results"


# --- the stand-in itself, through aind-data-access-api's client -----------------------


def test_standin_serves_every_route_the_client_calls(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """Count, aggregate, bulk upsert, deletes, a read-only aggregate and Gateway's URL limit."""
    import requests
    from aind_data_access_api.document_db import MetadataDbClient

    collection = fresh_collection()
    client = MetadataDbClient(host=docdb_api.host, database=DATABASE, collection=collection)
    records = [make_record(key_of(n), {"n": n, "even": n % 2 == 0}) for n in range(6)]
    responses = client.upsert_list_of_docdb_records(records)
    assert [response.status_code for response in responses] == [200]
    assert client._count_records({"processing.data_processes.code.parameters.even": True}) == {
        "total_record_count": 6,
        "filtered_record_count": 3,
    }
    even = client.aggregate_docdb_records(
        [
            {"$match": {"processing.data_processes.code.parameters.even": True}},
            {"$project": {"_id": 1}},
        ]
    )
    assert sorted(ids(even)) == sorted(ids(records[::2]))
    assert client.delete_one_record(key_of(0)).json()["n"] == 1
    assert client.delete_many_records([key_of(1), key_of(2)]).json()["n"] == 2
    assert ids(client.retrieve_docdb_records(projection={"_id": 1})) == ids(records[3:])
    with pytest.raises(requests.HTTPError) as refused:
        client.aggregate_docdb_records([{"$out": "elsewhere"}])
    assert refused.value.response.status_code == 400
    with pytest.raises(requests.HTTPError) as too_long:
        client.retrieve_docdb_records({"_id": {"$in": [key_of(n) for n in range(200)]}})
    assert too_long.value.response.status_code == 414
    assert [call.signed for call in docdb_api.calls if call.method != "GET"] == [
        True,  # bulk_write
        False,  # aggregate
        True,  # delete_one
        True,  # delete_many
        False,  # aggregate with $out
    ]
    client.close()


# --- claims: what the REST API gives ---------------------------------------------------


def claims_backing(standin: DocDbApiStandIn, store: DocDbApiRecordStore) -> Any:
    """The MongoDB collection behind ``store``'s claims, read directly."""
    return standin.mongo[DATABASE][f"{store.collection}_claims"]


def held_by(name: str, key: str, epoch: int) -> Claim:
    """A claim on ``key`` at ``epoch`` held by the worker ``worker(store, name, clock)``."""
    owner = Owner(f"host-{name}", 4242, f"run-{name}")
    return dataclasses.replace(sample_claim(key, epoch=epoch, label=name), owner=owner)


def after_next_read(store: DocDbApiRecordStore, action: Callable[[], object]) -> None:
    """Run ``action`` as soon as ``store``'s next read has its answer (which goes stale)."""
    read = store._find_by_ids

    def read_then_act(*args: Any, **kwargs: Any) -> Any:
        found = read(*args, **kwargs)
        delattr(store, "_find_by_ids")  # later reads are the store's own again
        action()
        return found

    store._find_by_ids = read_then_act  # type: ignore[method-assign]


def test_claims_are_plain_documents_in_their_own_collection(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """<collection>_claims holds Claim.to_document(), replaced whole; writes are signed."""
    store = open_store(docdb_api)
    key = key_of("claim")
    first = sample_claim(key, state="failed", failure=Failure("OSError", "disk full"))
    assert store.insert_claim(first)
    assert list(claims_backing(docdb_api, store).find()) == [first.to_document()]
    docdb_api.reset()
    second = sample_claim(key, epoch=2, label="second")
    assert store.replace_claim(second, expected_epoch=1)
    assert list(claims_backing(docdb_api, store).find()) == [second.to_document()]
    assert backing(docdb_api, store).count_documents({}) == 0
    # Check, write, verify: three requests, the write signed.
    assert [(call.action, call.signed) for call in docdb_api.calls] == [
        ("find", False),
        ("update_one", True),
        ("find", False),
    ]
    store.close()


def test_fresh_keys_are_won_exactly_once_by_eight_racing_workers(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """Eight workers, each with its own store, race for 15 new keys: one winner per key."""
    collection = fresh_collection()
    clock = FakeClock()
    stores = [open_store(docdb_api, collection) for _ in range(8)]
    workers = [worker(store, f"w{n}", clock) for n, store in enumerate(stores)]
    keys = [key_of(f"race {n}") for n in range(15)]
    wins: Counter[str] = Counter()
    winners: dict[str, str] = {}
    lock = threading.Lock()
    start = threading.Barrier(len(workers))

    def race(claims: Claims) -> None:
        start.wait()
        for key in keys:
            if claims.acquire(key).acquired:
                with lock:
                    wins[key] += 1
                    winners[key] = claims.owner.run_id

    threads = [threading.Thread(target=race, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins == Counter({key: 1 for key in keys})
    stored = stores[0].get_claims(keys)
    assert {key: claim.owner.run_id for key, claim in stored.items()} == winners
    assert {claim.epoch for claim in stored.values()} == {1}
    for store in stores:
        store.close()


def test_a_takeover_whose_check_went_stale_is_refused_by_the_conditional_write(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """B reads epoch 1, then A takes over; B's write, filtered on epoch 1, gets 409.

    The stand-in passes the filter to MongoDB as given, which is what makes the write
    conditional; the real gateway is not documented to (see the next test).
    """
    collection = fresh_collection()
    a, b = open_store(docdb_api, collection), open_store(docdb_api, collection)
    key = key_of("stale check")
    assert a.insert_claim(held_by("old", key, 1))
    mine, theirs = held_by("a", key, 2), held_by("b", key, 2)
    results: list[bool] = []
    after_next_read(b, lambda: results.append(a.replace_claim(mine, expected_epoch=1)))
    assert b.replace_claim(theirs, expected_epoch=1) is False
    assert results == [True]
    assert b.get_claims([key]) == {key: mine}
    assert [call.status for call in docdb_api.calls_to("update_one")] == [200, 409]
    a.close()
    b.close()


def test_race_window_if_the_gateway_ignored_the_epoch_and_what_still_holds(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """The documented weakness, provoked: both takeovers win; fencing and records hold.

    B's writes go out filtered on _id alone, as a gateway ignoring the epoch would apply
    them. B reads epoch 1; A takes over and verifies; then B's write lands and verifies.
    Both are told they won. A is fenced at its next renewal (the owner differs), B keeps
    the key, and only one of them can write the record.
    """
    collection = fresh_collection()
    clock = FakeClock()
    a, b = open_store(docdb_api, collection), open_store(docdb_api, collection)
    key = key_of("window")
    assert a.insert_claim(held_by("old", key, 1))
    api = b._api(f"{collection}_claims")
    upsert = api._upsert_one_record

    def by_id_only(record_filter: dict[str, Any], update: dict[str, Any]) -> Any:
        return upsert(record_filter={"_id": record_filter["_id"]}, update=update)

    api._upsert_one_record = by_id_only
    mine, theirs = held_by("a", key, 2), held_by("b", key, 2)
    results: list[bool] = []
    after_next_read(b, lambda: results.append(a.replace_claim(mine, expected_epoch=1)))
    assert b.replace_claim(theirs, expected_epoch=1) is True
    assert results == [True]  # both believe they won
    assert worker(a, "a", clock).renew(mine) is None  # A's fence
    assert worker(a, "a", clock).finish(mine) is False
    renewed = worker(b, "b", clock).renew(theirs)
    assert renewed is not None and renewed.owner == theirs.owner
    b.put(make_record(key, {"by": "b"}))
    with pytest.raises(RecordExistsError):
        a.put(make_record(key, {"by": "a"}))
    a.close()
    b.close()


def test_a_takeover_overwritten_before_its_read_back_is_lost(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """The read-back: another takeover landing right after ours makes ours a loss.

    Again with writes filtered on _id alone: A had read epoch 1 too, and its write lands
    just after B's, before B reads its claim back.
    """
    store = open_store(docdb_api)
    key = key_of("verify")
    assert store.insert_claim(held_by("old", key, 1))
    api = store._api(f"{store.collection}_claims")
    upsert = api._upsert_one_record

    def then_theirs(record_filter: dict[str, Any], update: dict[str, Any]) -> Any:
        reply = upsert(record_filter={"_id": record_filter["_id"]}, update=update)
        claims_backing(docdb_api, store).replace_one(
            {"_id": key}, held_by("a", key, 2).to_document()
        )
        return reply

    api._upsert_one_record = then_theirs
    assert store.replace_claim(held_by("b", key, 2), expected_epoch=1) is False
    assert store.get_claims([key]) == {key: held_by("a", key, 2)}
    store.close()


def test_claim_writes_whose_reply_was_lost_are_still_ours(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """An insert or takeover applied but answered 502 is True; another's claim is False."""
    store = open_store(docdb_api, retry_policy=FAST, sleep=Waits())
    mine, theirs = key_of("mine"), key_of("theirs")
    docdb_api.fail("insert_one", 502, after_write=True)
    assert store.insert_claim(sample_claim(mine)) is True
    taken = sample_claim(mine, epoch=2, label="taken over")
    docdb_api.fail("update_one", 502, after_write=True)
    assert store.replace_claim(taken, expected_epoch=1) is True
    assert [call.status for call in docdb_api.calls_to("insert_one")] == [502, 409]
    assert [call.status for call in docdb_api.calls_to("update_one")] == [502, 409]
    assert store.get_claims([mine]) == {mine: taken}
    other = open_store(docdb_api, store.collection)
    assert other.insert_claim(sample_claim(theirs, label="theirs"))
    docdb_api.fail("insert_one", 503)
    assert store.insert_claim(sample_claim(theirs, label="mine")) is False
    assert store.get_claims([theirs]) == {theirs: sample_claim(theirs, label="theirs")}
    other.close()
    store.close()


def test_a_failing_claim_write_raises_unless_the_epoch_moved_on(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """502 on every attempt: a StoreError if nothing changed; a loss if another took over.

    The second case is a gateway that reports the refused conditional write as an error.
    """
    store = open_store(docdb_api, retry_policy=FAST, sleep=Waits())
    key = key_of("errors")
    assert store.insert_claim(held_by("old", key, 1))
    docdb_api.fail("update_one", 502, times=3)
    with pytest.raises(StoreError, match=r"update_one.*HTTP 502") as raised:
        store.replace_claim(held_by("me", key, 2), expected_epoch=1)
    assert_clean(str(raised.value))
    assert store.get_claims([key]) == {key: held_by("old", key, 1)}
    other = open_store(docdb_api, store.collection)

    def take_over() -> None:
        assert other.replace_claim(held_by("other", key, 2), expected_epoch=1)
        docdb_api.fail("update_one", 502, times=3)

    after_next_read(store, take_over)
    assert store.replace_claim(held_by("me", key, 2), expected_epoch=1) is False
    assert store.get_claims([key]) == {key: held_by("other", key, 2)}
    other.close()
    store.close()


def test_read_only_store_reads_claims_and_never_writes_them(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """A read-only store reads claims; its claim writes are StoreErrors, sent nowhere."""
    writer = open_store(docdb_api)
    reader = open_store(docdb_api, writer.collection, read_only=True)
    key = key_of("claim")
    assert reader.get_claims([key]) == {}
    assert writer.insert_claim(sample_claim(key))
    assert reader.get_claims([key]) == {key: sample_claim(key)}
    assert reader.list_claims() == [sample_claim(key)]
    docdb_api.reset()
    with pytest.raises(StoreError, match="read-only"):
        reader.insert_claim(sample_claim(key_of("other")))
    with pytest.raises(StoreError, match="read-only"):
        reader.replace_claim(sample_claim(key, epoch=2), expected_epoch=1)
    assert docdb_api.calls == []
    assert writer.get_claims([key]) == {key: sample_claim(key)}
    reader.close()
    writer.close()


# --- fenced record writes: check, write, verify ----------------------------------------


def test_fenced_put_is_check_write_verify(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """A fenced insert: the claim read, the record written (signed), the claim read again."""
    store = open_store(docdb_api)
    key = key_of("fenced")
    claim = worker(store, "a", FakeClock()).acquire(key).claim
    docdb_api.reset()
    store.put(record_by(key, "a"), epoch=claim.epoch)
    assert [(call.action, call.collection, call.signed) for call in docdb_api.calls] == [
        ("find", f"{store.collection}_claims", False),
        ("insert_one", store.collection, True),
        ("find", f"{store.collection}_claims", False),
    ]
    assert list(backing(docdb_api, store).find()) == [record_by(key, "a")]  # nothing added
    store.close()


def test_fenced_put_refuses_a_takeover_seen_by_its_check_and_sends_no_write(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """The guarantee the API gives: a takeover before the check refuses the write unsent."""
    collection = fresh_collection()
    clock = FakeClock()
    a = worker(open_store(docdb_api, collection), "a", clock)
    b = worker(open_store(docdb_api, collection), "b", clock)
    key = key_of("seen by the check")
    stalled = a.acquire(key).claim
    clock.advance(120)
    assert b.acquire(key).claim.epoch == 2
    docdb_api.reset()
    with pytest.raises(FencedOutError, match="epoch 2, running") as raised:
        a.store.put(record_by(key, "a"), replace=True, epoch=stalled.epoch)  # type: ignore[attr-defined]
    assert raised.value.written is False
    assert [call.action for call in docdb_api.calls] == ["find"]
    assert backing(docdb_api, a.store).count_documents({}) == 0  # type: ignore[arg-type]


def test_fenced_replace_overtaken_between_check_and_write_is_written_and_reported(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """The documented weakness: B takes over and records after A's check, before A writes.

    A's replace lands over B's record (no conditional write), and A's read-back sees the
    takeover: FencedOutError with ``written`` true. B's own fenced replace restores its
    record. Without ``replace``, A's insert is refused by B's record (insert-if-absent).
    """
    collection = fresh_collection()
    clock = FakeClock()
    a_store, b_store = open_store(docdb_api, collection), open_store(docdb_api, collection)
    a, b = worker(a_store, "a", clock), worker(b_store, "b", clock)
    insert_key, replace_key = key_of("overtaken insert"), key_of("overtaken replace")
    stalled = {key: a.acquire(key).claim for key in (insert_key, replace_key)}
    clock.advance(120)

    def take_over_and_record(key: str) -> Callable[[], None]:
        def act() -> None:
            current = b.acquire(key).claim
            assert current.epoch == 2
            b_store.put(record_by(key, "b"), epoch=current.epoch)

        return act

    after_next_read(a_store, take_over_and_record(insert_key))
    with pytest.raises(RecordExistsError):
        a_store.put(record_by(insert_key, "a"), epoch=stalled[insert_key].epoch)
    assert a_store.get(insert_key) == record_by(insert_key, "b")

    after_next_read(a_store, take_over_and_record(replace_key))
    with pytest.raises(FencedOutError, match=r"was written.*epoch 2, running") as raised:
        a_store.put(record_by(replace_key, "a"), replace=True, epoch=stalled[replace_key].epoch)
    error = raised.value
    assert (error.epoch, error.current_epoch, error.written) == (1, 2, True)
    assert a_store.get(replace_key) == record_by(replace_key, "a")  # the weakness
    b_store.put(record_by(replace_key, "b"), replace=True, epoch=2)
    assert a_store.get(replace_key) == record_by(replace_key, "b")
    a_store.close()
    b_store.close()


def test_fenced_insert_whose_reply_was_lost_is_accepted(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """The fenced insert lands but is answered 502: the retry's 409 is our own record."""
    store = open_store(docdb_api, retry_policy=FAST, sleep=Waits())
    key = key_of("lost fenced reply")
    claim = worker(store, "a", FakeClock()).acquire(key).claim
    docdb_api.reset()
    docdb_api.fail("insert_one", 502, after_write=True)
    store.put(record_by(key, "a"), epoch=claim.epoch)
    assert [call.status for call in docdb_api.calls_to("insert_one")] == [502, 409]
    assert store.get(key) == record_by(key, "a")
    store.close()


# --- pickling: what a process pool or Dask worker gets ---------------------------------


def test_pickled_store_carries_no_credentials_and_signs_its_own_writes(
    docdb_api: DocDbApiStandIn, docdb_api_env: dict[str, str]
) -> None:
    """After a signed write, the pickle holds no key, secret or session; the copy writes."""
    store = open_store(docdb_api)
    store.put(make_record(key_of("before")))
    data = pickle.dumps(store)
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert secret.encode() not in data
    assert b"requests" not in data and b"botocore" not in data
    copy = pickle.loads(data)
    docdb_api.reset()
    copy.put(make_record(key_of("by the copy")))
    assert [(call.action, call.signed) for call in docdb_api.calls] == [("insert_one", True)]
    assert store.get(key_of("by the copy")) == make_record(key_of("by the copy"))
    copy.close()
    store.close()


def test_timeout_session_keeps_its_timeout_through_pickling() -> None:
    """The session class itself pickles its timeout (requests.Session pickles __attrs__)."""
    session = TimeoutSession((1.5, 7.0))
    copy = pickle.loads(pickle.dumps(session))
    assert isinstance(copy, TimeoutSession) and copy.timeout_s == (1.5, 7.0)
    session.close()
    copy.close()


class NeverAnswers:
    """A TCP server on loopback that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(connection)  # kept open, never read nor answered

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._listener.close()
        for connection in self._held:
            connection.close()


def test_unpickled_store_still_times_out_on_a_gateway_that_never_answers(
    docdb_api_env: dict[str, str],
) -> None:
    """A used store, pickled: the copy's requests still time out rather than hang.

    The call runs in a thread joined with a generous bound, so a hang fails the test
    instead of blocking it; nothing is asserted about speed beyond that.
    """
    gateway = NeverAnswers()
    store = DocDbApiRecordStore(
        f"127.0.0.1:{gateway.port}",
        DATABASE,
        "records",
        "v1",
        retry_policy=RetryPolicy(attempts=2, base_delay_s=0.001, max_delay_s=0.002),
        timeout_s=(0.5, 0.5),
    )

    def outcome_of(target: DocDbApiRecordStore) -> list[BaseException]:
        raised: list[BaseException] = []

        def call() -> None:
            try:
                target.get(key_of("a"))
            except BaseException as exc:
                raised.append(exc)

        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the request hung: no timeout applied"
        return raised

    (original,) = outcome_of(store)  # the store is used: its session and client exist
    copy = pickle.loads(pickle.dumps(store))
    (copied,) = outcome_of(copy)
    for error in (original, copied):
        assert isinstance(error, StoreError) and error.transient is True
        assert "records" in str(error)
    copy.close()
    store.close()
    gateway.close()
