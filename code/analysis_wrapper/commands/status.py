"""``analysis-wrapper status``: which jobs are running, stale, failed or done, per claim."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable
from typing import Any

from ..config.settings import StoreSettings
from ..record.query import locate_capsule
from ..stores.claims import Claim, age_text
from ..stores.factory import open_record_store
from .common import capsule_option

EXIT_OK = 0
GROUPS = ("running", "stale", "failed", "released", "done")
_HINTS = {
    "stale": "no heartbeat within the lease, or the process is gone: the next run takes them",
    "failed": "--retry_failed 1 runs them again",
    "released": "let go unfinished (interrupted): the next run takes them",
}


def register(commands: Any) -> None:
    """Add ``status``."""
    status = commands.add_parser(
        "status",
        parents=[capsule_option()],
        help="list claims: running (owner, age, heartbeat), stale, failed; count done",
    )
    status.add_argument("--format", choices=("table", "json"), default="table")
    status.add_argument(
        "--all", action="store_true", help="list the done jobs too, not only their count"
    )
    status.set_defaults(handler=status_command)


def claim_status(claim: Claim, now: float) -> str:
    """One of :data:`GROUPS`: a running claim past its lease (or whose process is gone) is stale."""
    if claim.state == "running" and (claim.lease_expires <= now or claim.owner.is_gone()):
        return "stale"
    return claim.state


def status_command(args: argparse.Namespace) -> int:
    """Print the claims of the capsule's record store, grouped."""
    capsule = locate_capsule(args.capsule)
    store = open_record_store(StoreSettings(), capsule, read_only=True)
    try:
        claims = store.list_claims()
        now = time.time()
        if args.format == "json":
            print(json.dumps([_as_json(claim, now) for claim in claims], indent=2))
        else:
            print(format_status(claims, now, store.display_url, show_done=args.all))
    finally:
        store.close()
    return EXIT_OK


def format_status(claims: Iterable[Claim], now: float, where: str, *, show_done: bool) -> str:
    """The claims as text: one block per group, the oldest first in each."""
    grouped: dict[str, list[Claim]] = {group: [] for group in GROUPS}
    for claim in claims:
        grouped[claim_status(claim, now)].append(claim)
    lines = [f"claims in {where}"]
    for group in GROUPS:
        members = sorted(grouped[group], key=lambda claim: claim.claimed_at)
        hint = f"  ({_HINTS[group]})" if group in _HINTS and members else ""
        lines.append(f"{group:<9}{len(members):>6}{hint}")
        if group == "done" and not show_done:
            continue
        lines += [f"  {_describe(claim, group, now)}" for claim in members]
    return "\n".join(lines)


def _describe(claim: Claim, group: str, now: float) -> str:
    name = claim.label or "?"
    head = f"{name}  {claim.key[:12]}  {claim.owner.describe()}"
    if group == "failed" and claim.failure is not None:
        return (
            f"{head}  {claim.attempts} attempt(s), {age_text(now - claim.heartbeat)} ago: "
            f"{claim.failure.error_class}: {_first_line(claim.failure.message)}"
        )
    if group in ("running", "stale"):
        return (
            f"{head}  started {age_text(now - claim.claimed_at)} ago, "
            f"last heartbeat {age_text(now - claim.heartbeat)} ago, epoch {claim.epoch}"
        )
    return f"{head}  {age_text(now - claim.heartbeat)} ago"


def _as_json(claim: Claim, now: float) -> dict[str, Any]:
    document = claim.to_document()
    document["status"] = claim_status(claim, now)
    return document


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"
