"""``analysis-wrapper app-panel``: write, or check, ``.codeocean/app-panel.json``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config.app_panel import APP_PANEL_PATH, app_panel_text
from ..record.query import locate_capsule
from .common import capsule_option

EXIT_OK = 0
EXIT_STALE = 1


def register(commands: Any) -> None:
    """Add ``app-panel`` to the command parsers."""
    parser = commands.add_parser(
        "app-panel",
        parents=[capsule_option()],
        help="generate .codeocean/app-panel.json from the parameters model and wrapper flags",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the committed file differs from what would be written",
    )
    parser.set_defaults(handler=app_panel_command)


def app_panel_command(args: argparse.Namespace) -> int:
    """Write the app panel, or with ``--check`` say whether the committed one is current."""
    capsule = locate_capsule(args.capsule)
    path = capsule.root / APP_PANEL_PATH
    text = app_panel_text(capsule)
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            state = "is missing" if current is None else "is stale"
            print(
                f"{path} {state}: it does not match the parameters model and the wrapper's "
                "flags; run `analysis-wrapper app-panel` and commit the file",
                file=sys.stderr,
            )
            return EXIT_STALE
        print(f"{path} is up to date")
        return EXIT_OK
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return EXIT_OK
