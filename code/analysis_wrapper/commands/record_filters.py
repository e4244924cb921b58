"""The record filters ``results find`` and ``results verify`` share: every one must hold."""

from __future__ import annotations

import argparse
from typing import Any

from ..config.app_panel import find_parameters_model
from ..errors import ConfigError, UsageError
from ..job.parameters import known_names
from ..record.query import find_records, locate_capsule, parse_parameter_filter
from ..stores.base import FILE_LOCATION_PARAMETER, Record


def add_record_filters(parser: argparse.ArgumentParser) -> None:
    """The filters ``results find`` takes (and ``results verify``): every one must hold."""
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only records whose parameter KEY equals VALUE (JSON-typed); repeatable",
    )
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="LOCATION",
        help="only records whose input data include LOCATION (s3:// URL or path); repeatable",
    )
    parser.add_argument("--code-version", help="only records made by this exact code version")
    parser.add_argument("--analysis-name", help="only records with this analysis_name")
    parser.add_argument("--tag", help="only records with this analysis_tag")
    parser.add_argument(
        "--latest",
        action="store_true",
        help="only the newest record (latest end_date_time) per input data and parameters",
    )


def find_filtered(args: argparse.Namespace) -> list[Record]:
    """The records matching the filters of :func:`add_record_filters`, oldest first.

    Raises
    ------
    UsageError
        If a ``--param`` is malformed or names no parameter of the capsule's model.
    """
    filters = dict(parse_parameter_filter(text) for text in args.param)
    _check_parameter_names(filters, args.capsule)
    return find_records(
        filters,
        capsule=args.capsule,
        input_data=args.input,
        code_version=args.code_version,
        analysis_name=args.analysis_name,
        analysis_tag=args.tag,
        latest=args.latest,
    )


def _check_parameter_names(filters: dict[str, Any], capsule: str | None) -> None:
    """Refuse a ``--param`` name the capsule's parameters model does not have.

    A misspelt name would match no record and look like "no results". Without a
    capsule whose model can be read, the names are not checked.
    """
    if not filters:
        return
    try:
        model = find_parameters_model(locate_capsule(capsule))
    except ConfigError:
        return
    names = {*model.model_fields, FILE_LOCATION_PARAMETER}
    for name in filters:
        if name not in names:
            raise UsageError(
                f"--param {name}: not a parameter of {model.__name__}; {known_names(name, names)}"
            )
