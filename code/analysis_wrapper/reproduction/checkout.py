"""A record's commit, checked out into a temporary git worktree that is always removed.

``git worktree add --detach`` shares the repository's objects: a checkout costs the
files of one commit, never a clone, and leaves the user's own work tree, branch and
uncommitted changes alone. The worktree is removed when the block ends, whether it
ended well, with an error or with Ctrl-C (a second Ctrl-C during the removal is held
off until it is done), so ``git worktree list`` shows nothing of it afterwards.

A commit the repository lacks is fetched first (``git fetch <remote> <commit>``), from
each remote whose URL names the record's code, then from the record's code URL itself;
when none has it, the record is refused with the remedy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from ..errors import ProvenanceError
from ..identity.provenance import normalise_remote_url
from .job_rebuild import RecordedCode

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 600.0
"""A fetch that takes longer is taken for an unreachable remote."""


class CheckoutError(Exception):
    """The commit is in the repository, but git could not check it out."""


def _git(
    args: list[str], cwd: Path, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    # No prompt, pager or translated message may get in the way of a run.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        errors="replace",
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def repository_root(folder: Path) -> Path:
    """The top of the git work tree holding ``folder``.

    Raises
    ------
    ProvenanceError
        When ``folder`` is in no git work tree (or git is not installed).
    """
    try:
        found = _git(["rev-parse", "--show-toplevel"], folder)
    except FileNotFoundError:
        found = None
    if found is None or found.returncode != 0 or not found.stdout.strip():
        raise ProvenanceError(
            f"{folder} is not in a git work tree, and a record's commit is checked out of "
            "the capsule's repository; run reproduce in a clone of the capsule (git clone "
            "<its URL>)"
        )
    return Path(found.stdout.strip())


def has_commit(repository: Path, commit: str) -> bool:
    """Whether the repository holds ``commit`` (as a commit object)."""
    return _git(["cat-file", "-e", f"{commit}^{{commit}}"], repository).returncode == 0


def ensure_commit(repository: Path, code: RecordedCode, key: str) -> None:
    """Make sure the repository holds the record's commit, fetching it if it must.

    Parameters
    ----------
    repository : Path
        The top of the capsule's git work tree.
    code : RecordedCode
        The record's code: its URL and commit.
    key : str
        The record's key, for messages.

    Raises
    ------
    ProvenanceError
        When the commit is not in the repository and no remote naming the code, nor
        the code URL itself, gives it.
    """
    if has_commit(repository, code.commit):
        return
    problems = []
    for source in fetch_sources(repository, code.url):
        log.warning("commit %s is not here; fetching it from %s", code.commit[:12], source)
        problem = _fetch(repository, source, code.commit)
        if problem is None:
            return
        problems.append(f"{source}: {problem}")
    tried = "; ".join(problems) if problems else "no remote names its code"
    raise ProvenanceError(
        f"commit {code.commit[:12]} of record {key[:12]} is not in the repository at "
        f"{repository}, and git fetch did not give it ({tried}); fetch it from a remote "
        "that has it (git fetch <remote>), or push it from the clone that made the record "
        "(git push), then reproduce again"
    )


def _fetch(repository: Path, source: str, commit: str) -> str | None:
    """Fetch ``commit`` from ``source``; ``None`` once the repository has it, else why not."""
    try:
        fetched = _git(
            ["fetch", "--no-tags", "--quiet", source, commit], repository, timeout=FETCH_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return f"no answer in {FETCH_TIMEOUT_S:.0f} s"
    if fetched.returncode == 0 and has_commit(repository, commit):
        return None
    lines = [line.strip() for line in fetched.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"git fetch exited {fetched.returncode}"


def fetch_sources(repository: Path, url: str) -> list[str]:
    """Where to fetch a commit of ``url`` from: the remotes that name it, then ``url``.

    A remote is tried first for its own URL, which may carry the transport and
    credentials the user set up (SSH, a credential helper); the record's URL, the
    normalised https form, is tried after, unless a remote has that very URL or it is
    a path this machine does not have.
    """
    if not url:
        return []
    wanted = normalise_remote_url(url)
    listed = _git(["config", "--get-regexp", r"^remote\..*\.url$"], repository).stdout
    remotes: dict[str, str] = {}
    for line in listed.splitlines():
        setting, _, remote_url = line.partition(" ")
        if remote_url.strip() and normalise_remote_url(remote_url) == wanted:
            remotes.setdefault(setting.removeprefix("remote.").removesuffix(".url"), remote_url)
    spelt_as_url = any(
        remote.strip().rstrip("/").removesuffix(".git") == url for remote in remotes.values()
    )
    missing_path = url.startswith("/") and not Path(url).exists()
    return [*remotes, *([] if spelt_as_url or missing_path else [url])]


@contextlib.contextmanager
def temporary_worktree(repository: Path, commit: str, folder: Path) -> Iterator[Path]:
    """Check ``commit`` out into ``folder`` (a new worktree); remove it when done.

    Parameters
    ----------
    repository : Path
        The repository (any of its work trees).
    commit : str
        The commit to check out, detached.
    folder : Path
        Where the worktree goes; must not exist yet.

    Yields
    ------
    Path
        ``folder``, holding the commit's files.

    Raises
    ------
    CheckoutError
        When git cannot check the commit out (the message is git's).
    """
    try:
        added = _git(["worktree", "add", "--detach", "--quiet", str(folder), commit], repository)
        if added.returncode != 0:
            raise CheckoutError(
                f"git worktree add {folder} {commit[:12]} failed: "
                + (added.stderr.strip().splitlines() or ["no message"])[-1]
            )
        yield folder
    finally:
        with _interrupts_held():
            remove_worktree(repository, folder)


def remove_worktree(repository: Path, folder: Path) -> None:
    """Remove the worktree at ``folder`` and git's record of it, whatever state it is in."""
    # Twice --force: a worktree with changes (files the run left) or a lock goes too.
    removed = _git(["worktree", "remove", "--force", "--force", str(folder)], repository)
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    if removed.returncode != 0:
        _git(["worktree", "prune"], repository)  # forget a worktree whose folder is gone


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold off Ctrl-C while the block runs (in the main thread; elsewhere, nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, _frame: caught.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
