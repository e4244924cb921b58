"""The job key: canonical JSON, golden digests, and what the key must not depend on."""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel

from analysis_wrapper.errors import KeyComputationError
from analysis_wrapper.identity.key import (
    KEY_SCHEME,
    CodeIdentity,
    canonical_json,
    compute_key,
    key_preimage,
    normal_unicode,
    scheme_1_key,
)
from analysis_wrapper.job.locations import normalise_location
from analysis_wrapper.job.parameters import validate_parameters

Preimage = Callable[[], dict[str, Any]]

CODE = CodeIdentity(
    url="https://github.com/example/analysis",
    version="0123456789abcdef0123456789abcdef01234567",
)

# --- canonical_json -------------------------------------------------------------------


def test_canonical_json_sorts_keys_at_every_level() -> None:
    """Keys are sorted in nested objects too, whatever order they were given in."""
    value = {"b": 1, "a": {"z": 1, "y": [{"d": 1, "c": 2}]}}
    assert canonical_json(value) == b'{"a":{"y":[{"c":2,"d":1}],"z":1},"b":1}'


def test_canonical_json_has_no_whitespace() -> None:
    """No space follows ':' or ',' and there is no newline or indentation."""
    text = canonical_json({"a": [1, 2], "b": {"c": "x y"}})
    assert text == b'{"a":[1,2],"b":{"c":"x y"}}'


def test_canonical_json_keeps_non_ascii_as_utf8() -> None:
    """Non-ASCII text is written as UTF-8 bytes, not as backslash-u escapes."""
    text = canonical_json({"name": "Zählung µ"})
    assert text == '{"name":"Zählung µ"}'.encode()
    assert b"\\u" not in text
    assert "ä".encode() in text


def test_canonical_json_returns_bytes_that_round_trip() -> None:
    """The canonical form is bytes that decode back to the same value."""
    value = {"x": [1, 2.5, None, True, "s"], "y": {}}
    text = canonical_json(value)
    assert isinstance(text, bytes)
    assert json.loads(text.decode("utf-8")) == value


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_canonical_json_rejects_non_finite_top_level_field(bad: float) -> None:
    """NaN and infinities are refused with KeyComputationError naming the field."""
    with pytest.raises(KeyComputationError, match=r"'parameters\.x'"):
        canonical_json({"parameters": {"x": bad}})


def test_canonical_json_rejects_nan_inside_a_list_naming_the_index() -> None:
    """A NaN in a list is named with its index, e.g. parameters.l[1]."""
    with pytest.raises(KeyComputationError) as info:
        canonical_json({"parameters": {"l": [1.0, math.nan, 2.0]}})
    assert "'parameters.l[1]'" in str(info.value)
    assert "\n" not in str(info.value)


def test_canonical_json_rejects_nan_in_a_tuple_nested_in_a_dict() -> None:
    """Tuples are walked like lists, so a NaN inside one is named too."""
    with pytest.raises(KeyComputationError, match=r"a\.b\[0\]\.c"):
        canonical_json({"a": {"b": ({"c": math.inf},)}})


def test_canonical_json_rejects_a_bare_nan() -> None:
    """A non-finite value on its own is refused too."""
    with pytest.raises(KeyComputationError):
        canonical_json(math.nan)


def test_canonical_json_rejects_values_json_cannot_represent() -> None:
    """A value with no JSON form (a set) gives KeyComputationError, not TypeError."""
    with pytest.raises(KeyComputationError):
        canonical_json({"parameters": {"s": {1, 2}}})


def test_canonical_json_rejects_text_that_is_not_valid_unicode() -> None:
    """A lone surrogate (a JSON escape can decode to one) has no UTF-8 form: KeyComputationError."""
    value = json.loads('{"analysis_tag": "\\ud800"}')
    with pytest.raises(KeyComputationError):
        canonical_json({"parameters": value})


def test_key_computation_error_is_a_value_error() -> None:
    """Callers catching ValueError also catch a key that cannot be computed."""
    with pytest.raises(ValueError):
        compute_key(key_preimage(CODE, [], [], {"x": math.nan}))


# --- golden values --------------------------------------------------------------------

GOLDEN_A = "9a99e0e611bea1b721f6ebc2b46d841e5b1408cbf838004451e9f505bdd2b90f"
SCHEME_1_A = "7c70c786466e478275e544fb335ba42b063cf938cd1f1dba8016af0032dc46fa"
"""The key scheme 1 gave this job: a record with it is recognised (see scheme_1_key)."""
CANONICAL_A = (
    b'{"code":{"url":"https://github.com/example/analysis",'
    b'"version":"0123456789abcdef0123456789abcdef01234567"},'
    b'"file_location":[],"input_data":["s3://bucket/session-1"],"key_scheme":2,'
    b'"parameters":{"analysis_name":"Unit Filtering","analysis_tag":null,'
    b'"isi_violations_cutoff":0.5}}'
)

GOLDEN_B = "43ef48aca81b761d77966957382a5a21987cb76493cedf789c538aec46a3c260"
SCHEME_1_B = "9322b3d74fe0212c3b720d4df38b06e3f90ea24facba6d7f5276169bc85a5a26"
"""The key scheme 1 gave this job: a record with it is recognised (see scheme_1_key)."""
CANONICAL_B = (
    '{"code":{"url":"/home/me/capsule",'
    '"version":"89abcdef0123456789abcdef0123456789abcdef+dirty.0123456789ab"},'
    '"file_location":["units.csv"],"input_data":["s3://bucket/a","sessions/b"],'
    '"key_scheme":2,'
    '"parameters":{"analysis_name":"Zählung µ","bins":[1,2.5],"nested":{"a":null,"z":true}}}'
).encode()

GOLDEN_C = "69937546beba7239abf0ff69c871663c052dff9b36bc28e9e491b5070774d563"
SCHEME_1_C = "f55afa5f17832dd1095f134653673c71685bb45ff35240704dda4544cbc88112"
"""The key scheme 1 gave this job: a record with it is recognised (see scheme_1_key)."""
CANONICAL_C = (
    b'{"code":{"url":"https://github.com/example/analysis","version":"v1.2.3"},'
    b'"file_location":[],"input_data":[],"key_scheme":2,"parameters":{}}'
)


def _preimage_a() -> dict[str, Any]:
    return key_preimage(
        CODE,
        ["s3://bucket/session-1"],
        [],
        {"isi_violations_cutoff": 0.5, "analysis_tag": None, "analysis_name": "Unit Filtering"},
    )


def _preimage_b() -> dict[str, Any]:
    code = CodeIdentity(
        url="/home/me/capsule",
        version="89abcdef0123456789abcdef0123456789abcdef+dirty.0123456789ab",
        commit="89abcdef0123456789abcdef0123456789abcdef",
        name="not in the key",
        dirty=True,
    )
    return key_preimage(
        code,
        ["sessions/b", "s3://bucket/a"],
        ["units.csv"],
        {"nested": {"z": True, "a": None}, "bins": [1, 2.5], "analysis_name": "Zählung µ"},
    )


def _preimage_c() -> dict[str, Any]:
    code = CodeIdentity(url="https://github.com/example/analysis", version="v1.2.3")
    return key_preimage(code, [], [], {})


@pytest.mark.parametrize(
    ("build", "canonical", "golden"),
    [
        (_preimage_a, CANONICAL_A, GOLDEN_A),
        (_preimage_b, CANONICAL_B, GOLDEN_B),
        (_preimage_c, CANONICAL_C, GOLDEN_C),
    ],
    ids=["s3-input", "dirty-non-ascii", "empty"],
)
def test_golden_canonical_bytes(build: Preimage, canonical: bytes, golden: str) -> None:
    """The pre-image serialises to exactly the canonical bytes written out in this test."""
    assert canonical_json(build()) == canonical


@pytest.mark.parametrize(
    ("canonical", "golden"),
    [(CANONICAL_A, GOLDEN_A), (CANONICAL_B, GOLDEN_B), (CANONICAL_C, GOLDEN_C)],
    ids=["s3-input", "dirty-non-ascii", "empty"],
)
def test_golden_values_are_sha256_of_the_literal_bytes(canonical: bytes, golden: str) -> None:
    """Each pinned digest is hashlib.sha256 of the literal canonical bytes (the justification)."""
    assert hashlib.sha256(canonical).hexdigest() == golden


@pytest.mark.parametrize(
    ("build", "golden"),
    [(_preimage_a, GOLDEN_A), (_preimage_b, GOLDEN_B), (_preimage_c, GOLDEN_C)],
    ids=["s3-input", "dirty-non-ascii", "empty"],
)
def test_compute_key_golden_values(build: Preimage, golden: str) -> None:
    """compute_key returns the pinned digest: a change here would re-run every result."""
    assert compute_key(build()) == golden


def test_key_is_64_lowercase_hex() -> None:
    """The key is a sha256 hex digest: 64 lower-case hex characters."""
    key = compute_key(_preimage_a())
    assert len(key) == 64
    assert set(key) <= set("0123456789abcdef")


# --- the pre-image --------------------------------------------------------------------


def test_preimage_contains_key_scheme() -> None:
    """The pre-image carries key_scheme = KEY_SCHEME, which is 2 for this layout."""
    preimage = _preimage_a()
    assert preimage["key_scheme"] == KEY_SCHEME == 2
    assert b'"key_scheme":2' in canonical_json(preimage)


def test_preimage_has_exactly_the_documented_fields() -> None:
    """The pre-image has code, input_data, file_location, parameters and key_scheme only."""
    assert set(_preimage_b()) == {
        "key_scheme",
        "code",
        "input_data",
        "file_location",
        "parameters",
    }


def test_preimage_code_holds_only_url_and_version() -> None:
    """commit, name and dirty do not enter the key; url and version do."""
    preimage = _preimage_b()
    assert preimage["code"] == {
        "url": "/home/me/capsule",
        "version": "89abcdef0123456789abcdef0123456789abcdef+dirty.0123456789ab",
    }


def test_code_name_and_commit_do_not_change_the_key() -> None:
    """Two identities differing only in name and commit give the same key."""
    one = CodeIdentity(url="u", version="v", commit="c1", name="first")
    two = CodeIdentity(url="u", version="v", commit="c2", name="second")
    assert compute_key(key_preimage(one, ["a"], [], {})) == compute_key(
        key_preimage(two, ["a"], [], {})
    )


def test_code_version_changes_the_key() -> None:
    """A different code version is a different result."""
    one = CodeIdentity(url="u", version="v1")
    two = CodeIdentity(url="u", version="v2")
    assert compute_key(key_preimage(one, ["a"], [], {})) != compute_key(
        key_preimage(two, ["a"], [], {})
    )


def test_parameter_value_changes_the_key() -> None:
    """A different parameter value is a different result."""
    one = key_preimage(CODE, ["a"], [], {"x": 0.5})
    two = key_preimage(CODE, ["a"], [], {"x": 0.6})
    assert compute_key(one) != compute_key(two)


def test_key_stable_under_parameter_key_order() -> None:
    """Parameters given in any key order, nested ones too, give one key."""
    one = key_preimage(CODE, ["a"], [], {"a": 1, "b": {"x": 1, "y": 2}, "c": [1, 2]})
    two = key_preimage(CODE, ["a"], [], {"c": [1, 2], "b": {"y": 2, "x": 1}, "a": 1})
    assert compute_key(one) == compute_key(two)


def test_key_stable_under_input_data_order() -> None:
    """The order of input locations does not matter."""
    one = key_preimage(CODE, ["s3://b/1", "s3://b/2", "rel/3"], [], {})
    two = key_preimage(CODE, ["rel/3", "s3://b/2", "s3://b/1"], [], {})
    assert one["input_data"] == ["rel/3", "s3://b/1", "s3://b/2"]
    assert compute_key(one) == compute_key(two)


def test_key_stable_under_file_location_order() -> None:
    """The order of file locations does not matter."""
    one = key_preimage(CODE, ["a"], ["x.csv", "y.csv"], {})
    two = key_preimage(CODE, ["a"], ["y.csv", "x.csv"], {})
    assert compute_key(one) == compute_key(two)


def test_duplicate_inputs_collapse() -> None:
    """Listing an input twice names the same data: the key is unchanged."""
    once = key_preimage(CODE, ["s3://b/1", "s3://b/2"], ["f"], {})
    twice = key_preimage(CODE, ["s3://b/2", "s3://b/1", "s3://b/1"], ["f", "f"], {})
    assert twice["input_data"] == ["s3://b/1", "s3://b/2"]
    assert twice["file_location"] == ["f"]
    assert compute_key(once) == compute_key(twice)


def test_input_data_and_file_location_are_not_interchangeable() -> None:
    """The same path as an input or as a file location gives different keys."""
    as_input = key_preimage(CODE, ["a", "b"], [], {})
    as_file = key_preimage(CODE, ["a"], ["b"], {})
    assert compute_key(as_input) != compute_key(as_file)


def test_key_preimage_accepts_generators() -> None:
    """Any iterable of locations works, not only lists."""
    from_lists = key_preimage(CODE, ["a", "b"], ["f"], {})
    from_generators = key_preimage(CODE, (x for x in "ba"), iter(["f"]), {})
    assert from_lists == from_generators


class _FloatModel(BaseModel):
    cutoff: float
    label: str = "x"


def test_int_and_float_for_a_float_field_give_one_key() -> None:
    """1 and 1.0 for a float field validate to one value, hence one key."""
    as_int = _FloatModel.model_validate({"cutoff": 1}).model_dump(mode="json")
    as_float = _FloatModel.model_validate({"cutoff": 1.0}).model_dump(mode="json")
    assert as_int == as_float
    assert isinstance(as_int["cutoff"], float)
    assert compute_key(key_preimage(CODE, ["a"], [], as_int)) == compute_key(
        key_preimage(CODE, ["a"], [], as_float)
    )


def test_int_and_float_unvalidated_differ() -> None:
    """Without validation 1 and 1.0 serialise differently, which is why validation comes first."""
    assert canonical_json({"x": 1}) != canonical_json({"x": 1.0})


# --- one key for the same work, however its text was typed -----------------------------


def _nfd(text: str) -> str:
    """``text`` decomposed, as macOS writes file names (e + combining accent for é)."""
    decomposed = unicodedata.normalize("NFD", text)
    assert decomposed != text
    return decomposed


class _Session(BaseModel):
    analysis_name: str = "Unit Filtering"
    start: datetime
    windows: list[datetime] = []


def _dumped(**values: Any) -> dict[str, Any]:
    """Parameters validated as a run validates them, in JSON mode."""
    return validate_parameters(_Session, values, {}, "job.json").model_dump(mode="json")


GOLDEN_NORMALISED = "80700b322fdd7cd09f29c686d44dde21a1af7b7e432bd46b655b168172ece1a4"
SCHEME_1_NORMALISED = "39913acaadf084c7776b53cbdfc9c55fa349c736476f84e0929a21d5f95bf8cb"
"""The key scheme 1 gave this job: a record with it is recognised (see scheme_1_key)."""
CANONICAL_NORMALISED = (
    '{"code":{"url":"https://github.com/Example/Analysis","version":"v1.2.3"},'
    '"file_location":["units-é.csv"],"input_data":["s3://my-bucket/Sessions/é1"],'
    '"key_scheme":2,"parameters":{"analysis_name":"Zählung café",'
    '"nested":{"clé":["Zählung café"]},"start":"2026-01-01T10:00:00Z"}}'
).encode()


def _preimage_typed_on_macos() -> dict[str, Any]:
    """NFD text everywhere, a host in capitals, and a time with an offset."""
    return key_preimage(
        CodeIdentity(url="https://GitHub.com/Example/Analysis", version="v1.2.3"),
        [_nfd("s3://My-Bucket/Sessions/é1")],
        [_nfd("units-é.csv")],
        {
            "analysis_name": _nfd("Zählung café"),
            "nested": {_nfd("clé"): [_nfd("Zählung café")]},
            "start": _dumped(start="2026-01-01T12:00:00+02:00")["start"],
        },
    )


def _preimage_typed_on_linux() -> dict[str, Any]:
    """The same work in NFC, lower-case hosts and UTC."""
    return key_preimage(
        CodeIdentity(url="https://github.com/Example/Analysis", version="v1.2.3"),
        ["s3://my-bucket/Sessions/é1"],
        ["units-é.csv"],
        {
            "analysis_name": "Zählung café",
            "nested": {"clé": ["Zählung café"]},
            "start": _dumped(start="2026-01-01T10:00:00Z")["start"],
        },
    )


@pytest.mark.parametrize(
    "build", [_preimage_typed_on_macos, _preimage_typed_on_linux], ids=["nfd-host-offset", "normal"]
)
def test_golden_key_of_normalised_text(build: Preimage) -> None:
    """NFD, a capitalised host and +02:00 give the pinned bytes and key of their normal form."""
    assert canonical_json(build()) == CANONICAL_NORMALISED
    assert compute_key(build()) == GOLDEN_NORMALISED
    assert hashlib.sha256(CANONICAL_NORMALISED).hexdigest() == GOLDEN_NORMALISED


def test_nfd_and_nfc_parameters_give_one_key_and_one_stored_value() -> None:
    """A parameter typed in NFD keys and is stored (the pre-image) as its NFC."""
    nfd = key_preimage(CODE, ["a"], [], {"analysis_name": _nfd("Zählung")})
    nfc = key_preimage(CODE, ["a"], [], {"analysis_name": "Zählung"})
    assert nfd == nfc
    assert nfd["parameters"]["analysis_name"] == unicodedata.normalize("NFC", "Zählung")
    assert compute_key(nfd) == compute_key(nfc)


def test_nfd_object_keys_are_normalised_at_every_level() -> None:
    """Keys of objects, nested in lists too, are NFC in the pre-image."""
    preimage = key_preimage(CODE, [], [], {"groups": [{_nfd("région"): {_nfd("clé"): 1}}]})
    assert preimage["parameters"] == {"groups": [{"région": {"clé": 1}}]}


def test_two_keys_that_are_one_text_in_nfc_are_refused() -> None:
    """An object with "é" typed both ways holds two values for one name: refused, named."""
    with pytest.raises(KeyComputationError, match=r"'labels\.é'.*NFC"):
        key_preimage(CODE, [], [], {"labels": {"é": 1, _nfd("é"): 2}})


@pytest.mark.parametrize(
    ("one", "two"),
    [
        (_nfd("sessions/café-1"), "sessions/café-1"),
        (_nfd("/data/café-1"), "/data/café-1"),
        (_nfd("s3://bucket/café-1"), "s3://bucket/café-1"),
        ("s3://My-Bucket/session-1", "s3://my-bucket/session-1"),
        ("s3://BUCKET/session-1", "s3://bucket/session-1"),
    ],
    ids=["relative-nfd", "absolute-nfd", "s3-nfd", "s3-mixed-case-bucket", "s3-upper-bucket"],
)
def test_one_location_typed_two_ways_gives_one_key(one: str, two: str) -> None:
    """NFD vs NFC and HOST vs host name one place: one key, input_data in the normal form."""
    first = key_preimage(CODE, [normalise_location(one)], [one], {})
    second = key_preimage(CODE, [normalise_location(two)], [two], {})
    assert first["input_data"] == second["input_data"] == [two]
    assert first["file_location"] == [two]
    assert compute_key(first) == compute_key(second)


@pytest.mark.parametrize(
    ("one", "two"),
    [
        ("s3://bucket/Session-1", "s3://bucket/session-1"),
        ("sessions/Mouse-1", "sessions/mouse-1"),
        ("/Data/session-1", "/data/session-1"),
    ],
    ids=["s3-key", "relative-path", "absolute-path"],
)
def test_path_case_is_kept(one: str, two: str) -> None:
    """S3 keys and paths are case-sensitive: only the host is folded."""
    assert compute_key(key_preimage(CODE, [one], [], {})) != compute_key(
        key_preimage(CODE, [two], [], {})
    )


def test_code_url_host_is_folded_and_its_path_kept() -> None:
    """The code URL's host is lower case in the identity (so in the record) and the key."""
    code = CodeIdentity(url="https://GitHub.COM/Example-Lab/Capsule", version="v1")
    assert code.url == "https://github.com/Example-Lab/Capsule"
    same = CodeIdentity(url="https://github.com/Example-Lab/Capsule", version="v1")
    other = CodeIdentity(url="https://github.com/example-lab/capsule", version="v1")
    assert compute_key(key_preimage(code, [], [], {})) == compute_key(
        key_preimage(same, [], [], {})
    )
    assert compute_key(key_preimage(code, [], [], {})) != compute_key(
        key_preimage(other, [], [], {})
    )


def test_input_versions_are_keyed_by_the_key_form_of_their_location() -> None:
    """INPUT_IDENTITY=content: each version is filed under its location's key form."""
    one = key_preimage(CODE, ["s3://B/x"], [], {}, {"s3://B/x": '"etag"'})
    two = key_preimage(CODE, ["s3://b/x"], [], {}, {"s3://b/x": '"etag"'})
    assert one["input_versions"] == {"s3://b/x": '"etag"'}
    assert compute_key(one) == compute_key(two)


def test_encoded_text_before_nfc_does_not_change_the_key() -> None:
    """compute_key given a parameters text in NFD still hashes the NFC pre-image."""
    raw = {"analysis_name": _nfd("Zählung")}
    preimage = key_preimage(CODE, ["a"], [], raw)
    encoded = {"parameters": canonical_json(raw).decode("utf-8")}
    assert compute_key(preimage, encoded) == compute_key(preimage)


def test_normal_unicode_returns_normal_values_unchanged() -> None:
    """Text already in NFC comes back as the very same object: nothing is copied."""
    value = {"name": "Zählung", "bins": [1, 2.5], "nested": {"a": None, "b": ("x",)}}
    assert normal_unicode(value) is value
    assert normal_unicode(_nfd("é")) == "é"
    assert normal_unicode((_nfd("é"), 1)) == ("é", 1)


@pytest.mark.parametrize(
    "written",
    ["2026-01-01T12:00:00+02:00", "2026-01-01T10:00:00Z", "2026-01-01T05:00:00-05:00"],
)
def test_one_instant_with_any_offset_gives_one_key(written: str) -> None:
    """Aware datetimes enter the key in UTC: the same instant, one key, one stored value."""
    dumped = _dumped(start=written, windows=[written])
    assert dumped["start"] == "2026-01-01T10:00:00Z"
    assert dumped["windows"] == ["2026-01-01T10:00:00Z"]
    utc = _dumped(start="2026-01-01T10:00:00Z", windows=["2026-01-01T10:00:00Z"])
    assert compute_key(key_preimage(CODE, [], [], dumped)) == compute_key(
        key_preimage(CODE, [], [], utc)
    )


def test_naive_datetime_is_kept_as_written() -> None:
    """A datetime with no offset is not converted, and differs from the same wall time in UTC."""
    naive = _dumped(start="2026-01-01T10:00:00")
    assert naive["start"] == "2026-01-01T10:00:00"
    utc = _dumped(start="2026-01-01T10:00:00Z")
    assert compute_key(key_preimage(CODE, [], [], naive)) != compute_key(
        key_preimage(CODE, [], [], utc)
    )


def test_encoded_text_in_nfc_is_used_as_given() -> None:
    """A non-ASCII text already in NFC is spliced in as it is (the plan's fast path)."""
    value = {"analysis_name": "Zählung µm"}
    preimage = key_preimage(CODE, ["a"], [], value)
    encoded = {"parameters": canonical_json(value).decode("utf-8")}
    assert compute_key(preimage, encoded) == compute_key(preimage)
    wrong = {"parameters": '{"analysis_name":"something else: µm"}'}
    assert compute_key(preimage, wrong) != compute_key(preimage)  # i.e. it was used


@pytest.mark.parametrize(
    ("build", "version", "golden"),
    [
        (_preimage_a, "0123456789abcdef0123456789abcdef01234567", SCHEME_1_A),
        (
            _preimage_b,
            "89abcdef0123456789abcdef0123456789abcdef+dirty.0123456789ab",
            SCHEME_1_B,
        ),
        (_preimage_c, "v1.2.3", SCHEME_1_C),
        (_preimage_typed_on_macos, "v1.2.3", SCHEME_1_NORMALISED),
    ],
    ids=["s3-input", "dirty-non-ascii", "empty", "normalised"],
)
def test_scheme_1_key_is_the_key_earlier_releases_gave(
    build: Preimage, version: str, golden: str
) -> None:
    """The keys pinned by scheme 1's tests, from today's pre-image and the commit."""
    assert scheme_1_key(build(), version) == golden


GOLDEN_TREE = "13df4f53d3b7d9b9b9debd195f24d09e42a270d675bd4f4093978d5eb97f7186"
CANONICAL_TREE = (
    b'{"code":{"tree":"5f2b0c6f2f4d6c0d1e9a3b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f80910",'
    b'"url":"https://github.com/example/analysis"},'
    b'"file_location":[],"input_data":["s3://bucket/session-1"],"key_scheme":2,'
    b'"parameters":{"analysis_name":"Unit Filtering","analysis_tag":null,'
    b'"isi_violations_cutoff":0.5}}'
)


def test_golden_key_of_a_code_tree() -> None:
    """With a code tree, the key holds it in place of the version (which is only recorded)."""
    code = CodeIdentity(
        url="https://github.com/example/analysis",
        version="0123456789abcdef0123456789abcdef01234567",
        commit="0123456789abcdef0123456789abcdef01234567",
        tree="5f2b0c6f2f4d6c0d1e9a3b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f80910",
        paths=("code", "environment"),
        pushed=True,
    )
    preimage = key_preimage(
        code,
        ["s3://bucket/session-1"],
        [],
        {"isi_violations_cutoff": 0.5, "analysis_tag": None, "analysis_name": "Unit Filtering"},
    )
    assert canonical_json(preimage) == CANONICAL_TREE
    assert hashlib.sha256(CANONICAL_TREE).hexdigest() == GOLDEN_TREE
    assert compute_key(preimage) == GOLDEN_TREE
    other_commit = CodeIdentity(url=code.url, version="f" * 40, tree=code.tree)
    assert (
        compute_key(
            key_preimage(
                other_commit,
                ["s3://bucket/session-1"],
                [],
                {
                    "isi_violations_cutoff": 0.5,
                    "analysis_tag": None,
                    "analysis_name": "Unit Filtering",
                },
            )
        )
        == GOLDEN_TREE
    )
