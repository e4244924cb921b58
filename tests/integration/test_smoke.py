"""The example capsule runs end to end, then skips every job."""

import json

from conftest import CapsuleCopy


def test_example_runs_then_skips(capsule: CapsuleCopy) -> None:
    """A posting run runs six jobs; the second run skips all six."""
    first = capsule.run("--dry_run", "0")
    assert first.returncode == 0, first.stderr
    summary = json.loads((capsule.results / "run_summary.json").read_text())
    assert (summary["ran"], summary["skipped"], summary["failed"]) == (6, 0, 0)
    second = capsule.run("--dry_run", "0")
    assert second.returncode == 0, second.stderr
    summary = json.loads((capsule.results / "run_summary.json").read_text())
    assert (summary["ran"], summary["skipped"], summary["failed"]) == (0, 6, 0)
