"""Loaded at start-up by a subprocess a test runs with `tests.audit.audited_env` (this directory first on
PYTHONPATH): records every process start and network connection the process makes, through Python's audit
hooks (PEP 578), to the file SKD_AUDIT_LOG names, so a test can check what a command started, not how long
it took."""

import os
import sys

_LOG = os.environ.get("SKD_AUDIT_LOG")
_WATCH = {
    "subprocess.Popen": "process",
    "os.fork": "process",
    "os.forkpty": "process",
    "os.posix_spawn": "process",
    "os.exec": "process",
    "os.system": "process",
    "socket.connect": "connect",
}

if _LOG:

    def _record(event: str, args: tuple) -> None:
        kind = _WATCH.get(event)
        if kind is None or (kind == "connect" and _local_socket(args)):
            return
        with open(_LOG, "a") as f:
            f.write(f"{kind} {event} {str(args)[:300]!r}\n")

    def _local_socket(args: tuple) -> bool:
        """A Unix socket (not the network): a path, or an abstract name."""
        return len(args) > 1 and isinstance(args[1], (str, bytes))

    sys.addaudithook(_record)
