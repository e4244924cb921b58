"""What every subcommand shares: a parser that raises, and the ``--capsule`` option."""

from __future__ import annotations

import argparse

from ..config.command_line import CommandParser

__all__ = ["CommandParser", "capsule_option"]


def capsule_option() -> argparse.ArgumentParser:
    """A parent parser holding ``--capsule DIR``."""
    parent = CommandParser(add_help=False)
    parent.add_argument("--capsule", help="the capsule folder (default: found from here)")
    return parent
