"""``analysis-wrapper results reproduce KEY``: run a record's job again at its commit.

::

    analysis-wrapper results reproduce KEY [--dir DIR] [--input_directory DIR]

1. The record (a key, or a unique prefix of 6+ hex digits) and its stored manifest;
   the job rebuilt from the record (:mod:`..reproduction.job_rebuild`). A record made
   from uncommitted changes, or naming a release and no commit, is refused.
2. Its commit, fetched if the repository lacks it, checked out into a temporary git
   worktree, removed afterwards (:mod:`..reproduction.checkout`).
3. That commit's ``run_capsule.py`` run on the job as a dry run, into ``DIR`` or a
   temporary folder: nothing is posted (:mod:`..reproduction.rerun`).
4. The new files compared with the manifest, file by file
   (:mod:`..reproduction.comparison`): a table, then a summary line.

Exit 0 only when every file is identical; 1 when one differs, is missing or is new,
when the run fails, or when a store fails; 2 for a key no record has or a record that
cannot be reproduced (the message names the remedy); 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..capsule import EXIT_INTERRUPTED
from ..config.settings import Capsule, StoreSettings
from ..errors import StoreError, UsageError
from ..record.crate import CRATE_NAME
from ..record.query import MIN_KEY_PREFIX, locate_capsule
from ..reproduction.checkout import (
    CheckoutError,
    ensure_commit,
    repository_root,
    temporary_worktree,
)
from ..reproduction.comparison import (
    FileComparison,
    FileFacts,
    Verdict,
    add_rerun_crate,
    compare_with_manifest,
)
from ..reproduction.job_rebuild import RebuiltJob, rebuild_job
from ..reproduction.rerun import (
    Rerun,
    prepare_input_directory,
    rerun_environment,
    run_commit_capsule,
)
from ..run.outputs import KEY_FILE_NAME, METADATA_FILE_NAME
from ..stores.base import Record, RecordQuery, ResultStore
from ..stores.factory import open_record_store, open_result_store
from ..stores.manifest import file_sha256
from .common import capsule_option

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1

STORED_JSON = (METADATA_FILE_NAME, KEY_FILE_NAME, CRATE_NAME)
"""The framework's files read from the store: compared field by field when they differ."""


def register(actions: Any) -> None:
    """Add ``results reproduce`` to the ``results`` actions."""
    reproduce = actions.add_parser(
        "reproduce",
        parents=[capsule_option()],
        help="run a record's job again with its commit's code and compare the files",
    )
    reproduce.add_argument("key", help="a key, or a unique prefix of at least 6 hex characters")
    reproduce.add_argument(
        "--dir",
        type=Path,
        help="run into this folder and keep its files there (default: a temporary folder)",
    )
    reproduce.add_argument(
        "--input_directory",
        type=Path,
        help="where the job's inputs are, as when it ran (default: the capsule's data/)",
    )
    reproduce.set_defaults(handler=reproduce_command)


def reproduce_command(args: argparse.Namespace) -> int:
    """Reproduce the record ``args.key``; print the comparison; return the exit code."""
    try:
        with _terminate_as_interrupt():
            return _reproduce(args)
    except KeyboardInterrupt:
        message = "interrupted: nothing was posted, and no worktree is left behind"
        print(message, file=sys.stderr)
        return EXIT_INTERRUPTED


def _reproduce(args: argparse.Namespace) -> int:
    """Each step of the module's list in turn; refusals raise before anything runs."""
    capsule = locate_capsule(args.capsule)
    data_dir = (args.input_directory or capsule.data_dir).resolve()
    if args.input_directory is not None and not data_dir.is_dir():
        raise UsageError(f"--input_directory {args.input_directory}: no such folder")
    settings = StoreSettings()
    record = find_record(settings, capsule, args.key)
    rebuilt = rebuild_job(record)  # refuses dirty and release records
    result_store = open_result_store(settings, capsule)
    manifest = stored_manifest(result_store, rebuilt)
    repository = repository_root(capsule.root)
    ensure_commit(repository, rebuilt.code, rebuilt.key)
    with tempfile.TemporaryDirectory(prefix="analysis-wrapper-reproduce-") as scratch:
        work = Path(scratch)
        stored_json = read_stored_json(result_store, rebuilt.location, manifest, work)
        rerun = _rerun(capsule, repository, rebuilt, data_dir, args.dir, work, stored_json)
        print(format_header(rebuilt, rerun, kept=args.dir is not None))
        if rerun.error is not None or rerun.folder is None:
            commit = rebuilt.code.commit[:12]
            print(f"not reproduced: the run of commit {commit} failed: {rerun.error}")
            return EXIT_FAILED
        add_rerun_crate(manifest, rerun.folder, rebuilt.key)
        compared = compare_with_manifest(manifest, rerun.folder, stored_json)
    print(format_comparison(compared))
    print(summary_line(compared))
    return EXIT_OK if all(c.verdict is Verdict.IDENTICAL for c in compared) else EXIT_FAILED


def _rerun(
    capsule: Capsule,
    repository: Path,
    rebuilt: RebuiltJob,
    data_dir: Path,
    keep_in: Path | None,
    work: Path,
    stored_json: dict[str, Any],
) -> Rerun:
    """Check the commit out, run its capsule on the rebuilt job, remove the checkout."""
    inside = capsule.root.resolve().relative_to(repository.resolve())
    results_dir = keep_in.resolve() if keep_in is not None else work / "results"
    input_dir = prepare_input_directory(work / "input", data_dir, rebuilt)
    env = rerun_environment(
        os.environ, work / "stores", rebuilt.code.url, _input_identity(stored_json)
    )
    print(
        f"reproducing record {rebuilt.key[:12]}: commit {rebuilt.code.commit[:12]} of "
        f"{rebuilt.code.url}, checked out into a temporary worktree; nothing is posted",
        file=sys.stderr,
    )
    try:
        with temporary_worktree(repository, rebuilt.code.commit, work / "checkout") as checkout:
            script = checkout / inside / "code" / "run_capsule.py"
            return run_commit_capsule(script, input_dir, results_dir, env, _echo)
    except CheckoutError as exc:
        return Rerun(None, None, str(exc))


def _echo(line: str) -> None:
    """Show a line of the run's log, set apart from reproduce's own output."""
    print(f"  | {line}", file=sys.stderr, flush=True)


def _input_identity(stored_json: dict[str, Any]) -> str | None:
    """``content`` when the record's key held its inputs' versions; ``None``: unknown."""
    key_file = stored_json.get(KEY_FILE_NAME)
    preimage = key_file.get("preimage") if isinstance(key_file, dict) else None
    if not isinstance(preimage, dict):
        return None
    return "content" if "input_versions" in preimage else "location"


def find_record(settings: StoreSettings, capsule: Capsule, key: str) -> Record:
    """The one record whose key is ``key`` or starts with it.

    Raises
    ------
    UsageError
        When ``key`` is not 6+ hex digits, or no record (or several) has such a key.
    StoreError
        When the record store cannot be read.
    """
    prefix = key.strip().lower()
    if len(prefix) < MIN_KEY_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
        raise UsageError(
            f"key {key!r}: give a key or a prefix of at least {MIN_KEY_PREFIX} hex "
            "characters, as `analysis-wrapper results find` prints it"
        )
    store = open_record_store(settings, capsule, read_only=True)
    try:
        if len(prefix) == 64:
            record = store.get(prefix)
            found = [record] if record is not None else []
        else:
            found = [r for r in store.find(RecordQuery()) if str(r.get("_id")).startswith(prefix)]
        where = store.display_url
    finally:
        store.close()
    if not found:
        raise UsageError(
            f"no record with key {prefix} in {where}; `analysis-wrapper results find` lists "
            "the records (set DOCDB_HOST and DOCDB_COLLECTION as the run that posted it did)"
        )
    if len(found) > 1:
        keys = ", ".join(sorted(str(r.get("_id"))[:12] for r in found))
        raise UsageError(f"key prefix {prefix} is ambiguous: {len(found)} records ({keys})")
    return found[0]


def stored_manifest(result_store: ResultStore, rebuilt: RebuiltJob) -> dict[str, Any]:
    """The manifest of the record's result: what the rerun's files are compared with.

    Raises
    ------
    StoreError
        When the record names no location, the location is in another kind of store,
        or it has no manifest (an incomplete result).
    """
    location = rebuilt.location
    if not location:
        raise StoreError(f"the record of {rebuilt.key} names no location: nothing to compare")
    manifest = result_store.read_manifest(location)
    if manifest is not None:
        return manifest
    if result_store.has_manifest(location) is None:
        raise StoreError(
            f"{location} is not in a store like {result_store.url}; set ANALYSIS_BUCKET to "
            "a store of that kind"
        )
    raise StoreError(
        f"no manifest at {location}: the record's result is incomplete, so there is "
        "nothing to compare with (analysis-wrapper gc lists such folders)"
    )


def read_stored_json(
    result_store: ResultStore, location: str, manifest: dict[str, Any], work: Path
) -> dict[str, Any]:
    """The stored ``metadata.nd.json``, ``key.json`` and crate, parsed, where the manifest's.

    A stored copy that does not match its manifest is left out (with a warning): its
    file is then compared by its digest alone.
    """
    folder = work / "stored"
    folder.mkdir()
    listed = {str(f.get("path")): f for f in manifest.get("files") or [] if isinstance(f, dict)}
    found: dict[str, Any] = {}
    for name in STORED_JSON:
        entry = listed.get(name)
        if entry is None:
            continue
        target = folder / name
        if not result_store.download(location, name, target):
            continue
        if file_sha256(target) != entry.get("sha256"):
            log.warning(
                "the stored %s of %s does not match its manifest; compared by digest only "
                "(analysis-wrapper results verify --deep 1 checks every file)",
                name,
                location,
            )
            continue
        try:
            found[name] = json.loads(target.read_text(encoding="utf-8"))
        except ValueError:
            continue
    return found


def format_header(rebuilt: RebuiltJob, rerun: Rerun, *, kept: bool) -> str:
    """What was reproduced: the record, its code, and the rerun's key and folder."""
    lines = [
        f"record  {rebuilt.key}",
        f"code    {rebuilt.code.url} @ {rebuilt.code.commit}",
    ]
    if rerun.key is not None:
        same = "the record's" if rerun.key == rebuilt.key else "NOT the record's"
        lines.append(f"rerun   key {rerun.key[:12]} ({same})")
    if rerun.folder is not None:
        where = str(rerun.folder) if kept else "a temporary folder, removed (keep it: --dir DIR)"
        lines.append(f"files   {where}")
    return "\n".join(lines)


def format_comparison(compared: list[FileComparison]) -> str:
    """The comparison as a table: file, verdict, stored and new size and digest, note."""
    rows = [("file", "verdict", "stored", "sha256", "reproduced", "sha256", "note")]
    rows += [
        (c.path, c.verdict.value, *_facts(c.stored), *_facts(c.reproduced), c.note)
        for c in compared
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    sizes = (2, 4)  # the columns of sizes, right-aligned below their headers
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in sizes else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row[:6], widths, strict=True))
        ]
        lines.append("  ".join([*cells, row[6]]).rstrip())
    return "\n".join(lines)


def _facts(facts: FileFacts | None) -> tuple[str, str]:
    """A file's size and short digest, or dashes when there is no such file."""
    return ("-", "-") if facts is None else (str(facts.size), facts.sha256[:12])


def summary_line(compared: list[FileComparison]) -> str:
    """One line: identical or not, and how many files of each verdict."""
    counts = {v: sum(1 for c in compared if c.verdict is v) for v in Verdict}
    if compared and counts[Verdict.IDENTICAL] == len(compared):
        return f"reproduced: all {len(compared)} file(s) identical"
    listed = ", ".join(f"{counts[v]} {v.value}" for v in Verdict)
    return f"not reproduced: {listed} (of {len(compared)} file(s))"


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Take a SIGTERM (a scheduler stopping the command) as Ctrl-C, so the worktree goes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_number: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
