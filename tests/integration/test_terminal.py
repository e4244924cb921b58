"""On a terminal: a progress bar, and the per-job lines only with ``-v``.

The capsule's stderr is a real pseudo-terminal here, as when a scientist runs it in a
shell; stdout stays a pipe, so the run's one summary line is read as usual.
"""

from __future__ import annotations

import sys

from conftest import CapsuleCopy
from pseudo_terminal import run_on_terminal as on_terminal


def run_on_terminal(capsule: CapsuleCopy, *args: str) -> tuple[int, str, str]:
    """Run the capsule with stderr on a pseudo-terminal; return (code, stdout, terminal)."""
    command = [sys.executable, "-u", str(capsule.code / "run_capsule.py"), *args]
    return on_terminal(command, capsule.code)


def test_per_job_lines_hide_behind_the_bar_and_show_with_v(capsule: CapsuleCopy) -> None:
    """Without -v the terminal shows the bar (6/6) and no job's line; with -v, both."""
    code, out, terminal = run_on_terminal(capsule, "--dry_run", "1")
    assert code == 0, terminal
    assert out.startswith("6 job(s): 6 ran, 0 skipped, 0 failed (dry run)")
    assert "6/6" in terminal  # the bar, at its end
    assert "succeeded in" not in terminal and "(no record with this key)" not in terminal

    code, out, terminal = run_on_terminal(capsule, "--dry_run", "1", "-v")
    assert code == 0, terminal
    assert terminal.count("succeeded in") == 6
    assert terminal.count("(no record with this key)") == 6
