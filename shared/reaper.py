"""Nothing a process started outlives it, even when it is `kill -9`ed or OOM-killed (no cleanup runs).

`start()` spawns `python -m shared.reaper PID`: a small process that keeps a list of PID's descendants
and, once PID is gone, kills those still running. Used by
- the training job: its local Ray cluster (Ray's own fate-sharing takes the raylet and workers with the
  driver, but not the dashboard and runtime-env agents, which wait on the dead GCS forever) and its
  self-started teacher. A cluster the job merely joined (`ray job submit`) holds none of its
  descendants and is left alone;
- the teacher server: vLLM's EngineCore process, which outlives a server stopped by a signal.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import psutil


def start() -> subprocess.Popen:
    """Watch this process (call once, from an entry point, not from library use)."""
    return subprocess.Popen(
        [sys.executable, "-m", "shared.reaper", str(os.getpid())],
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [_root(), os.environ.get("PYTHONPATH")])),
        },
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the job's terminal group does not stop the reaper first
    )


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _kill(procs: dict[int, float]) -> int:
    """SIGKILL the recorded processes that still run (same pid *and* start time) and their descendants."""
    victims = []
    for pid, created in procs.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created:
                victims += [p, *p.children(recursive=True)]
        except psutil.Error:
            continue
    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return len(victims)


def watch(job_pid: int, poll_s: float = 0.5) -> None:
    me = os.getpid()
    try:
        job = psutil.Process(job_pid)
    except psutil.NoSuchProcess:
        return
    seen: dict[int, float] = {}
    while True:
        try:
            for child in job.children(recursive=True):
                if child.pid != me:
                    seen[child.pid] = child.create_time()
            if not job.is_running() or job.status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(poll_s)
    _kill(seen)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
