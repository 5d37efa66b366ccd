"""What a subprocess started or connected to, read from its audit log (tests/audit_site/sitecustomize.py):
"starts nothing" and "no network call" checked as such, not by a wall-clock bound."""

from __future__ import annotations

import os
from pathlib import Path

SITE = Path(__file__).parent / "audit_site"


def audited_env(log: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) for a Python subprocess that records to `log` each process it starts
    and each network connection it opens."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SITE), env.get("PYTHONPATH", "")) if p)
    env["SKD_AUDIT_LOG"] = str(log)
    log.unlink(missing_ok=True)
    return env


def audited(log: Path) -> list[str]:
    """The events recorded: 'process ...' and 'connect ...' lines (none when nothing was started)."""
    return log.read_text().splitlines() if log.exists() else []
