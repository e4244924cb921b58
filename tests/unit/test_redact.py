"""Masking credentials in connection strings before they reach a message."""

from __future__ import annotations

import pytest

from analysis_wrapper.common.redact import mask_url


def test_masks_mongodb_user_and_password() -> None:
    """mongodb://user:password@host keeps scheme, host and path but not the credentials."""
    masked = mask_url("mongodb://alice:s3cret@db.example:27017/analysis")
    assert masked == "mongodb://***@db.example:27017/analysis"
    assert "alice" not in masked
    assert "s3cret" not in masked


def test_masks_mongodb_srv() -> None:
    """mongodb+srv:// URLs are masked too."""
    masked = mask_url("mongodb+srv://bob:pw@cluster0.example.net/?retryWrites=true")
    assert masked == "mongodb+srv://***@cluster0.example.net/?retryWrites=true"


def test_masks_https_credentials() -> None:
    """https://user:token@host/path is masked (e.g. a git remote with a token)."""
    masked = mask_url("https://user:ghp_abc123@github.com/org/repo.git")
    assert masked == "https://***@github.com/org/repo.git"
    assert "ghp_abc123" not in masked


def test_masks_user_without_password() -> None:
    """A bare user name (often a token) before '@' is masked as well."""
    assert mask_url("https://ghp_token@github.com/org/repo") == "https://***@github.com/org/repo"


@pytest.mark.parametrize(
    "text",
    [
        "mongodb://db.example:27017/analysis",
        "https://github.com/org/repo.git",
        "s3://bucket/prefix/key",
        "file:///abs/path",
        "no url at all",
        "",
        "write to alice@example.org for access",
    ],
)
def test_text_without_credentials_is_unchanged(text: str) -> None:
    """URLs without credentials, and other text, come back exactly as given."""
    assert mask_url(text) == text


def test_at_sign_in_path_is_not_credentials() -> None:
    """An '@' after the host (in the path) is not userinfo and stays."""
    text = "https://example.org/users/@alice"
    assert mask_url(text) == text


def test_several_urls_in_one_text() -> None:
    """Every URL in a message is masked; those without credentials are kept."""
    text = "cannot reach mongodb://a:pw1@h1:27017/db; tried https://b:pw2@h2/x and https://h3/y"
    masked = mask_url(text)
    assert masked == (
        "cannot reach mongodb://***@h1:27017/db; tried https://***@h2/x and https://h3/y"
    )
    assert "pw1" not in masked
    assert "pw2" not in masked


def test_mask_is_idempotent() -> None:
    """Masking a masked text changes nothing."""
    once = mask_url("mongodb://alice:s3cret@db.example/analysis")
    assert mask_url(once) == once


def test_url_on_its_own_line_in_multiline_text() -> None:
    """URLs on different lines are each masked, the rest of the text kept."""
    text = "first mongodb://u:p@h/db\nsecond https://u2:p2@h2"
    assert mask_url(text) == "first mongodb://***@h/db\nsecond https://***@h2"
