"""The teacher the job talks to: given URLs (at least one must answer at start) or a server it starts.

The trainer never imports `rollout_server`: it starts `python -m rollout_server` as a subprocess and talks
to it over HTTP like any other client. That server dies with the job, even a `kill -9`ed one (Linux
parent-death signal), and gets the API key through its environment, never its command line (which every
local user can read).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from shared.client import (
    TeacherClient,
    TeacherEndpoint,
    TeacherRefused,
    TeacherUnavailable,
    wait_until_healthy,
)
from shared.engine_settings import engine_dtype
from shared.protocol import ServerInfo
from trainer.cluster import free_port
from trainer.config import RunConfig, TeacherConfig
from trainer.errors import RunError

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]  # the repo: `shared` and `rollout_server` import from here


class TeacherError(RunError):
    """The teacher cannot be started or reached: the run stops before its work."""

    def __init__(self, why: str):
        super().__init__(f"teacher: {why}")


def client(cfg: TeacherConfig, urls: list[str]) -> TeacherClient:
    """The rollout's client of the teacher URLs, with this run's key and outage limit."""
    return TeacherClient(urls, api_key=cfg.teacher_key(), outage_s=cfg.teacher_outage_s)


def check_urls(urls: list[str], api_key: str | None, timeout_s: float = 10.0) -> tuple[list[str], ServerInfo]:
    """The URLs (fails fast if none answers) and the teacher's /info. URLs down now are kept, with a
    warning: the teacher client keeps probing them and uses them once they answer."""
    live, errors, info = [], [], None
    for url in urls:
        try:
            with TeacherEndpoint(url, api_key, timeout_s) as teacher:
                if not teacher.healthy():
                    raise RuntimeError("not healthy")
                info = info or teacher.info()
            live.append(url)
        except TeacherRefused as e:
            errors.append(f"{e} (set teacher_api_key)" if e.status == 401 else str(e))
        except (httpx.HTTPError, RuntimeError) as e:
            errors.append(f"{url}: {e}")
    if not live:
        raise TeacherError("no teacher reachable:\n  " + "\n  ".join(errors))
    for err in errors:
        logger.warning("teacher %s; used once it answers", err)
    return [u.rstrip("/") for u in urls], info


@contextlib.contextmanager
def teacher_service(
    cfg: RunConfig, teacher_path: Path, log_path: Path
) -> Iterator[tuple[list[str], ServerInfo]]:
    """Yield (urls, info); start and stop a local server when cfg.teacher_urls is empty."""
    if cfg.teacher_urls:
        yield check_urls(cfg.teacher_urls, cfg.teacher_key())
        return
    port = free_port()
    max_len = cfg.max_prompt_len + cfg.max_new_tokens + cfg.longest_draft + 1
    cmd = [sys.executable, "-m", "shared.die_with_parent", str(os.getpid()), "rollout_server"]
    cmd += ["--model", str(teacher_path), "--port", str(port)]
    dtype = engine_dtype(cfg.teacher_dtype, gpu=_cuda())
    cmd += ["--dtype", dtype, "--kv-cache-gib", str(cfg.teacher_kv_cache_gib)]
    cmd += ["--max-model-len", str(max_len), "--max-logprobs", str(max(64, min(cfg.top_k, 256)))]
    cmd += ["--log-level", "warning"]
    if cfg.teacher_block_size is not None:
        cmd += ["--block-size", str(cfg.teacher_block_size)]
    if cfg.enforce_eager:
        cmd += ["--enforce-eager"]
    env = {k: v for k, v in os.environ.items() if k != "ROLLOUT_API_KEY"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if cfg.teacher_api_key:
        env["ROLLOUT_API_KEY"] = cfg.teacher_key()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_healthy(url, proc, timeout_s=600)
        except TeacherUnavailable as e:
            raise TeacherError(f"{e}; log {log_path}:\n" + log_path.read_text()[-3000:]) from None
        yield check_urls([url], cfg.teacher_key())
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
