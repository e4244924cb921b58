"""The capsule's command line: the wrapper's flags plus one flag per parameter field.

Code Ocean passes named app-panel parameters the same way (``--name value``), and an
empty value for a parameter means "not given", so it does not override
``fixed_parameters`` or the job's own parameters.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, cast

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ..errors import ConfigError, UsageError
from ..job.parameters import parse_command_line_value
from ..stores.base import FILE_LOCATION_PARAMETER
from ..stores.claims import DEFAULT_LEASE_SECONDS
from .settings import Capsule, ExecutorKind, RunOptions

# Every flag the wrapper has or will have; a parameter field may not take one of these
# names, or the command line would be ambiguous.
RESERVED_FLAGS = frozenset(
    {
        "dry_run",
        "input_directory",
        "results_directory",
        "force",
        "plan",
        "allow_dirty",
        "require_pushed",
        "retry_failed",
        "lease_seconds",
        "transient_retries",
        "executor",
        "workers",
        "scheduler_address",
        "capsule",
        "help",
        "version",
        "verbose",
        "explain",
    }
)

# Records keep the job's file_location among the parameters, as upstream does.
RESERVED_PARAMETER = FILE_LOCATION_PARAMETER

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class CommandParser(argparse.ArgumentParser):
    """An argument parser that raises :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        """Raise the parse error as one line that says where to find help."""
        raise UsageError(f"{message}; run {self.prog} --help to see every flag")


def _flag(text: str) -> bool | None:
    value = text.strip().lower()
    if not value:
        return None  # an empty app-panel field: not given, so the default holds
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected 0 or 1, got {text!r}")


def _positive_int(text: str) -> int | None:
    if not text.strip():
        return None  # an empty app-panel field: not given
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int | None:
    if not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


MIN_KEY_PREFIX = 6
"""The shortest key prefix ``--explain`` takes (as ``analysis-wrapper results show``)."""


def _key_prefix(text: str) -> str | None:
    value = text.strip().lower()
    if not value:
        return None  # an empty field: not given
    if len(value) < MIN_KEY_PREFIX or len(value) > 64 or value.strip("0123456789abcdef"):
        raise argparse.ArgumentTypeError(
            f"expected a key or a prefix of at least {MIN_KEY_PREFIX} hex digits, as the "
            f"plan prints it, got {text!r}"
        )
    return value


def check_parameter_names(model: type[BaseModel]) -> None:
    """Refuse a parameters model whose field is named like a wrapper flag.

    Raises
    ------
    ConfigError
        Naming the field and the remedy.
    """
    clashes = sorted(set(model.model_fields) & RESERVED_FLAGS)
    if clashes:
        raise ConfigError(
            f"{model.__name__} has field(s) {', '.join(clashes)} named like wrapper flags; "
            "rename them in the parameters model"
        )
    if RESERVED_PARAMETER in model.model_fields:
        raise ConfigError(
            f"{model.__name__} has a field {RESERVED_PARAMETER}: records keep the job's "
            f"{RESERVED_PARAMETER} among the parameters; rename it in the parameters model"
        )


def build_parser(model: type[BaseModel] | None, capsule: Capsule) -> argparse.ArgumentParser:
    """Build the parser for the wrapper's flags and ``model``'s fields."""
    parser = CommandParser(
        prog="run_capsule.py",
        description="Run the analysis over every job in <input_directory>/job_dict/.",
        allow_abbrev=False,
    )
    wrapper = parser.add_argument_group("wrapper flags")
    wrapper.add_argument(
        "--dry_run",
        type=_flag,
        default=True,
        metavar="0|1",
        help="1 (default): run, but post nothing to the stores; 0: post results and records",
    )
    wrapper.add_argument(
        "--input_directory",
        type=Path,
        default=capsule.data_dir,
        help=f"holds job_dict/ and analysis_parameters.json (default {capsule.data_dir})",
    )
    wrapper.add_argument(
        "--results_directory",
        type=Path,
        default=capsule.results_dir,
        help=f"each job's files go to <this>/<key>/ (default {capsule.results_dir})",
    )
    wrapper.add_argument(
        "--force", type=_flag, default=False, metavar="0|1", help="run even if a record exists"
    )
    wrapper.add_argument(
        "--plan",
        type=_flag,
        default=False,
        metavar="0|1",
        help="run nothing: write plan.json saying what would run and why",
    )
    wrapper.add_argument(
        "--allow_dirty",
        type=_flag,
        default=False,
        metavar="0|1",
        help="post from a work tree with uncommitted changes (version <sha>+dirty.<digest>)",
    )
    wrapper.add_argument(
        "--require_pushed",
        type=_flag,
        default=False,
        metavar="0|1",
        help="refuse to post from a commit no remote branch contains (else a warning)",
    )
    wrapper.add_argument(
        "--retry_failed",
        type=_flag,
        default=False,
        metavar="0|1",
        help="run again the jobs whose earlier attempt failed (the plan lists them as failed)",
    )
    wrapper.add_argument(
        "--transient_retries",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="more tries after a transient failure: TransientError, a lost connection, a "
        "store unreachable or throttled (default 2)",
    )
    wrapper.add_argument(
        "--lease_seconds",
        type=_positive_float,
        default=None,
        metavar="S",
        help="a claim lives this long without a heartbeat; a crashed worker's jobs are taken "
        f"over after it (default {DEFAULT_LEASE_SECONDS:.0f})",
    )
    wrapper.add_argument(
        "--executor",
        choices=("serial", "process", "dask"),
        default="serial",
        help="where jobs run: one after another (default), a process pool, or Dask",
    )
    wrapper.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="process-pool or Dask LocalCluster size (default: one per CPU)",
    )
    wrapper.add_argument(
        "--scheduler_address",
        default=None,
        metavar="tcp://HOST:PORT",
        help="run on this Dask scheduler (default: DASK_SCHEDULER_ADDRESS, else a LocalCluster)",
    )
    wrapper.add_argument(
        "--explain",
        type=_key_prefix,
        default=None,
        metavar="KEY",
        help="with --plan 1: how the planned job KEY (a prefix of 6+ hex digits) differs from "
        "the closest stored record, as code, data and parameters",
    )
    wrapper.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="on a terminal, a line per job as well as the progress bar",
    )
    if model is not None:
        group = parser.add_argument_group(f"analysis parameters ({model.__name__})")
        for name, info in model.model_fields.items():
            group.add_argument(
                f"--{name}",
                dest=f"param:{name}",
                default=None,
                metavar="VALUE",
                help=parameter_help(info),
            )
    return parser


_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def parameter_help(info: FieldInfo) -> str:
    """A parameter's --help line: its description, default, bounds, and "(JSON)" if structured.

    ``(JSON)`` marks only list, tuple, set and dict fields (and models): a number or a
    word is typed as it is.
    """
    if info.is_required():
        notes = ["required"]
    else:
        notes = [f"default {json.dumps(info.get_default(call_default_factory=True), default=str)}"]
    notes += [
        f"{symbol} {getattr(rule, name)}"
        for rule in info.metadata
        for name, symbol in _BOUNDS
        if getattr(rule, name, None) is not None
    ]
    parts = [info.description or "", "(" + ", ".join(notes) + ")"]
    if _is_structured(info.annotation):
        parts.append("(JSON)")
    return " ".join(part for part in parts if part)


def _is_structured(annotation: Any) -> bool:
    """Whether a field holds a list, tuple, set, dict or model (typed as JSON)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        arguments = typing.get_args(annotation)
        if origin is typing.Annotated:
            arguments = arguments[:1]
        return any(_is_structured(argument) for argument in arguments)
    kind = origin or annotation
    if isinstance(kind, type):
        return issubclass(kind, (list, tuple, set, frozenset, dict, BaseModel))
    return False


def parse_command_line(
    argv: Sequence[str], model: type[BaseModel] | None, capsule: Capsule
) -> tuple[RunOptions, dict[str, Any]]:
    """Parse ``argv`` into run options and the command-line parameter layer.

    Only parameters given with a non-empty value join the layer.

    Raises
    ------
    UsageError
        For an unknown flag or a malformed flag value.
    ConfigError
        For a parameter field named like a wrapper flag, or a missing input directory.
    """
    if model is not None:
        check_parameter_names(model)
    parsed = vars(build_parser(model, capsule).parse_args(list(argv)))
    parameters: dict[str, Any] = {}
    for dest, raw in parsed.items():
        if dest.startswith("param:") and raw is not None and raw.strip() != "":
            name = dest.removeprefix("param:")
            assert model is not None
            parameters[name] = parse_command_line_value(model.model_fields[name], raw)
    defaults = RunOptions(Path(), Path())
    options = RunOptions(
        input_directory=parsed["input_directory"].resolve(),
        results_directory=parsed["results_directory"].resolve(),
        **{
            name: getattr(defaults, name) if parsed[name] is None else parsed[name]
            for name in (
                "dry_run",
                "force",
                "plan",
                "allow_dirty",
                "require_pushed",
                "retry_failed",
                "transient_retries",
                "lease_seconds",
            )
        },
        executor=cast(ExecutorKind, parsed["executor"]),  # argparse checked the choice
        workers=parsed["workers"],
        scheduler_address=(parsed["scheduler_address"] or "").strip() or None,
        verbose=parsed["verbose"],
        explain=parsed["explain"],
    )
    if options.explain is not None and not options.plan:
        raise UsageError(
            f"--explain {options.explain} explains a job of a plan: add --plan 1 (nothing "
            "runs); to compare two stored results, run analysis-wrapper keys diff KEY1 KEY2"
        )
    if not options.input_directory.is_dir():
        raise ConfigError(
            f"input directory {options.input_directory} does not exist; pass "
            "--input_directory DIR (it must hold job_dict/)"
        )
    return options, parameters
