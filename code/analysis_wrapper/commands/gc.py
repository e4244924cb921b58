"""``analysis-wrapper gc``: list, and with ``--delete 1`` delete, result folders no record names.

::

    analysis-wrapper gc [--delete 0|1] [--older_than SECONDS]

Every publish attempt has a folder of its own, and the record names the one that is
the result; the others (a crashed try, a worker that lost its claim, a forced re-run's
predecessor) are garbage. A folder is kept when

- its key's record names it (trailing slashes aside);
- its key has a live claim: a worker is on it now and may be about to record it;
- its key's record names a folder outside this results store (another bucket or an
  older path of the same folder): this store cannot tell which of its own folders that
  record meant, so it deletes none of them;
- it changed less than ``--older_than`` seconds ago (default 3600): an upload may
  still be going on.

Everything else is listed with its age, files, size and whether it is complete.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from ..common.redact import mask_url
from ..config.settings import StoreSettings
from ..errors import StoreError, UsageError
from ..record.query import locate_capsule
from ..stores.base import Published, Record, RecordStore, ResultStore
from ..stores.claims import ClaimStore
from ..stores.factory import open_record_store, open_result_store
from .common import capsule_option, zero_or_one

EXIT_OK = 0
DEFAULT_OLDER_THAN = 3600.0


def register(commands: Any) -> None:
    """Add ``gc`` to the command parsers."""
    parser = commands.add_parser(
        "gc",
        parents=[capsule_option()],
        help="list (or delete) result folders no record points to",
    )
    parser.add_argument(
        "--delete",
        type=zero_or_one,
        default=False,
        metavar="0|1",
        help="1: delete the folders listed (default 0: only list them)",
    )
    parser.add_argument(
        "--older_than",
        type=_seconds,
        default=DEFAULT_OLDER_THAN,
        metavar="SECONDS",
        help=f"only folders unchanged for this long (default {DEFAULT_OLDER_THAN:g})",
    )
    parser.set_defaults(handler=gc_command)


@dataclass
class Sweep:
    """The folders of a results store, sorted into garbage and the reasons to keep."""

    garbage: list[Published] = field(default_factory=list)
    recorded: int = 0
    claimed: int = 0
    elsewhere: int = 0
    young: int = 0

    @property
    def unsafe(self) -> bool:
        """Complete folders, and not one sign that these are the store's records.

        No folder is named by a record, claimed, or named elsewhere: the records looked
        in are most likely not this store's (DOCDB_HOST or DOCDB_COLLECTION unset).
        """
        known = self.recorded + self.claimed + self.elsewhere
        return known == 0 and any(folder.complete for folder in self.garbage)


def find_garbage(
    folders: Iterable[Published],
    record_store: RecordStore,
    store_url: str,
    *,
    older_than: float,
    now: float,
) -> Sweep:
    """Sort ``folders`` into garbage and kept, with one batched record lookup.

    Parameters
    ----------
    folders : iterable of Published
        What the results store lists.
    record_store : RecordStore
        Where the records are; when it also keeps claims, live ones protect their keys.
    store_url : str
        The results store's URL: a record naming a folder outside it protects its key.
    older_than : float
        Folders changed fewer seconds ago than this are kept.
    now : float
        The time (Unix seconds) ages and leases are measured at.
    """
    folders = list(folders)
    keys = sorted({folder.key for folder in folders})
    records: Mapping[str, Record] = record_store.get_many(keys) if keys else {}
    live: set[str] = set()
    if keys and isinstance(record_store, ClaimStore):
        claims = record_store.get_claims(keys)
        live = {key for key, claim in claims.items() if claim.is_live(now)}
    inside = _normalised(store_url) + "/"
    sweep = Sweep()
    for folder in folders:
        record = records.get(folder.key)
        named = _normalised(str(record.get("location") or "")) if record else ""
        if named and named == _normalised(folder.location):
            sweep.recorded += 1
        elif folder.key in live:
            sweep.claimed += 1
        elif named and not named.startswith(inside):
            sweep.elsewhere += 1
        elif now - folder.modified < older_than:
            sweep.young += 1
        else:
            sweep.garbage.append(folder)
    return sweep


def gc_command(args: argparse.Namespace) -> int:
    """List the garbage folders of the results store; delete them with ``--delete 1``."""
    capsule = locate_capsule(args.capsule)
    settings = StoreSettings()
    result_store = open_result_store(settings, capsule)
    record_store = open_record_store(settings, capsule, read_only=True)
    try:
        print(f"results {mask_url(result_store.url)}; records {record_store.display_url}")
        sweep = find_garbage(
            result_store.list_published(),
            record_store,
            result_store.url,
            older_than=args.older_than,
            now=time.time(),
        )
    finally:
        record_store.close()
    print(format_sweep(sweep, time.time(), args.older_than, result_store.url))
    if not sweep.garbage:
        return EXIT_OK
    if sweep.unsafe:
        print(
            "warning: no folder of this store has a record, yet some are complete results; "
            "check DOCDB_HOST and DOCDB_COLLECTION name the records of this store"
        )
    if not args.delete:
        print("run again with --delete 1 to delete them")
        return EXIT_OK
    if sweep.unsafe:
        raise UsageError(
            "nothing deleted: not one folder of this store has a record (wrong record store?)"
        )
    delete_garbage(result_store, sweep.garbage)
    return EXIT_OK


def delete_garbage(store: ResultStore, garbage: list[Published]) -> None:
    """Delete every folder of ``garbage``; print what went; raise if any could not go.

    Raises
    ------
    StoreError
        Naming the first folder that could not be deleted, after trying every one.
    """
    folders = files = size = 0
    failures: list[str] = []
    for folder in garbage:
        try:
            files += store.delete(folder.location)
        except StoreError as exc:
            failures.append(str(exc))
            continue
        folders += 1
        size += folder.size
    print(f"deleted {folders} folder(s), {files} file(s), {size} bytes ({_size(size)})")
    if failures:
        raise StoreError(f"{len(failures)} folder(s) could not be deleted; first: {failures[0]}")


def format_sweep(sweep: Sweep, now: float, older_than: float, store_url: str) -> str:
    """One line per garbage folder, then the totals and why the rest were kept."""
    lines = [
        f"{mask_url(folder.location)}  {_age(now - folder.modified)} old  "
        f"{folder.files} file(s)  {_size(folder.size)}  "
        f"{'complete' if folder.complete else 'incomplete'}"
        for folder in sweep.garbage
    ]
    total = sum(folder.size for folder in sweep.garbage)
    files = sum(folder.files for folder in sweep.garbage)
    lines.append(
        f"{len(sweep.garbage)} folder(s) no record points to: {files} file(s), "
        f"{total} bytes ({_size(total)})"
    )
    kept = [
        f"{sweep.recorded} named by their record",
        f"{sweep.claimed} of keys being worked on",
        f"{sweep.young} changed in the last {older_than:g} s",
    ]
    if sweep.elsewhere:
        kept.append(f"{sweep.elsewhere} of keys whose record names a folder outside {store_url}")
    lines.append("kept " + ", ".join(kept))
    return "\n".join(lines)


def _normalised(location: str) -> str:
    """A location compared as a folder: without trailing slashes or %-escapes."""
    return unquote(location).rstrip("/")


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    units = ("KiB", "MiB", "GiB", "TiB")
    value, unit = size / 1024, 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:.1f} {units[unit]}"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"expected 0 or more seconds, got {text!r}")
    return value
