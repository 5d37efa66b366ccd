"""Whole jobs as subprocesses, for fault-injection tests and benchmarks: start `trainer/main.py` as a user
would, follow its steps, find its actors, and check that no prompt was lost or trained twice."""

from __future__ import annotations

import contextlib
import json
import time


def job_args(tiny_models, out, *args: str) -> list[str]:
    """A small whole job on the tiny models (its own teacher unless `--teacher_urls` is given)."""
    return [f"--teacher_model={tiny_models['teacher']}", f"--student_model={tiny_models['student']}",
            "--student_dtype=float32", "--teacher_dtype=float32",
            "--student_kv_cache_gib=0.25", "--teacher_kv_cache_gib=0.25", "--max_new_tokens=16",
            "--max_prompt_len=96", "--batch_size=4", "--max_inflight_per_actor=4", "--max_staleness=1000",
            "--eval_at_start=false", "--eval_every=1000", f"--output_dir={out}", *args]  # fmt: skip


class Job:
    """`python trainer/main.py ...` as a subprocess, as `ray job submit` or a user would start it."""

    def __init__(self, tiny_models, out, *args: str, env: dict | None = None):
        import os
        import subprocess
        import sys

        from tests.conftest import ROOT

        self.out, self.log = out, out.parent / f"job-{time.time_ns()}.log"
        cmd = [sys.executable, str(ROOT / "trainer" / "main.py"), *job_args(tiny_models, out, *args)]
        env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": "0-1", **(env or {})}
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.log.open("w")
        )

    def children(self) -> list:
        """Every process the job has started so far (its teacher, Ray, the actors)."""
        import psutil

        return psutil.Process(self.proc.pid).children(recursive=True)

    def steps(self) -> list[int]:
        """The training steps recorded so far (a line being written is skipped)."""
        path = self.out / "metrics.jsonl"
        records = []
        for line in path.read_text().splitlines() if path.exists() else []:
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
        return [r["step"] for r in records if "train/loss" in r]

    def wait_step(self, step: int, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.steps() or self.steps()[-1] < step:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no step {step} after {timeout_s} s"
            time.sleep(0.2)

    def finish(self, timeout_s: float = 600) -> str:
        self.proc.wait(timeout_s)
        err = self.log.read_text()
        assert self.proc.returncode == 0, err[-3000:]
        return err


def trained_exactly_once(out) -> None:
    """Every prompt handed out is trained on exactly once or still held in the final checkpoint's state:
    nothing lost, nothing duplicated."""
    import torch

    from trainer.outputs.checkpoints import latest_checkpoint

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    trained = [p for r in records for p in r.get("data/trained_positions", [])]
    state = torch.load(latest_checkpoint(out / "checkpoints") / "trainer_state.pt", weights_only=False)
    held = state["data"]["in_flight"]
    assert len(trained) == len(set(trained)), "a prompt was trained twice"
    assert not set(trained) & set(held)
    assert sorted([*trained, *held]) == list(range(state["data"]["position"])), "a prompt was lost"


def actor_pids(job_pid: int) -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process(job_pid).children(recursive=True) if "RolloutWorker" in command(p)]


def wait_gone(processes, timeout_s: float = 30) -> None:
    """Each process exits (Ray's own processes exit as its shutdown completes)."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while alive := [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, [command(p)[:120] for p in alive]
        time.sleep(0.5)


def command(p) -> str:
    import psutil

    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def command_lines(procs: list) -> list[str]:
    """Each process's command line, read for certain: a process that has ended meanwhile has none (skipped),
    one that cannot be read fails the caller (`command` would give "", in which no secret is ever found)."""
    import psutil

    lines = []
    for p in procs:
        try:
            lines.append(" ".join(p.cmdline()))
        except psutil.NoSuchProcess:  # (zombies included) gone: nothing left to read or leak
            continue
    return lines


def wait_for(condition, timeout_s: float, poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s"
        time.sleep(poll_s)
