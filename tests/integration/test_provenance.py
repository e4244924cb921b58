"""Code identity from real git repositories: versions, remote URLs and the dirty-tree policy."""

from __future__ import annotations

import getpass
import re
from pathlib import Path

import pytest

from analysis_wrapper import CodeIdentity, ProvenanceError
from analysis_wrapper.config.project import DEFAULT_CODE_PATHS, project_settings
from analysis_wrapper.errors import UsageError
from analysis_wrapper.identity.provenance import (
    default_experimenter,
    normalise_remote_url,
    resolve_code_identity,
)
from conftest import git

DIRTY_VERSION = r"^{sha}\+dirty\.[0-9a-f]{{12}}$"
REMOTE = "https://github.com/example-lab/example-capsule.git"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A committed repository shaped like a capsule: code/, data/ and a .gitignore."""
    root = tmp_path / "repo"
    (root / "code").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "code" / "run_capsule.py").write_text("print('hello')\n")
    (root / "code" / "helpers.py").write_text("VALUE = 1\n")
    (root / "data" / "input.json").write_text("{}\n")
    (root / ".gitignore").write_text("*.log\n__pycache__/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "remote", "add", "origin", REMOTE)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


def head(root: Path) -> str:
    """The commit git says is checked out."""
    return git(root, "rev-parse", "HEAD").strip()


def identity(
    root: Path,
    *,
    posting: bool = True,
    allow_dirty: bool = False,
    paths: tuple[str, ...] = DEFAULT_CODE_PATHS,
) -> CodeIdentity:
    """Resolve the code identity of ``root/code``."""
    return resolve_code_identity(
        root / "code", posting=posting, allow_dirty=allow_dirty, paths=paths
    )


def test_clean_tree_version_is_head(repo: Path) -> None:
    """A clean tree posts under the checked-out commit, not dirty."""
    found = identity(repo)
    assert found.version == head(repo)
    assert re.fullmatch(r"[0-9a-f]{40}", found.version)
    assert found.commit == head(repo)
    assert found.dirty is False


def test_version_follows_checked_out_commit(repo: Path) -> None:
    """After checking out an older commit, the version is that commit, not the branch head."""
    first = head(repo)
    (repo / "code" / "helpers.py").write_text("VALUE = 2\n")
    git(repo, "commit", "-q", "-am", "second")
    assert identity(repo).version == head(repo) != first
    git(repo, "checkout", "-q", first)
    assert identity(repo).version == first


def test_url_normalised_from_ssh_remote(repo: Path) -> None:
    """An SCP-style SSH remote becomes an https URL without .git."""
    git(repo, "remote", "set-url", "origin", "git@github.com:AllenNeuralDynamics/My-Capsule.git")
    found = identity(repo)
    assert found.url == "https://github.com/AllenNeuralDynamics/My-Capsule"
    assert found.version == head(repo)


def test_https_and_ssh_clones_agree(tmp_path: Path, repo: Path) -> None:
    """Two clones of one repository, one with an SSH and one with an HTTPS remote, agree."""
    ssh_clone = tmp_path / "ssh_clone"
    https_clone = tmp_path / "https_clone"
    git(tmp_path, "clone", "-q", str(repo), str(ssh_clone))
    git(tmp_path, "clone", "-q", str(repo), str(https_clone))
    git(ssh_clone, "remote", "set-url", "origin", "ssh://git@github.com/Org/Repo.git")
    git(
        https_clone,
        "remote",
        "set-url",
        "origin",
        "https://someone:ghp_SECRETTOKEN@github.com/Org/Repo.git/",
    )
    from_ssh = identity(ssh_clone)
    from_https = identity(https_clone)
    assert from_ssh.url == from_https.url == "https://github.com/Org/Repo"
    assert from_ssh.version == from_https.version == head(repo)
    assert "SECRETTOKEN" not in from_https.url
    assert "someone" not in from_https.url


def test_origin_preferred_over_other_remotes(repo: Path) -> None:
    """With several remotes, origin names the code even when another sorts first."""
    git(repo, "remote", "add", "aaa-fork", "https://github.com/Someone/Fork.git")
    git(repo, "remote", "set-url", "origin", "https://github.com/Org/Repo.git")
    assert identity(repo).url == "https://github.com/Org/Repo"


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("git@github.com:Org/Repo.git", "https://github.com/Org/Repo"),
        ("git@GitHub.com:Org/Repo", "https://github.com/Org/Repo"),
        ("github.com:Org/Repo.git", "https://github.com/Org/Repo"),
        ("ssh://git@github.com/Org/Repo.git", "https://github.com/Org/Repo"),
        ("ssh://git@github.com:22/Org/Repo.git", "https://github.com/Org/Repo"),
        ("git+ssh://git@github.com/Org/Repo.git", "https://github.com/Org/Repo"),
        ("https://user:token@github.com/Org/Repo.git/", "https://github.com/Org/Repo"),
        ("https://token@github.com/Org/Repo.git", "https://github.com/Org/Repo"),
        ("https://github.com/Org/Repo", "https://github.com/Org/Repo"),
        ("  https://github.com/Org/Repo.git\n", "https://github.com/Org/Repo"),
        (
            "https://gitlab.example.org:8443/Group/Sub/Repo.git",
            "https://gitlab.example.org:8443/Group/Sub/Repo",
        ),
        ("/srv/git/capsule.git", "/srv/git/capsule"),
        ("file:///srv/git/capsule.git", "/srv/git/capsule"),
    ],
)
def test_normalise_remote_url(remote: str, expected: str) -> None:
    """Remote URLs of every common form normalise to one https form (paths stay paths)."""
    assert normalise_remote_url(remote) == expected


@pytest.mark.parametrize(
    "remote",
    [
        "https://user:token@github.com/Org/Repo.git",
        "https://token@github.com/Org/Repo.git",
        "http://user:token@example.org:8080/Org/Repo.git",
        "ssh://user:token@github.com/Org/Repo.git",
        "git+ssh://user:token@github.com:2222/Org/Repo.git",
        "token@github.com:Org/Repo.git",
    ],
)
def test_normalise_remote_url_never_keeps_credentials(remote: str) -> None:
    """No credential (user name or token) survives normalisation."""
    url = normalise_remote_url(remote)
    assert "token" not in url
    assert "user" not in url
    assert "@" not in url


def test_no_remote_url_is_repository_path_in_a_dry_run(repo: Path) -> None:
    """Without a remote, a dry run (or a plan) names the code by the repository's top folder."""
    git(repo, "remote", "remove", "origin")
    toplevel = git(repo, "rev-parse", "--show-toplevel").strip()
    found = identity(repo, posting=False)
    assert found.url == toplevel
    assert Path(found.url) == repo.resolve()


def test_posting_without_a_remote_is_refused_naming_the_remedy(repo: Path) -> None:
    """Posting would name a checkout's path as the code: refused, in one line, with the fix."""
    git(repo, "remote", "remove", "origin")
    with pytest.raises(ProvenanceError) as caught:
        identity(repo)
    message = str(caught.value)
    assert isinstance(caught.value, UsageError)  # exit 2
    assert "\n" not in message
    assert str(repo.resolve()) in message
    assert "git remote add origin <url>" in message


def test_clone_of_a_local_clone_follows_it_to_its_remote(tmp_path: Path, repo: Path) -> None:
    """A local origin: the URL is that repository's own remote, followed hop by hop."""
    first = tmp_path / "first"
    second = tmp_path / "second"
    git(tmp_path, "clone", "-q", str(repo), str(first))
    git(tmp_path, "clone", "-q", f"file://{first}", str(second))
    for clone in (first, second):
        found = identity(clone)
        assert found.url == "https://github.com/example-lab/example-capsule"
        assert found.version == head(repo)


def test_clone_of_a_local_repository_without_remote_posts_under_its_path(
    tmp_path: Path, repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """CI's fresh clone of a local checkout posts, named by that checkout, with a warning.

    Every clone of one local repository then names the code alike (the same keys), and
    no clone's own path gets into a record.
    """
    git(repo, "remote", "remove", "origin")
    one, two = tmp_path / "one", tmp_path / "two"
    git(tmp_path, "clone", "-q", str(repo), str(one))
    git(tmp_path, "clone", "-q", f"{repo}/", str(two))  # spelled another way
    with caplog.at_level("WARNING", logger="analysis_wrapper.identity.provenance"):
        found = identity(one)
    assert found.url == str(repo) == identity(two).url
    assert "git -C" in caplog.text and "remote add origin <url>" in caplog.text


def test_local_remotes_that_loop_end_at_a_path(tmp_path: Path, repo: Path) -> None:
    """Two repositories naming each other as origin: the chain ends at the other's path."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(repo, "remote", "set-url", "origin", str(clone))
    assert identity(clone).url == str(repo)
    assert identity(repo).url == str(clone)


def test_repository_that_is_its_own_origin_is_refused(repo: Path) -> None:
    """An origin naming the repository itself is no remote: posting is refused."""
    git(repo, "remote", "set-url", "origin", str(repo))
    with pytest.raises(ProvenanceError, match="has no remote"):
        identity(repo)


def test_local_remote_that_is_gone_names_its_path(tmp_path: Path, repo: Path) -> None:
    """A local origin that no longer exists names the code by its path, as before."""
    git(repo, "remote", "set-url", "origin", str(tmp_path / "moved-away.git"))
    assert identity(repo).url == str(tmp_path / "moved-away")


def test_modified_tracked_file_refused(repo: Path) -> None:
    """A modified tracked file stops a posting run; the message names it and --allow_dirty."""
    (repo / "code" / "helpers.py").write_text("VALUE = 99\n")
    with pytest.raises(ProvenanceError) as caught:
        identity(repo)
    message = str(caught.value)
    assert "code/helpers.py" in message
    assert "--allow_dirty" in message
    assert "run_capsule.py" not in message  # only what changed is listed


def test_changes_outside_the_code_paths_are_not_code(repo: Path) -> None:
    """Changes outside the code paths neither block a post nor change the code tree.

    Job files, the README, .gitignore; a change under environment/ (a code path) does both.
    """
    clean = identity(repo)
    assert clean.tree is not None and not clean.dirty
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "README.md").write_text("notes\n")
    (repo / "data" / "job_dict").mkdir(parents=True)
    (repo / "data" / "job_dict" / "new.json").write_text("{}")
    assert identity(repo) == clean
    (repo / "environment").mkdir()
    (repo / "environment" / "Dockerfile").write_text("FROM python:3.11\n")
    with pytest.raises(ProvenanceError, match=r"environment/Dockerfile"):
        identity(repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "environment and notes")
    committed = identity(repo)
    assert committed.tree != clean.tree and committed.version != clean.version


def test_the_code_paths_are_the_projects_setting(repo: Path) -> None:
    """[tool.analysis-wrapper] code_paths in pyproject.toml: a folder outside it is not code."""
    (repo / "pyproject.toml").write_text('[tool.analysis-wrapper]\ncode_paths = ["code"]\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "settings")
    paths = project_settings(repo).code_paths
    assert paths == ("code",)
    before = identity(repo, paths=paths)
    (repo / "environment").mkdir()
    (repo / "environment" / "Dockerfile").write_text("FROM python:3.11\n")
    assert identity(repo, paths=paths) == before
    (repo / "pyproject.toml").write_text('[tool.analysis-wrapper]\ncode_paths = ["../up"]\n')
    with pytest.raises(UsageError, match=r"pyproject.toml: \[tool.analysis-wrapper\] code_paths"):
        project_settings(repo)


def test_deleted_tracked_file_refused(repo: Path) -> None:
    """A deleted tracked file under code/ is an uncommitted change."""
    (repo / "code" / "helpers.py").unlink()
    with pytest.raises(ProvenanceError, match=re.escape("code/helpers.py")):
        identity(repo)


def test_staged_change_refused(repo: Path) -> None:
    """A change staged but not committed is still uncommitted."""
    (repo / "code" / "helpers.py").write_text("VALUE = 3\n")
    git(repo, "add", "code/helpers.py")
    with pytest.raises(ProvenanceError, match=re.escape("code/helpers.py")):
        identity(repo)


def test_untracked_file_under_code_refused(repo: Path) -> None:
    """An untracked, unignored file under code/ is uncommitted code."""
    (repo / "code" / "sub").mkdir()
    (repo / "code" / "sub" / "new_module.py").write_text("X = 1\n")
    with pytest.raises(ProvenanceError) as caught:
        identity(repo)
    assert "code/sub/new_module.py" in str(caught.value)
    assert "--allow_dirty" in str(caught.value)


def test_untracked_file_with_unusual_name_named_as_is(repo: Path) -> None:
    """An untracked file whose name has a space and non-ASCII letters is named unquoted."""
    (repo / "code" / "névé analysis.py").write_text("X = 1\n")
    with pytest.raises(ProvenanceError, match=re.escape("code/névé analysis.py")):
        identity(repo)


def test_untracked_file_outside_code_not_dirty(repo: Path) -> None:
    """An untracked file in data/ does not make the code dirty."""
    (repo / "data" / "new.json").write_text('{"a": 1}\n')
    (repo / "notes.txt").write_text("scratch\n")
    (repo / "code_notes").mkdir()  # a sibling whose name merely starts with "code"
    (repo / "code_notes" / "draft.py").write_text("Y = 1\n")
    found = identity(repo)
    assert found.version == head(repo)
    assert found.dirty is False


def test_ignored_file_under_code_not_dirty(repo: Path) -> None:
    """Files under code/ that .gitignore ignores are not uncommitted code."""
    (repo / "code" / "debug.log").write_text("noise\n")
    (repo / "code" / "__pycache__").mkdir()
    (repo / "code" / "__pycache__" / "helpers.cpython-311.pyc").write_bytes(b"\x00\x01")
    found = identity(repo)
    assert found.version == head(repo)
    assert found.dirty is False


def test_allow_dirty_version_and_digest(repo: Path) -> None:
    """--allow_dirty posts under <sha>+dirty.<12 hex>; the digest follows the changes only."""
    sha = head(repo)
    pattern = DIRTY_VERSION.format(sha=sha)
    (repo / "code" / "helpers.py").write_text("VALUE = 2\n")
    first = identity(repo, allow_dirty=True)
    assert re.fullmatch(pattern, first.version), first.version
    assert first.dirty is True
    assert first.commit == sha
    assert identity(repo, allow_dirty=True).version == first.version  # stable

    (repo / "code" / "helpers.py").write_text("VALUE = 3\n")
    second = identity(repo, allow_dirty=True)
    assert re.fullmatch(pattern, second.version)
    assert second.version != first.version  # the diff changed

    (repo / "code" / "extra.py").write_text("A = 1\n")
    third = identity(repo, allow_dirty=True)
    assert re.fullmatch(pattern, third.version)
    assert third.version != second.version  # an untracked file appeared
    assert identity(repo, allow_dirty=True).version == third.version  # stable

    (repo / "code" / "extra.py").write_text("A = 2\n")  # same name, other bytes
    fourth = identity(repo, allow_dirty=True)
    assert re.fullmatch(pattern, fourth.version)
    assert fourth.version != third.version

    (repo / "data" / "unrelated.json").write_text("{}\n")  # outside code/: no effect
    assert identity(repo, allow_dirty=True).version == fourth.version

    (repo / "code" / "helpers.py").write_text("VALUE = 1\n")  # back to the commit
    (repo / "code" / "extra.py").unlink()
    assert identity(repo, allow_dirty=True).version == sha


def test_dirty_digest_ignores_personal_diff_settings(repo: Path) -> None:
    """The same uncommitted change gives the same version whatever the user's diff settings."""
    (repo / "code" / "helpers.py").write_text("VALUE = 2\n")
    plain = identity(repo, allow_dirty=True).version
    git(repo, "config", "diff.noprefix", "true")
    assert identity(repo, allow_dirty=True).version == plain
    git(repo, "config", "--unset", "diff.noprefix")
    git(repo, "config", "color.diff", "always")
    assert identity(repo, allow_dirty=True).version == plain


def test_untracked_file_name_enters_digest(repo: Path) -> None:
    """Two untracked files with the same bytes but different names give different digests."""
    (repo / "code" / "one.py").write_text("A = 1\n")
    first = identity(repo, allow_dirty=True).version
    (repo / "code" / "one.py").rename(repo / "code" / "two.py")
    second = identity(repo, allow_dirty=True).version
    assert first != second


def test_dry_run_with_dirty_tree(repo: Path) -> None:
    """A dry run (not posting) never refuses a dirty tree; the version says dirty."""
    (repo / "code" / "helpers.py").write_text("VALUE = 5\n")
    (repo / "code" / "new.py").write_text("B = 1\n")
    found = identity(repo, posting=False)
    assert re.fullmatch(DIRTY_VERSION.format(sha=head(repo)), found.version)
    assert found.dirty is True


def test_not_a_git_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside git, a dry run is 'unversioned' and posting is refused."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    code = tmp_path / "plain" / "code"
    code.mkdir(parents=True)
    (code / "run_capsule.py").write_text("print('hi')\n")
    found = resolve_code_identity(code, posting=False, allow_dirty=False)
    assert found.version == "unversioned"
    with pytest.raises(ProvenanceError, match="not in a git work tree"):
        resolve_code_identity(code, posting=True, allow_dirty=False)
    with pytest.raises(ProvenanceError):
        resolve_code_identity(code, posting=True, allow_dirty=True)


def test_repository_without_commit(tmp_path: Path) -> None:
    """A repository with no commit yet cannot name a version, posting or not."""
    root = tmp_path / "fresh"
    (root / "code").mkdir(parents=True)
    (root / "code" / "run_capsule.py").write_text("print('hi')\n")
    git(root, "init", "-q", "-b", "main")
    for posting in (True, False):
        with pytest.raises(ProvenanceError, match="no commit"):
            resolve_code_identity(root / "code", posting=posting, allow_dirty=True)


def test_default_experimenter_prefers_codeocean_email(repo: Path) -> None:
    """CODEOCEAN_EMAIL wins over git's user.email, which wins over the OS user."""
    git(repo, "config", "user.email", "scientist@example.org")
    assert default_experimenter(repo / "code", "co-user@example.org") == "co-user@example.org"
    assert default_experimenter(repo / "code", None) == "scientist@example.org"
    assert default_experimenter(repo / "code", "") == "scientist@example.org"


def test_default_experimenter_falls_back_to_os_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no CODEOCEAN_EMAIL and no git email anywhere, the OS user name is used."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "empty-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for name in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "nowhere" / "code"
    folder.mkdir(parents=True)
    assert default_experimenter(folder, None) == getpass.getuser()
