"""The ``analysis-wrapper`` command: look at and manage what the capsule has stored.

::

    analysis-wrapper results find [--param KEY=VALUE ...] [--format table|json]
    analysis-wrapper results verify [--param KEY=VALUE ...] [--deep 0|1]
    analysis-wrapper results reproduce KEY [--dir DIR]
    analysis-wrapper keys diff KEY1 KEY2 [--format text|json]
    analysis-wrapper status [--all] [--format table|json]
    analysis-wrapper gc [--delete 0|1] [--older_than SECONDS]
    analysis-wrapper app-panel [--check]
    analysis-wrapper init [--input LOCATION ...]

The capsule is the folder holding ``code/run_capsule.py`` above the current folder,
or ``--capsule DIR``. Exit codes: 0 success, 1 a store failed, 2 a usage error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .capsule import configure_logging, exit_code_of
from .commands import app_panel, dispatch, gc, init, keys, results, status
from .commands.common import CommandParser

COMMAND_MODULES = (results, keys, status, gc, app_panel, dispatch, init)


def build_parser() -> argparse.ArgumentParser:
    """The parser for every subcommand."""
    parser = CommandParser(prog="analysis-wrapper", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``analysis-wrapper`` and return its exit code."""
    configure_logging(logging.WARNING)
    arguments = list(sys.argv[1:] if argv is None else argv)

    def run() -> int:
        args = build_parser().parse_args(arguments)
        code: int = args.handler(args)
        sys.stdout.flush()  # here, so a closed pipe is caught below, not at exit
        return code

    try:
        return exit_code_of(run)
    except BrokenPipeError:
        # The reader went away (`analysis-wrapper results find | head`): not an error.
        # Point stdout at /dev/null so the interpreter's last flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
