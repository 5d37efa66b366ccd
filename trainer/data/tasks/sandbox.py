"""Run untrusted generated code: a fresh isolated interpreter in a temporary directory, with a timeout that
kills the program's whole process group (anything it started included)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path


def run_python(program: str, timeout_s: float) -> bool:
    """True iff the program exits 0 within `timeout_s`; its output is discarded."""
    with tempfile.TemporaryDirectory(prefix="skd_sandbox_") as tmp:
        script = Path(tmp) / "program.py"
        script.write_text(program, encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, "-I", str(script)],
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=timeout_s) == 0
        except subprocess.TimeoutExpired:
            return False
        finally:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the program and anything it left running (it leads its own process group), then reap it."""
    if hasattr(os, "killpg"):
        with contextlib.suppress(OSError):  # the group is gone: the program exited and left nothing behind
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
