"""Input locations: the normal form that is hashed, and where a location is read from."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from analysis_wrapper.job.locations import (
    LocationError,
    is_s3,
    location_key_form,
    normalise_location,
    resolve_location,
)

# --- s3 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        ("s3://bucket/prefix/", "s3://bucket/prefix"),
        ("s3://bucket/prefix///", "s3://bucket/prefix"),
        ("S3://bucket/prefix", "s3://bucket/prefix"),
        ("S3://bucket/a/b/", "s3://bucket/a/b"),
        ("s3://bucket", "s3://bucket"),
        ("  s3://bucket/prefix/  ", "s3://bucket/prefix"),
    ],
)
def test_s3_normal_form(raw: str, normal: str) -> None:
    """S3 URLs get a lower-case scheme and lose trailing slashes and surrounding blanks."""
    assert normalise_location(raw) == normal


def test_s3_keeps_bucket_and_key_case() -> None:
    """Only the scheme is case-folded: S3 bucket keys are case-sensitive."""
    assert normalise_location("S3://Bucket/Key") == "s3://Bucket/Key"


def test_s3_forms_of_one_location_agree() -> None:
    """Every spelling of one S3 location has one normal form, so one key."""
    spellings = ["s3://b/k", "s3://b/k/", "S3://b/k", "S3://b/k/"]
    assert len({normalise_location(s) for s in spellings}) == 1


@pytest.mark.parametrize("raw", ["s3://", "s3:///", "S3://  "])
def test_s3_without_bucket_is_rejected(raw: str) -> None:
    """An S3 URL with no bucket is refused with LocationError."""
    with pytest.raises(LocationError, match="bucket"):
        normalise_location(raw)


def test_is_s3() -> None:
    """is_s3 tells normalised S3 URLs from paths."""
    assert is_s3(normalise_location("S3://b/k/"))
    assert not is_s3(normalise_location("/abs/path"))
    assert not is_s3(normalise_location("rel/path"))


# --- file URLs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("file:///abs/path", "/abs/path"),
        ("file:///abs/path/", "/abs/path"),
        ("FILE:///abs/path", "/abs/path"),
        ("file://localhost/abs/path", "/abs/path"),
        ("file:///abs/./x/../path", "/abs/path"),
        ("file:///with%20space", "/with space"),
        ("file:///", "/"),
    ],
)
def test_file_url_becomes_absolute_path(raw: str, normal: str) -> None:
    """A file:// URL normalises to the absolute path it names."""
    assert normalise_location(raw) == normal


def test_file_url_and_its_path_agree() -> None:
    """file:///abs/path and /abs/path are one place, so one normal form."""
    assert normalise_location("file:///data/session") == normalise_location("/data/session/")


def test_file_url_with_a_host_is_rejected() -> None:
    """file://host/path names another machine: LocationError naming the host."""
    with pytest.raises(LocationError, match="server"):
        normalise_location("file://server/share/data")


# --- paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/abs/path", "/abs/path"),
        ("/abs/path/", "/abs/path"),
        ("/abs//path", "/abs/path"),
        ("//abs/path", "/abs/path"),
        ("///abs/path", "/abs/path"),
        ("/abs/./x/../path", "/abs/path"),
        ("/../abs", "/abs"),
    ],
)
def test_absolute_paths_are_normalised(raw: str, normal: str) -> None:
    """Absolute paths are normalised and keep a single leading slash."""
    assert normalise_location(raw) == normal


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("a/./b/../c", "a/c"),
        ("a/b/", "a/b"),
        ("./a", "a"),
        ("a//b", "a/b"),
        ("a/../b", "b"),
        ("sessions/s1", "sessions/s1"),
    ],
)
def test_relative_paths_are_normalised_and_stay_relative(raw: str, normal: str) -> None:
    """Relative paths are normalised but not made absolute (the key survives a move)."""
    result = normalise_location(raw)
    assert result == normal
    assert not result.startswith("/")


@pytest.mark.parametrize("raw", ["..", "../x", "../../x", "a/../../x", "./../x", "a/b/../../../c"])
def test_relative_path_escaping_the_input_directory_is_rejected(raw: str) -> None:
    """A relative path that climbs out of the input directory is a LocationError."""
    with pytest.raises(LocationError, match=r"'\.\.'"):
        normalise_location(raw)


def test_dotdot_inside_a_name_is_not_an_escape() -> None:
    """'..x' is a file name, not a parent directory."""
    assert normalise_location("..x/y") == "..x/y"


@pytest.mark.parametrize("raw", ["", "   ", "\t\n"])
def test_empty_location_is_rejected(raw: str) -> None:
    """An empty or blank location is a LocationError."""
    with pytest.raises(LocationError, match="empty"):
        normalise_location(raw)


@pytest.mark.parametrize("raw", ["http://example.org/data", "https://x/y", "gs://bucket/key"])
def test_unsupported_scheme_is_rejected(raw: str) -> None:
    """Schemes other than s3 and file are refused, naming the scheme."""
    scheme = raw.split("://")[0]
    with pytest.raises(LocationError, match=f"unsupported scheme '{scheme}'"):
        normalise_location(raw)


def test_location_error_is_a_value_error() -> None:
    """LocationError is a ValueError, so pydantic validators can turn it into a field error."""
    assert issubclass(LocationError, ValueError)


def test_normalise_is_idempotent() -> None:
    """Normalising a normal form changes nothing."""
    for raw in ["S3://b/k/", "file:///a/./b", "/x//y/", "a/./b/../c"]:
        once = normalise_location(raw)
        assert normalise_location(once) == once


# --- resolve_location -----------------------------------------------------------------


def test_resolve_s3_is_unchanged(tmp_path: Path) -> None:
    """An S3 URL is returned as the same string."""
    assert resolve_location("s3://b/k", tmp_path) == "s3://b/k"
    assert isinstance(resolve_location("s3://b/k", tmp_path), str)


def test_resolve_relative_path_under_input_directory(tmp_path: Path) -> None:
    """A relative location resolves under the run's input directory."""
    resolved = resolve_location("sessions/s1", tmp_path)
    assert resolved == tmp_path / "sessions" / "s1"
    assert isinstance(resolved, Path)


def test_resolve_absolute_path_ignores_input_directory(tmp_path: Path) -> None:
    """An absolute location is read where it is, whatever the input directory."""
    resolved = resolve_location("/abs/path", tmp_path)
    assert resolved == Path("/abs/path")
    assert isinstance(resolved, Path)


def test_same_relative_location_moves_with_the_input_directory(tmp_path: Path) -> None:
    """One normal form resolves under whichever input directory the run uses."""
    location = normalise_location("./sessions/../sessions/s1/")
    clone, code_ocean = tmp_path / "clone" / "data", Path("/data")
    assert resolve_location(location, clone) == clone / "sessions" / "s1"
    assert resolve_location(location, code_ocean) == Path("/data/sessions/s1")


# --- location_key_form ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("normal", "key_form"),
    [
        ("s3://My-Bucket/Sessions/S1", "s3://my-bucket/Sessions/S1"),
        ("s3://BUCKET", "s3://bucket"),
        ("HTTPS://GitHub.COM/Org/Repo", "https://github.com/Org/Repo"),
        ("https://User@Host.Example:8443/Path", "https://User@host.example:8443/Path"),
        ("https://Host.Example?Query=A", "https://host.example?Query=A"),
        ("sessions/Mouse-1", "sessions/Mouse-1"),
        ("/Data/Session", "/Data/Session"),
        ("s3://bucket/key", "s3://bucket/key"),
    ],
)
def test_key_form_folds_the_host_only(normal: str, key_form: str) -> None:
    """Scheme and host are lower case in the key form; paths, keys and user names keep case."""
    assert location_key_form(normal) == key_form


@pytest.mark.parametrize("location", ["sessions/café", "/data/café", "s3://bucket/café"])
def test_key_form_is_nfc(location: str) -> None:
    """The NFD spelling of a location has the NFC key form."""
    nfd = unicodedata.normalize("NFD", location)
    assert nfd != location
    assert location_key_form(nfd) == location
    assert location_key_form(location) == location


def test_normal_form_keeps_nfd_and_bucket_case_for_reading() -> None:
    """Reading uses the normal form, byte for byte: a file named in NFD is found by that name."""
    nfd = unicodedata.normalize("NFD", "sessions/café")
    assert normalise_location(nfd) == nfd
    assert normalise_location("s3://My-Bucket/k") == "s3://My-Bucket/k"


def test_key_form_of_a_normal_location_is_the_same_object() -> None:
    """ASCII locations with lower-case hosts (the keys of earlier releases) are unchanged."""
    for location in ["s3://bucket/session-1", "sessions/S1", "/abs/Path"]:
        assert location_key_form(location) is location
