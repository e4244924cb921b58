"""What every subcommand shares: a parser that raises, the ``--capsule`` option, 0|1 flags."""

from __future__ import annotations

import argparse

from ..config.command_line import CommandParser

__all__ = ["CommandParser", "capsule_option", "zero_or_one"]


def capsule_option() -> argparse.ArgumentParser:
    """A parent parser holding ``--capsule DIR``."""
    parent = CommandParser(add_help=False)
    parent.add_argument("--capsule", help="the capsule folder (default: found from here)")
    return parent


def zero_or_one(text: str) -> bool:
    """Read a ``0|1`` flag's value (``--delete 1``, ``--deep 1``)."""
    if text.strip() not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got {text!r}")
    return text.strip() == "1"
