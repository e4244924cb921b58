"""Where the code identity comes from: git, and Code Ocean inside a Code Ocean run.

:func:`resolve_code_identity` is the one entry point the runner uses. Inside Code
Ocean it hands over to :mod:`analysis_wrapper.identity.codeocean`, which applies the version
policy (``CODE_VERSION_POLICY``: commit or release). It applies the dirty-tree policy: with
posting on (``--dry_run 0``), uncommitted changes are refused unless
``--allow_dirty 1``, in which case the version says so:
``<sha>+dirty.<first 12 hex of sha256(git diff HEAD, untracked paths and bytes)>``.

What enters the key is the *code tree*: the sha256 of the git trees of the project's
code paths (``code/`` and ``environment/`` by default, see
:mod:`analysis_wrapper.config.project`) at HEAD, with ``+dirty.<digest>`` when they
have uncommitted changes. Only changes under those paths make a tree dirty: job
files, the README and the App Panel can be edited and committed without changing a
key or blocking a post. The record keeps the exact commit, its URL, and whether a
remote branch holds it (:attr:`GitState.pushed`).

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
import functools
import getpass
import hashlib
import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from ..config.project import DEFAULT_CODE_PATHS
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
    tree: str | None = None
    """The code tree at HEAD (:func:`code_tree_digest`)."""
    paths: tuple[str, ...] = ()
    """The code paths, relative to the capsule."""

    @property
    def version(self) -> str:
        """The commit, with ``+dirty.<digest>`` when there are uncommitted changes."""
        if not self.uncommitted:
            return self.commit
        return f"{self.commit}+dirty.{self.digest}"

    @property
    def key_tree(self) -> str | None:
        """The code tree, with ``+dirty.<digest>`` when the code paths have changes."""
        if not self.uncommitted or self.tree is None:
            return self.tree
        return f"{self.tree}+dirty.{self.digest}"


def code_tree_digest(trees: dict[str, str | None]) -> str:
    """The sha256 (hex) of each code path's git tree id, by path (``None``: absent).

    Pure: the same trees give the same digest in any repository, so a clone, a fork
    and a rebase onto the same content agree.
    """
    lines = "".join(f"{path} {trees[path] or '-'}\n" for path in sorted(trees))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


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


def git_state(code_dir: Path, paths: tuple[str, ...] = DEFAULT_CODE_PATHS) -> GitState | None:
    """Read the commit, remote, code tree and uncommitted changes holding ``code_dir``.

    ``paths`` are the code paths, relative to the capsule (``code_dir``'s parent).
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
    in_repository = _repository_paths(toplevel, code_dir, paths)
    uncommitted, untracked = _uncommitted(toplevel, in_repository)
    digest = _change_digest(toplevel, in_repository, untracked) if uncommitted else None
    url, local_hops = _code_url(toplevel)
    tree = tree_at(toplevel, commit, in_repository)
    return GitState(
        toplevel, commit, url, tuple(uncommitted), digest, local_hops, tree, tuple(paths)
    )


def _repository_paths(toplevel: Path, code_dir: Path, paths: tuple[str, ...]) -> dict[str, str]:
    """Each code path (relative to the capsule) as a path from the repository's top."""
    capsule = code_dir.resolve().parent.relative_to(toplevel.resolve()).as_posix()
    prefix = "" if capsule == "." else capsule + "/"
    return {path: prefix + path for path in paths}


def tree_at(toplevel: Path, commit: str, paths: dict[str, str]) -> str | None:
    """The code tree (:func:`code_tree_digest`) of ``commit``; ``None`` if git lacks it.

    ``paths`` maps each code path to its path from the repository's top.
    """
    listed = _git(["ls-tree", "-z", "--full-tree", commit, "--", *paths.values()], toplevel)
    if listed.returncode != 0:
        return None
    found: dict[str, str] = {}
    for entry in listed.stdout.decode("utf-8", "surrogateescape").split("\0"):
        meta, _, path = entry.partition("\t")
        if path:
            found[path] = meta.split()[2]  # "<mode> <type> <id>"
    return code_tree_digest({path: found.get(inside) for path, inside in paths.items()})


@functools.lru_cache(maxsize=256)
def tree_of_commit(code_dir: Path, paths: tuple[str, ...], commit: str) -> str | None:
    """The code tree of ``commit`` in the repository holding ``code_dir``, if git has it.

    For a plan that meets records named by their commit alone (key scheme 1); each
    commit is read once.
    """
    try:
        found = _git(["rev-parse", "--show-toplevel"], code_dir)
    except FileNotFoundError:
        return None
    toplevel = found.stdout.decode().strip()
    if found.returncode != 0 or not toplevel:
        return None
    return tree_at(Path(toplevel), commit, _repository_paths(Path(toplevel), code_dir, paths))


def is_pushed(toplevel: Path, commit: str) -> bool:
    """Whether a remote-tracking branch (as of the last fetch) contains ``commit``."""
    found = _git(
        ["for-each-ref", "--count=1", "--contains", commit, "--format=%(refname)", "refs/remotes"],
        toplevel,
    )
    return found.returncode == 0 and bool(found.stdout.strip())


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


def _uncommitted(toplevel: Path, paths: dict[str, str]) -> tuple[list[str], list[str]]:
    """List the changed and the untracked (unignored) files under the code paths."""
    status = _git(
        ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *paths.values()],
        toplevel,
    )
    entries = status.stdout.decode("utf-8", "surrogateescape").split("\0")
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
            changes.append(f"?? {path}")
            untracked.append(path)
            continue
        skip_next = code[0] in "RC"
        changes.append(f"{code.strip()} {path}")
    return changes, sorted(untracked)


def _change_digest(toplevel: Path, paths: dict[str, str], untracked: list[str]) -> str:
    digest = hashlib.sha256(_git([*_STABLE_DIFF, "--", *paths.values()], toplevel).stdout)
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
    paths: tuple[str, ...] = DEFAULT_CODE_PATHS,
    require_pushed: bool = False,
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
    paths : tuple of str
        The code paths (``[tool.analysis-wrapper] code_paths``), relative to the capsule.
    require_pushed : bool
        Refuse to post from a commit that no remote branch contains (else a warning).

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
            lambda: git_identity(
                code_dir,
                posting=posting,
                allow_dirty=allow_dirty,
                paths=paths,
                require_pushed=require_pushed,
            ),
            posting=posting,
            code_dir=code_dir,
        )
    identity = git_identity(
        code_dir,
        posting=posting,
        allow_dirty=allow_dirty,
        paths=paths,
        require_pushed=require_pushed,
    )
    if identity is None:
        if posting:
            raise ProvenanceError(
                f"{code_dir} is not in a git work tree, so the code version is unknown and "
                "results could not be traced to code; run from a git clone of the capsule"
            )
        log.warning("%s is not in a git work tree: code version 'unversioned'", code_dir)
        return CodeIdentity(url=code_dir.resolve().as_posix(), version="unversioned")
    return identity


def git_identity(
    code_dir: Path,
    *,
    posting: bool,
    allow_dirty: bool,
    paths: tuple[str, ...] = DEFAULT_CODE_PATHS,
    require_pushed: bool = False,
) -> CodeIdentity | None:
    """The commit, remote and code tree of the work tree holding ``code_dir``.

    ``None`` outside a work tree.

    Raises
    ------
    ProvenanceError
        When posting with uncommitted changes under the code paths and without
        ``allow_dirty``, or from an unpushed commit with ``require_pushed``.
    """
    state = git_state(code_dir, paths)
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
    pushed = _check_pushed(state, require_pushed) if posting else None
    name = state.url.rstrip("/").rsplit("/", 1)[-1] or None
    return CodeIdentity(
        url=state.url,
        version=state.version,
        commit=state.commit,
        name=name,
        dirty=bool(state.uncommitted),
        tree=state.key_tree,
        paths=state.paths,
        pushed=pushed,
    )


def _check_pushed(state: GitState, require_pushed: bool) -> bool | None:
    """Whether the commit is on a remote branch; warn, or refuse, when it is not.

    ``None`` (not checked) when the code is named by a local path: no remote to push to.
    """
    if state.local_hops is not None:
        return None
    pushed = is_pushed(state.toplevel, state.commit)
    if pushed:
        return True
    problem = (
        f"commit {state.commit[:12]} is on no remote branch (as of the last fetch), so the "
        f"records would name a commit that exists only in {state.toplevel}"
    )
    if require_pushed:
        raise ProvenanceError(f"{problem}; push it (git push), then post again")
    log.warning("%s; push it (git push); --require_pushed 1 refuses to post then", problem)
    return False


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
