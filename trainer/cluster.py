"""The Ray cluster the job runs on: which one (`ray_address`), reaching it fast or failing in seconds
(`probe`), joining it (`connect`), its resources, and free ports for the rendezvous a job sets up."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

from trainer.config import OutputConfig
from trainer.errors import RunError


def ray_address(cfg: OutputConfig) -> str | None:
    """The cluster to join: `ray_address`, else the one of `ray job submit` (RAY_ADDRESS), else None
    (the job starts a local one)."""
    return cfg.ray_address or os.environ.get("RAY_ADDRESS")


def local_cpus() -> int:
    """CPUs of the local cluster a job starts (at least 2: an actor and a learner)."""
    return max(os.cpu_count() or 1, 2)


def probe(address: str, timeout_s: float = 10.0) -> None:
    """Fail in seconds, not minutes, when a Ray head is unreachable (ray.init retries for a long time)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        return  # "auto" and the like: let Ray resolve them
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise RunError(f"Ray head not reachable at {address}: {e}") from None


def connect(cfg: OutputConfig) -> None:
    """Join the job's cluster (or start a local one). The caller's SIGTERM handler survives: ray.init
    installs a bare exit of its own, which would skip the job's clean-up."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():  # a caller (tests, notebooks) already connected
        return
    quiet = logging.DEBUG if cfg.log_level == "debug" else logging.WARNING
    on_sigterm = signal.getsignal(signal.SIGTERM)
    if address := ray_address(cfg):
        probe(address)
        ray.init(address=address, logging_level=quiet)
    else:
        ray.init(address="local", include_dashboard=False, num_cpus=local_cpus(), logging_level=quiet)
    if on_sigterm is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)


def resources() -> dict[str, float]:
    """What the connected cluster has in all (CPU, GPU, ...)."""
    import ray

    return ray.cluster_resources()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now, on this node."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
