"""Where the code identity comes from: git, and Code Ocean inside a Code Ocean run.

:func:`resolve_code_identity` is the one entry point the runner uses. Inside Code
Ocean it hands over to :mod:`analysis_wrapper.identity.codeocean`, which applies the version
policy (``CODE_VERSION_POLICY``: commit or release). It applies the dirty-tree policy: with
posting on (``--dry_run 0``), uncommitted changes are refused unless
``--allow_dirty 1``, in which case the version says so:
``<sha>+dirty.<first 12 hex of sha256(git diff HEAD, untracked paths and bytes)>``.

The code URL is the ``origin`` remote (else the first remote by name) in https form.
A remote that is itself a local path (a clone of a clone, as CI makes with
``git clone /some/path``) is followed to that repository's own remote, and on, until a
URL is found. Where no URL is found:

- the repository has no remote at all: its own path would name the code, a path that
  means nothing on another machine and changes with each checkout. Dry runs and
  ``--plan`` use it; posting is refused, naming the remedy (``git remote add origin``);
- the repository was cloned from a local repository that has no remote: the path of
  that repository names the code, with a warning. The user chose it as the origin,
  and every clone of it gets the same URL, so the same keys.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from ..config.settings import CodeOceanSettings, VersionPolicy
from ..errors import ProvenanceError
from .key import CodeIdentity

log = logging.getLogger(__name__)

_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?!//)(?P<path>.+)$")
_MAX_LISTED_CHANGES = 8

# `git diff HEAD` with every option a user's git config could change pinned, so the
# same uncommitted change gives the same +dirty digest on every machine.
_STABLE_DIFF = [
    "-c", "diff.noprefix=false",
    "-c", "diff.mnemonicPrefix=false",
    "-c", "diff.relative=false",
    "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--no-textconv",
    "--no-renames", "--diff-algorithm=myers", "--indent-heuristic", "--unified=3",
    "--inter-hunk-context=0", "--src-prefix=a/", "--dst-prefix=b/", "--ignore-submodules=none",
]  # fmt: skip


@dataclass(frozen=True)
class GitState:
    """What git says about the work tree that holds the code."""

    toplevel: Path
    commit: str
    url: str
    uncommitted: tuple[str, ...]
    digest: str | None
    local_hops: int | None = None
    """``None`` when ``url`` is a URL; else how many local remotes were followed to
    the repository whose path it is (``0``: this one, which has no remote)."""

    @property
    def version(self) -> str:
        """The commit, with ``+dirty.<digest>`` when there are uncommitted changes."""
        if not self.uncommitted:
            return self.commit
        return f"{self.commit}+dirty.{self.digest}"


def normalise_remote_url(url: str) -> str:
    """Put a git remote URL in one form, so SSH and HTTPS clones agree.

    ``git@github.com:Org/Repo.git``, ``ssh://git@github.com/Org/Repo`` and
    ``https://user:token@github.com/Org/Repo.git`` all become
    ``https://github.com/Org/Repo``. Credentials are always dropped. Local paths
    stay paths, without ``.git``.
    """
    text = url.strip()
    match = _SCP_LIKE.match(text)
    if match and "://" not in text:
        host, path = match.group("host"), match.group("path")
        return f"https://{host.lower()}/{_strip_git_suffix(path.strip('/'))}"
    parts = urlsplit(text)
    if not parts.scheme or parts.scheme == "file":
        return (
            _strip_git_suffix(parts.path.rstrip("/"))
            if parts.scheme
            else _strip_git_suffix(text.rstrip("/"))
        )
    host = (parts.hostname or "").lower()
    scheme = parts.scheme.lower()
    if scheme in ("ssh", "git", "git+ssh", "ssh+git"):
        scheme, netloc = "https", host
    else:
        netloc = host if parts.port is None else f"{host}:{parts.port}"
    path = _strip_git_suffix(parts.path.rstrip("/"))
    return urlunsplit((scheme, netloc, path, "", ""))


def _strip_git_suffix(path: str) -> str:
    return path[: -len(".git")] if path.endswith(".git") else path


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    # Never let a configured pager, editor or credential prompt block a run.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
    return subprocess.run(
        ["git", "-c", "core.quotepath=off", *args],
        cwd=cwd,
        capture_output=True,
        env=env,
        check=False,
    )


def git_state(code_dir: Path) -> GitState | None:
    """Read the commit, remote and uncommitted changes of the tree holding ``code_dir``.

    Returns ``None`` when ``code_dir`` is not inside a git work tree (or git is not
    installed).

    Raises
    ------
    ProvenanceError
        If the repository has no commit yet.
    """
    try:
        # One call for both: start-up time matters (a git call costs a few ms).
        found = _git(["rev-parse", "--show-toplevel", "HEAD"], code_dir)
    except FileNotFoundError:
        return None
    lines = found.stdout.decode().splitlines()
    if not lines:
        return None  # not in a work tree
    toplevel = Path(lines[0])
    if found.returncode != 0 or len(lines) < 2:
        raise ProvenanceError(
            f"the git repository at {toplevel} has no commit yet; commit the code first "
            "(git add -A && git commit -m 'first version')"
        )
    commit = lines[1].strip()
    uncommitted, untracked = _uncommitted(toplevel, code_dir)
    digest = _change_digest(toplevel, untracked) if uncommitted else None
    url, local_hops = _code_url(toplevel)
    return GitState(toplevel, commit, url, tuple(uncommitted), digest, local_hops)


_MAX_LOCAL_HOPS = 8


def _code_url(toplevel: Path) -> tuple[str, int | None]:
    """The URL that names the code, following remotes that are local paths.

    Returns the normalised URL and ``None``; or, when no URL is found, a path and how
    many local remotes were followed: ``0`` with the repository's own path when it has
    no remote, else the last local remote (normalised, as earlier releases named it).
    """
    remote = _remote_url(toplevel)
    if remote is None:
        return str(toplevel), 0
    repository, named, seen, hops = toplevel, str(toplevel), {toplevel.resolve()}, 0
    while True:
        following = _local_remote(remote, repository)
        if following is None:
            return normalise_remote_url(remote), None
        if following.resolve() in seen:  # a loop: the last repository reached names it
            return named, hops
        hops += 1
        further = _remote_url(following) if _is_repository(following) else None
        if further is None or hops >= _MAX_LOCAL_HOPS:
            return normalise_remote_url(remote), hops
        seen.add(following.resolve())
        repository, named, remote = following, normalise_remote_url(remote), further


def _is_repository(folder: Path) -> bool:
    """A work tree (``.git`` folder or file) or a bare repository (``HEAD``)."""
    return (folder / ".git").exists() or (folder / "HEAD").is_file()


def _remote_url(repository: Path) -> str | None:
    """``origin``'s URL (else the first remote's, by name) as configured, or ``None``."""
    listed = _git(["config", "--get-regexp", r"^remote\..*\.url$"], repository).stdout.decode()
    urls = {}
    for line in listed.splitlines():
        setting, _, url = line.partition(" ")
        urls[setting.removeprefix("remote.").removesuffix(".url")] = url.strip()
    if not urls:
        return None
    return urls["origin" if "origin" in urls else sorted(urls)[0]] or None


def _local_remote(remote: str, repository: Path) -> Path | None:
    """The folder a remote names when it is a local path or ``file://`` URL, else ``None``."""
    if _SCP_LIKE.match(remote) and "://" not in remote:
        return None  # host:path, an SSH remote
    parts = urlsplit(remote)
    if parts.scheme not in ("", "file"):
        return None
    path = Path(unquote(parts.path) if parts.scheme else remote)
    return path if path.is_absolute() else repository / path


def _uncommitted(toplevel: Path, code_dir: Path) -> tuple[list[str], list[str]]:
    """List modified tracked files anywhere, and untracked, unignored files in code/."""
    status = _git(["status", "--porcelain=v1", "-z", "--untracked-files=all"], toplevel)
    entries = status.stdout.decode("utf-8", "surrogateescape").split("\0")
    code_prefix = code_dir.resolve().relative_to(toplevel.resolve()).as_posix()
    code_prefix = "" if code_prefix == "." else code_prefix + "/"
    changes: list[str] = []
    untracked: list[str] = []
    skip_next = False
    for entry in entries:
        if skip_next:  # the source path of a rename or copy
            skip_next = False
            continue
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if code == "??":
            if path.startswith(code_prefix):
                changes.append(f"?? {path}")
                untracked.append(path)
            continue
        skip_next = code[0] in "RC"
        changes.append(f"{code.strip()} {path}")
    return changes, sorted(untracked)


def _change_digest(toplevel: Path, untracked: list[str]) -> str:
    digest = hashlib.sha256(_git(_STABLE_DIFF, toplevel).stdout)
    for path in untracked:
        digest.update(b"\0untracked\0" + path.encode("utf-8", "surrogateescape") + b"\0")
        with contextlib.suppress(OSError):  # vanished since git status; its name counts
            digest.update((toplevel / path).read_bytes())
    return digest.hexdigest()[:12]


def resolve_code_identity(
    code_dir: Path,
    *,
    posting: bool,
    allow_dirty: bool,
    settings: CodeOceanSettings | None = None,
) -> CodeIdentity:
    """Find out which code is running, and refuse when posting would misattribute it.

    Git, when ``code/`` is in a work tree; inside Code Ocean (``CO_COMPUTATION_ID``
    set) the capsule, pipeline and release come from the Code Ocean API, and the
    version follows ``CODE_VERSION_POLICY`` (see :mod:`analysis_wrapper.identity.codeocean`).

    Parameters
    ----------
    code_dir : Path
        The capsule's ``code/`` folder.
    posting : bool
        True when results and records will be written (``--dry_run 0``).
    allow_dirty : bool
        Run with uncommitted changes anyway, under a ``+dirty`` version.
    settings : CodeOceanSettings, optional
        The Code Ocean environment; read from the environment variables by default.

    Raises
    ------
    ProvenanceError
        When posting with uncommitted changes and without ``allow_dirty``, or when
        the code version cannot be found while posting.
    StoreError
        When posting inside Code Ocean and its API cannot be reached.
    """
    settings = settings if settings is not None else CodeOceanSettings()
    if settings.in_codeocean or settings.version_policy is VersionPolicy.RELEASE:
        # Imported here: outside Code Ocean the API client is never needed.
        from .codeocean import resolve_codeocean_identity

        return resolve_codeocean_identity(
            settings,
            lambda: git_identity(code_dir, posting=posting, allow_dirty=allow_dirty),
            posting=posting,
            code_dir=code_dir,
        )
    identity = git_identity(code_dir, posting=posting, allow_dirty=allow_dirty)
    if identity is None:
        if posting:
            raise ProvenanceError(
                f"{code_dir} is not in a git work tree, so the code version is unknown and "
                "results could not be traced to code; run from a git clone of the capsule"
            )
        log.warning("%s is not in a git work tree: code version 'unversioned'", code_dir)
        return CodeIdentity(url=code_dir.resolve().as_posix(), version="unversioned")
    return identity


def git_identity(code_dir: Path, *, posting: bool, allow_dirty: bool) -> CodeIdentity | None:
    """The commit and remote of the work tree holding ``code_dir`` (``None`` outside one).

    Raises
    ------
    ProvenanceError
        When posting with uncommitted changes and without ``allow_dirty``.
    """
    state = git_state(code_dir)
    if state is None:
        return None
    if state.uncommitted and posting and not allow_dirty:
        listed = ", ".join(state.uncommitted[:_MAX_LISTED_CHANGES])
        more = len(state.uncommitted) - _MAX_LISTED_CHANGES
        if more > 0:
            listed += f" and {more} more"
        raise ProvenanceError(
            f"uncommitted changes in {state.toplevel}: {listed}; commit them "
            "(git add -A && git commit), or pass --allow_dirty 1 to post under version "
            f"{state.version}"
        )
    if state.uncommitted:
        log.warning("running with uncommitted changes: version %s", state.version)
    if state.local_hops == 0 and posting:
        raise ProvenanceError(
            f"the git repository {state.toplevel} has no remote, so the results would name "
            "this checkout's path as their code; add the repository's URL with "
            "git remote add origin <url>, or run with --dry_run 1"
        )
    if state.local_hops and posting:
        log.warning(
            "code URL is the local repository %s (the origin of this clone has no remote "
            "of its own); to name the code by its URL: git -C %s remote add origin <url>",
            state.url,
            state.url,
        )
    name = state.url.rstrip("/").rsplit("/", 1)[-1] or None
    return CodeIdentity(
        url=state.url,
        version=state.version,
        commit=state.commit,
        name=name,
        dirty=bool(state.uncommitted),
    )


def default_experimenter(code_dir: Path, codeocean_email: str | None) -> str:
    """Who ran the analysis: ``CODEOCEAN_EMAIL``, else the git user email, else the OS user."""
    if codeocean_email:
        return codeocean_email
    try:
        email = _git(["config", "user.email"], code_dir).stdout.decode().strip()
    except FileNotFoundError:
        email = ""
    if email:
        return email
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
