"""``analysis-wrapper results``: find, show, download and verify stored results."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from ..config.settings import StoreSettings
from ..errors import StoreError
from ..record.fields import asset_name, record_process
from ..record.query import (
    get_record_by_prefix,
    locate_capsule,
)
from ..stores.base import Record, ResultStore, record_parameters
from ..stores.factory import open_record_store, open_result_store
from ..stores.manifest import file_sha256
from . import reproduce, verify
from .common import CommandParser, capsule_option
from .record_filters import add_record_filters, find_filtered

EXIT_OK = 0
EXIT_FAILED = 1


def register(commands: Any) -> None:
    """Add ``results find``, ``show``, ``download``, ``verify`` and ``reproduce``."""
    results = commands.add_parser("results", help="find stored results")
    actions = results.add_subparsers(dest="action", required=True, parser_class=CommandParser)
    find = actions.add_parser("find", parents=[capsule_option()], help="list records")
    add_record_filters(find)
    find.add_argument("--format", choices=("table", "json", "csv"), default="table")
    find.set_defaults(handler=find_command)

    show = actions.add_parser(
        "show", parents=[capsule_option()], help="one record's summary and its files"
    )
    show.add_argument("key", help="a key, or a unique prefix of at least 6 hex characters")
    show.set_defaults(handler=show_command)

    download = actions.add_parser(
        "download",
        parents=[capsule_option()],
        help="fetch a result's files and check them against its manifest",
    )
    download.add_argument("key", help="a key, or a unique prefix of at least 6 hex characters")
    download.add_argument("dir", type=Path, help="the folder to write the files into")
    download.set_defaults(handler=download_command)

    verify.register(actions)
    reproduce.register(actions)


def find_command(args: argparse.Namespace) -> int:
    """List the records matching every filter given."""
    records = find_filtered(args)
    if args.format == "json":
        print(json.dumps(records, indent=2, ensure_ascii=False))
    elif args.format == "csv":
        print(format_records_csv(records), end="")
    else:
        print(format_records_table(records))
    return EXIT_OK


def format_records_csv(records: list[Record]) -> str:
    """Records as CSV: key, finished, version, inputs, then one column per parameter.

    ``inputs`` holds the input URLs joined by ``;``. Text parameters are written as
    they are; other values as JSON (``0.5``, ``true``, ``[1, 2]``); a parameter a
    record lacks is an empty cell.
    """
    all_parameters = [record_parameters(record) for record in records]
    names = sorted({name for parameters in all_parameters for name in parameters})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["key", "finished", "version", "inputs", *names])
    for record, parameters in zip(records, all_parameters, strict=True):
        process = record_process(record)
        code: dict[str, Any] = dict(process.get("code") or {})
        urls = [str(a.get("url")) for a in code.get("input_data") or [] if isinstance(a, dict)]
        writer.writerow(
            [
                str(record.get("_id", "")),
                str(process.get("end_date_time") or ""),
                str(code.get("version") or ""),
                ";".join(urls),
                *(_cell(parameters[name]) if name in parameters else "" for name in names),
            ]
        )
    return out.getvalue()


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _open_record(args: argparse.Namespace) -> tuple[Record, ResultStore]:
    """The record ``args.key`` names, and the configured result store."""
    capsule = locate_capsule(args.capsule)
    settings = StoreSettings()
    store = open_record_store(settings, capsule, read_only=True)
    try:
        record = get_record_by_prefix(store, args.key)
    finally:
        store.close()
    return record, open_result_store(settings, capsule)


def show_command(args: argparse.Namespace) -> int:
    """Print one record's summary and the files its manifest lists."""
    record, result_store = _open_record(args)
    location = str(record.get("location") or "")
    manifest = result_store.read_manifest(location) if location else None
    print(format_record_summary(record, manifest, result_store.url))
    return EXIT_OK


def format_record_summary(record: Record, manifest: dict[str, Any] | None, store_url: str) -> str:
    """A record as text: key, location, finished, code, inputs, parameters, outputs, files."""
    process = record_process(record)
    code: dict[str, Any] = dict(process.get("code") or {})
    lines = [
        f"key         {record.get('_id')}",
        f"location    {record.get('location') or '-'}",
        f"finished    {process.get('end_date_time') or '-'}",
        f"code        {code.get('url') or '?'}@{code.get('version') or '?'}",
        "inputs",
    ]
    for asset in code.get("input_data") or []:
        if isinstance(asset, dict):
            given = asset_name(record, asset)
            name = f" ({given})" if given else ""
            lines.append(f"  {asset.get('url')}{name}")
    lines.append("parameters")
    lines += [f"  {n} = {json.dumps(v)}" for n, v in sorted(record_parameters(record).items())]
    outputs = process.get("output_parameters") or {}
    lines.append("outputs")
    lines += [f"  {n} = {json.dumps(v)}" for n, v in sorted(dict(outputs).items())]
    if manifest is None:
        where = record.get("location") or f"{store_url} (the record names no location)"
        lines.append(f"files: no manifest at {where}")
        return "\n".join(lines)
    files = [f for f in manifest.get("files") or [] if isinstance(f, dict)]
    total = sum(int(f.get("size") or 0) for f in files)
    lines.append(f"files ({len(files)}, {total} bytes)")
    width = max((len(str(f.get("size"))) for f in files), default=0)
    lines += [f"  {str(f.get('size')).rjust(width)}  {f.get('path')}" for f in files]
    return "\n".join(lines)


def download_command(args: argparse.Namespace) -> int:
    """Fetch every file of the record's manifest into ``args.dir`` and check each one.

    Each file is written under a hidden temporary name, checked (size and sha256),
    and only then renamed to its final name; a file that fails the check is deleted.
    """
    record, result_store = _open_record(args)
    key = str(record["_id"])
    location = str(record.get("location") or "")
    if not location:
        raise StoreError(f"the record of {key} names no location: nothing to download")
    manifest = result_store.read_manifest(location)
    if manifest is None:
        if result_store.has_manifest(location) is None:
            raise StoreError(
                f"{location} is not in a store like {result_store.url}; set "
                "ANALYSIS_BUCKET to a store of that kind"
            )
        raise StoreError(f"no manifest at {location}: nothing to download")
    target_dir: Path = args.dir
    files = [f for f in manifest.get("files") or [] if isinstance(f, dict)]
    bad: list[str] = []
    total = 0
    for entry in files:
        relative = str(entry.get("path") or "")
        parts = PurePosixPath(relative).parts
        if not parts or ".." in parts or PurePosixPath(relative).is_absolute():
            raise StoreError(f"manifest of {key} lists an unsafe path {relative!r}")
        target = target_dir.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
        try:
            if not result_store.download(location, relative, partial):
                raise StoreError(
                    f"{location} is not in a store like {result_store.url}; set "
                    "ANALYSIS_BUCKET to a store of that kind"
                )
            size, digest = partial.stat().st_size, file_sha256(partial)
            if size != entry.get("size") or digest != entry.get("sha256"):
                bad.append(
                    f"{relative}: expected {entry.get('size')} bytes sha256 "
                    f"{str(entry.get('sha256'))[:12]}, got {size} bytes sha256 {digest[:12]}"
                )
                continue
            os.replace(partial, target)
            total += size
        finally:
            partial.unlink(missing_ok=True)
    if bad:
        raise StoreError(
            f"{len(bad)} file(s) of {key} do not match its manifest: " + "; ".join(bad)
        )
    print(f"downloaded {len(files)} file(s), {total} bytes, to {target_dir} (sha256 checked)")
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
                _inputs(record, code),
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


def _inputs(record: dict[str, Any], code: dict[str, Any]) -> str:
    assets = code.get("input_data") or []
    names = [
        str(asset_name(record, a) or a.get("url") or "") for a in assets if isinstance(a, dict)
    ]
    return ",".join(names) or "-"


def _pairs(values: dict[str, Any]) -> str:
    return " ".join(f"{name}={json.dumps(value)}" for name, value in sorted(values.items()))
