"""``analysis-wrapper keys diff KEY1 KEY2``: why two results' keys differ, field by field.

Both records are read from the record store (``DOCDB_HOST``, as ``results find``
reads it); each one's key pre-image is rebuilt from its fields and the differences are
listed as code, data and parameters, in the words of the plan's reasons, from KEY1 to
KEY2. Exit codes: 0 (whether or not they differ), 1 a key that no record has or a
store that failed, 2 a key that is not one (fewer than 6 hex digits).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..config.settings import StoreSettings
from ..record.fields import describe_record
from ..record.keydiff import diff_records
from ..record.query import get_record_by_prefix, locate_capsule
from ..stores.factory import open_record_store
from .common import CommandParser, capsule_option

EXIT_OK = 0


def register(commands: Any) -> None:
    """Add ``keys diff``."""
    keys = commands.add_parser("keys", help="compare what two results' keys were made of")
    actions = keys.add_subparsers(dest="action", required=True, parser_class=CommandParser)
    diff = actions.add_parser(
        "diff",
        parents=[capsule_option()],
        help="the fields of two records' keys that differ: code, data, parameters",
    )
    diff.add_argument("key1", help="the older record: a key, or a unique prefix of 6+ hex digits")
    diff.add_argument("key2", help="the newer record: a key, or a unique prefix")
    diff.add_argument("--format", choices=("text", "json"), default="text")
    diff.set_defaults(handler=diff_command)


def diff_command(args: argparse.Namespace) -> int:
    """Print how the key of record ``key1`` differs from that of ``key2``."""
    capsule = locate_capsule(args.capsule)
    store = open_record_store(StoreSettings(), capsule, read_only=True)
    try:
        older = get_record_by_prefix(store, args.key1)
        newer = get_record_by_prefix(store, args.key2)
    finally:
        store.close()
    diff = diff_records(older, newer)
    if args.format == "json":
        print(
            json.dumps(
                {"key1": older["_id"], "key2": newer["_id"], **diff.as_json()},
                indent=2,
                ensure_ascii=False,
            )
        )
        return EXIT_OK
    print(f"KEY1  {describe_record(older)}")
    print(f"KEY2  {describe_record(newer)}")
    if older["_id"] == newer["_id"]:
        print("the same record: nothing differs")
        return EXIT_OK
    print(f"{diff.count} field(s) differ, from KEY1 to KEY2:")
    print("\n".join(diff.lines()))
    return EXIT_OK
