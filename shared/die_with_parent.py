"""`python -m shared.die_with_parent PARENT_PID MODULE [ARGS...]`: run MODULE as `__main__`, SIGKILLed as
soon as the process that started it dies, however it dies (`kill -9`, the OOM killer).

Linux's parent-death signal, set in the child itself rather than in a `preexec_fn` (unsafe in a parent
with threads, as a Ray driver has). Elsewhere the module simply runs.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    parent, module, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        sys.exit(f"parent process {parent} is gone")
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
