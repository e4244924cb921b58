"""On a terminal: a progress bar, and the per-job lines only with ``-v``.

The capsule's stderr is a real pseudo-terminal here, as when a scientist runs it in a
shell; stdout stays a pipe, so the run's one summary line is read as usual.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading

from conftest import CapsuleCopy


def run_on_terminal(capsule: CapsuleCopy, *args: str) -> tuple[int, str, str]:
    """Run the capsule with stderr on a pseudo-terminal; return (code, stdout, terminal)."""
    controller, terminal = pty.openpty()
    # A window 40 rows by 120 columns, as a terminal has (a new one has none).
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-u", str(capsule.code / "run_capsule.py"), *args],
        cwd=capsule.code,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
    )
    os.close(terminal)  # the child holds it now; its exit ends the reads below
    seen: list[bytes] = []

    def drain() -> None:  # a terminal's buffer is small: read while the run writes
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not data:
                return
            seen.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = process.communicate(timeout=300)
    reader.join(timeout=60)
    os.close(controller)
    return process.returncode, out, b"".join(seen).decode("utf-8", "replace")


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
