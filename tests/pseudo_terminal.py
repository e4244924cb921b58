"""Run a command with its stderr on a real pseudo-terminal, as in a scientist's shell.

stdout stays a pipe, so what a command prints as its result is read as usual; the
terminal's bytes (a progress bar, its escape codes) are read while the command writes.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading
from pathlib import Path


def run_on_terminal(command: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run ``command`` in ``cwd``, stderr on a 40 x 120 terminal: (code, stdout, terminal)."""
    controller, terminal = pty.openpty()
    # A window 40 rows by 120 columns, as a terminal has (a new one has none).
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
    )
    os.close(terminal)  # the child holds it now; its exit ends the reads below
    seen: list[bytes] = []

    def drain() -> None:  # a terminal's buffer is small: read while the command writes
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
