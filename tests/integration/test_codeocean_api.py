"""The real codeocean SDK over HTTP against the local stand-in: lookups, policy, errors."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from analysis_wrapper.config.settings import CodeOceanSettings
from analysis_wrapper.errors import ProvenanceError
from analysis_wrapper.identity.codeocean import (
    CodeOceanError,
    CodeOceanIdentity,
    CodeOceanUnavailableError,
    read_run,
)
from analysis_wrapper.identity.provenance import resolve_code_identity
from conftest import git
from standins import codeocean_api as co

TOKEN = "cop_T0k3n-5ecr3t-8e1d0c"
CODEOCEAN_VARIABLES = (
    "CODEOCEAN_DOMAIN",
    "CODEOCEAN_API_TOKEN",
    "CODEOCEAN_EMAIL",
    "CODEOCEAN_MIN_SERVER_VERSION",
    "CODE_VERSION_POLICY",
    "CO_COMPUTATION_ID",
    "CO_CAPSULE_ID",
    "CO_PIPELINE_ID",
)


@pytest.fixture
def standin() -> Iterator[co.CodeOceanStandIn]:
    """A seeded Code Ocean stand-in on a free loopback port."""
    with co.seed(co.CodeOceanStandIn(TOKEN)) as server:
        yield server


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, standin: co.CodeOceanStandIn) -> pytest.MonkeyPatch:
    """The stand-in's domain and token in the environment, every other CO variable unset."""
    for name in CODEOCEAN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CODEOCEAN_DOMAIN", standin.url)
    monkeypatch.setenv("CODEOCEAN_API_TOKEN", TOKEN)
    return monkeypatch


def capsule_run(env: pytest.MonkeyPatch, computation: str, capsule: str, **extra: str) -> None:
    """Set the variables Code Ocean sets in a run."""
    env.setenv("CO_COMPUTATION_ID", computation)
    env.setenv("CO_CAPSULE_ID", capsule)
    for name, value in extra.items():
        env.setenv(name, value)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A committed capsule clone (code/ in a git work tree) with an https origin."""
    root = tmp_path / "clone"
    (root / "code").mkdir(parents=True)
    (root / "code" / "run_capsule.py").write_text("print('hi')\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "remote", "add", "origin", "git@github.com:Org/unit-filter.git")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


def no_git_code(tmp_path: Path) -> Path:
    """A code/ folder outside any work tree, as in a Code Ocean pipeline process."""
    code = tmp_path / "capsule" / "code"
    code.mkdir(parents=True)
    (code / "run_capsule.py").write_text("print('hi')\n")
    return code


def resolve(code_dir: Path, *, posting: bool = True) -> CodeOceanIdentity:
    """Resolve the identity of ``code_dir`` from the environment; it must be Code Ocean's."""
    found = resolve_code_identity(code_dir, posting=posting, allow_dirty=False)
    assert isinstance(found, CodeOceanIdentity)
    return found


def test_capsule_run_in_a_work_tree_takes_the_commit_from_git(
    env: pytest.MonkeyPatch, repo: Path
) -> None:
    """Commit policy: git gives url and version; Code Ocean gives name and data assets."""
    capsule_run(env, co.CAPSULE_RUN, co.EDITABLE_CAPSULE_ID)
    found = resolve(repo / "code")
    head = git(repo, "rev-parse", "HEAD").strip()
    assert (found.url, found.version, found.commit) == (
        "https://github.com/Org/unit-filter",
        head,
        head,
    )
    assert found.name == co.CAPSULE_NAME
    run = found.codeocean
    assert run is not None
    assert run.capsule_url.endswith("/capsule/7739912")
    assert run.pipeline is None
    assert run.release is None
    assert run.data_asset_urls == (
        f"s3://{co.S3_ASSET_BUCKET}/{co.S3_ASSET_ID}",
        f"{env_url(run.capsule_url)}/data-assets/{co.INTERNAL_ASSET_ID}",
    )
    assert run.owner_email == co.OWNER_EMAIL
    assert run.git_url == "https://github.com/AllenNeuralDynamics/aind-analysis-wrapper"


def env_url(capsule_url: str) -> str:
    """The base URL a capsule page URL was built from."""
    return capsule_url.rsplit("/capsule/", 1)[0]


def test_capsule_run_without_git_refuses_to_post_under_commit_policy(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Code Ocean does not expose the commit: posting is refused, naming the release policy."""
    capsule_run(env, co.CAPSULE_RUN, co.EDITABLE_CAPSULE_ID)
    with pytest.raises(CodeOceanError, match="CODE_VERSION_POLICY=release") as caught:
        resolve(no_git_code(tmp_path))
    assert "not in a git work tree" in str(caught.value)


def test_capsule_run_without_git_dry_run_goes_on_as_unknown(
    env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A dry run warns and uses version 'unknown' under the capsule's URL."""
    capsule_run(env, co.CAPSULE_RUN, co.EDITABLE_CAPSULE_ID)
    with caplog.at_level(logging.WARNING, logger="analysis_wrapper"):
        found = resolve(no_git_code(tmp_path), posting=False)
    assert found.version == "unknown"
    assert found.url.endswith("/capsule/7739912")
    assert "exact commit is unknown" in caplog.text


def test_release_run_resolves_major_to_the_minor_released_before_the_run(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Release policy: major 2 ran; 2.1 was the latest 2.x at the start (2.2 came later)."""
    capsule_run(env, co.RELEASE_RUN, co.RELEASE_CAPSULE_ID, CODE_VERSION_POLICY="release")
    found = resolve(no_git_code(tmp_path))
    assert found.version == "2.1"
    assert found.url.endswith("/capsule/4544861")
    assert found.commit is None
    assert found.codeocean is not None and found.codeocean.git_url is None  # a duplicate


def test_pipeline_run_reads_the_pipeline_and_this_capsule_process(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In a pipeline the version is this capsule's process version, matched by capsule id."""
    capsule_run(
        env,
        co.PIPELINE_RUN,
        co.RELEASE_CAPSULE_ID,
        CO_PIPELINE_ID=co.PIPELINE_ID,
        CODE_VERSION_POLICY="release",
    )
    found = resolve(no_git_code(tmp_path))
    assert found.version == "2.1"
    run = found.codeocean
    assert run is not None and run.pipeline is not None
    assert run.pipeline.name == co.PIPELINE_NAME
    assert run.pipeline.url.endswith("/capsule/1160371")
    assert run.data_asset_urls == (f"s3://{co.S3_ASSET_BUCKET}/{co.S3_ASSET_ID}",)


def test_unreleased_pipeline_process_refuses_release_policy(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An unpinned (editable) capsule in a pipeline has no release: posting is refused."""
    capsule_run(
        env,
        co.UNRELEASED_PIPELINE_RUN,
        co.EDITABLE_CAPSULE_ID,
        CO_PIPELINE_ID=co.PIPELINE_ID,
        CODE_VERSION_POLICY="release",
    )
    with pytest.raises(CodeOceanError, match="unreleased version of capsule"):
        resolve(no_git_code(tmp_path))


def test_pipeline_running_this_capsule_at_two_versions_is_ambiguous(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two processes of one capsule at different versions: refused, naming both processes."""
    capsule_run(
        env,
        co.AMBIGUOUS_PIPELINE_RUN,
        co.RELEASE_CAPSULE_ID,
        CO_PIPELINE_ID=co.PIPELINE_ID,
        CODE_VERSION_POLICY="release",
    )
    with pytest.raises(CodeOceanError, match="capsule_aind_analysis_wrapper_2, capsule_aind"):
        resolve(no_git_code(tmp_path))


def test_pipeline_without_this_capsule_is_an_error(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """CO_CAPSULE_ID must name one of the pipeline's processes (no substring matching)."""
    capsule_run(env, co.PIPELINE_RUN, "not-in-the-pipeline", CO_PIPELINE_ID=co.PIPELINE_ID)
    with pytest.raises(CodeOceanError, match="no process of pipeline"):
        resolve(no_git_code(tmp_path))


def test_release_policy_outside_code_ocean_refuses_to_post(
    env: pytest.MonkeyPatch, repo: Path
) -> None:
    """Release names a Code Ocean release: a local run cannot post under it."""
    env.setenv("CODE_VERSION_POLICY", "release")
    with pytest.raises(ProvenanceError, match="not a Code Ocean run"):
        resolve_code_identity(repo / "code", posting=True, allow_dirty=False)


def test_wrong_token_is_401_without_the_token_in_the_message(
    env: pytest.MonkeyPatch, standin: co.CodeOceanStandIn
) -> None:
    """A refused token names the secret to fix and never echoes a token."""
    capsule_run(env, co.CAPSULE_RUN, co.EDITABLE_CAPSULE_ID)
    env.setenv("CODEOCEAN_API_TOKEN", "wrong-" + TOKEN)
    with pytest.raises(CodeOceanError, match="HTTP 401") as caught:
        read_run(CodeOceanSettings())
    assert "CODEOCEAN_API_TOKEN" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_unknown_computation_is_404_naming_the_ids(env: pytest.MonkeyPatch) -> None:
    """A computation Code Ocean does not know: the message names the variables to check."""
    capsule_run(env, "00000000-0000-4000-8000-000000000000", co.EDITABLE_CAPSULE_ID)
    with pytest.raises(CodeOceanError, match="HTTP 404") as caught:
        read_run(CodeOceanSettings())
    assert "CO_COMPUTATION_ID" in str(caught.value)


def test_server_error_is_unavailable_when_posting(env: pytest.MonkeyPatch, repo: Path) -> None:
    """A failed lookup stops a posting run (exit 1), even where git knows the commit."""
    capsule_run(env, co.FAILING_RUN, co.EDITABLE_CAPSULE_ID)
    with pytest.raises(CodeOceanUnavailableError, match="HTTP 500"):
        resolve(repo / "code")


def test_server_error_in_a_dry_run_keeps_the_git_version(
    env: pytest.MonkeyPatch, repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A dry run goes on without Code Ocean metadata, saying so."""
    capsule_run(env, co.FAILING_RUN, co.EDITABLE_CAPSULE_ID)
    with caplog.at_level(logging.WARNING, logger="analysis_wrapper"):
        found = resolve(repo / "code", posting=False)
    assert found.version == git(repo, "rev-parse", "HEAD").strip()
    assert found.codeocean is None
    assert "without Code Ocean metadata" in caplog.text


def test_unreachable_server_is_unavailable(
    env: pytest.MonkeyPatch, standin: co.CodeOceanStandIn
) -> None:
    """A server that is down: a one-line error naming the domain, no token."""
    capsule_run(env, co.CAPSULE_RUN, co.EDITABLE_CAPSULE_ID)
    url = standin.url
    standin.stop()
    with pytest.raises(CodeOceanUnavailableError, match="could not be reached") as caught:
        read_run(CodeOceanSettings())
    assert url in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_missing_domain_or_token_names_the_setting(env: pytest.MonkeyPatch) -> None:
    """Without CODEOCEAN_DOMAIN or the token secret, the error says which to set."""
    capsule_run(env, co.CAPSULE_RUN, co.EDITABLE_CAPSULE_ID)
    env.delenv("CODEOCEAN_API_TOKEN")
    with pytest.raises(CodeOceanError, match="CODEOCEAN_API_TOKEN is not set"):
        read_run(CodeOceanSettings())
    env.setenv("CODEOCEAN_API_TOKEN", TOKEN)
    env.delenv("CODEOCEAN_DOMAIN")
    with pytest.raises(CodeOceanError, match="CODEOCEAN_DOMAIN is not set"):
        read_run(CodeOceanSettings())


def test_token_travels_only_as_basic_credentials(
    env: pytest.MonkeyPatch, standin: co.CodeOceanStandIn
) -> None:
    """Every request carries the token in Authorization only, never in the path or query."""
    capsule_run(env, co.PIPELINE_RUN, co.RELEASE_CAPSULE_ID, CO_PIPELINE_ID=co.PIPELINE_ID)
    read_run(CodeOceanSettings())
    assert sorted(r.path.split("/")[3] for r in standin.requests) == [
        "capsules",
        "computations",
        "data_assets",
        "pipelines",
    ]
    expected = "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode()
    for request in standin.requests:
        assert TOKEN not in request.path
        assert request.headers["Authorization"] == expected
        leaked = [k for k, v in request.headers.items() if TOKEN in v and k != "Authorization"]
        assert leaked == []


def test_old_server_refusing_min_server_version_degrades_with_a_warning(
    env: pytest.MonkeyPatch, standin: co.CodeOceanStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """A server older than the SDK's header refuses it with 400; the reads go on without it."""
    standin.server_version = "4.2.0"  # older than any supported SDK asks for (0.15: 4.3.0)
    capsule_run(env, co.CAPSULE_RUN, co.EDITABLE_CAPSULE_ID)
    with caplog.at_level(logging.WARNING, logger="analysis_wrapper"):
        run = read_run(CodeOceanSettings())
    assert run.capsule_name == co.CAPSULE_NAME
    assert "CODEOCEAN_MIN_SERVER_VERSION" in caplog.text
    sent = [r.headers.get("Min-Server-Version") for r in standin.requests]
    assert sent[0] is not None and sent[0] >= "4.3.0"
    assert sent[1:] == [None] * (len(sent) - 1)


def test_min_server_version_setting_is_sent_as_given(
    env: pytest.MonkeyPatch, standin: co.CodeOceanStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """CODEOCEAN_MIN_SERVER_VERSION pins the header (no 400, no warning); 'none' drops it."""
    standin.server_version = "4.3.0"
    capsule_run(env, co.CAPSULE_RUN, co.EDITABLE_CAPSULE_ID)
    env.setenv("CODEOCEAN_MIN_SERVER_VERSION", "4.3.0")
    with caplog.at_level(logging.WARNING, logger="analysis_wrapper"):
        read_run(CodeOceanSettings())
    assert {r.headers.get("Min-Server-Version") for r in standin.requests} == {"4.3.0"}
    assert "refused" not in caplog.text
    standin.requests.clear()
    env.setenv("CODEOCEAN_MIN_SERVER_VERSION", "none")
    read_run(CodeOceanSettings())
    assert {r.headers.get("Min-Server-Version") for r in standin.requests} == {None}


def test_pinned_min_server_version_too_new_is_an_error_not_a_retry(
    env: pytest.MonkeyPatch, standin: co.CodeOceanStandIn
) -> None:
    """A version the user pinned is never dropped silently: the 400 is reported."""
    standin.server_version = "4.3.0"
    capsule_run(env, co.CAPSULE_RUN, co.EDITABLE_CAPSULE_ID)
    env.setenv("CODEOCEAN_MIN_SERVER_VERSION", "9.0.0")
    with pytest.raises(CodeOceanError, match="HTTP 400"):
        read_run(CodeOceanSettings())
    assert len(standin.requests) == 1
