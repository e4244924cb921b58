"""``analysis-wrapper results``: find stored results."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..query import find_records, parse_parameter_filter
from ..records import record_process
from ..stores.base import Record, record_parameters
from .common import CommandParser, capsule_option

EXIT_OK = 0


def register(commands: Any) -> None:
    """Add ``results find`` to the command parsers."""
    results = commands.add_parser("results", help="find stored results")
    actions = results.add_subparsers(dest="action", required=True, parser_class=CommandParser)
    find = actions.add_parser("find", parents=[capsule_option()], help="list records")
    find.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only records whose parameter KEY equals VALUE (JSON-typed); repeatable",
    )
    find.add_argument("--format", choices=("table", "json"), default="table")
    find.set_defaults(handler=find_command)


def find_command(args: argparse.Namespace) -> int:
    """List the records matching ``--param`` filters."""
    filters = dict(parse_parameter_filter(text) for text in args.param)
    records = find_records(filters, capsule=args.capsule)
    if args.format == "json":
        print(json.dumps(records, indent=2, ensure_ascii=False))
    else:
        print(format_records_table(records))
    return EXIT_OK


def format_records_table(records: list[Record]) -> str:
    """Records as a plain-text table: key, finished, code version, inputs, parameters.

    With several records, only the parameters whose values differ are shown in the
    table; those all records share are listed once below it.
    """
    all_parameters = [record_parameters(record) for record in records]
    names = sorted({name for parameters in all_parameters for name in parameters})
    shared = {
        name: all_parameters[0][name]
        for name in names
        if len(records) > 1
        and all(name in p and p[name] == all_parameters[0][name] for p in all_parameters)
    }
    rows = [("key", "finished", "version", "input", "parameters")]
    for record, parameters in zip(records, all_parameters, strict=True):
        process = record_process(record)
        code: dict[str, Any] = dict(process.get("code") or {})
        rows.append(
            (
                str(record.get("_id", ""))[:12],
                str(process.get("end_date_time") or "")[:19],
                str(code.get("version") or "")[:12],
                _inputs(code),
                _pairs({k: v for k, v in parameters.items() if k not in shared}),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)), r[4]]).rstrip()
        for r in rows
    ]
    lines.append(f"{len(records)} record(s)" + (f"; all with {_pairs(shared)}" if shared else ""))
    return "\n".join(lines)


def _inputs(code: dict[str, Any]) -> str:
    assets = code.get("input_data") or []
    names = [str(a.get("name") or a.get("url") or "") for a in assets if isinstance(a, dict)]
    return ",".join(names) or "-"


def _pairs(values: dict[str, Any]) -> str:
    return " ".join(f"{name}={json.dumps(value)}" for name, value in sorted(values.items()))
