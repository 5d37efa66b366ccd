"""Fault injection on real processes (tiny models): what each fault costs a run. Figures for the closing
note, not a test (tests/trainer/test_faults.py checks the same behaviour without timing it).

Run A: a job on two teacher servers with two rollout actors. At step 2 one actor and one teacher are
       killed (-9); three steps later the other teacher is killed too (no teacher at all) and the first
       is restarted. Run B: a job with its own teacher is killed (-9) at step 5, then resumed.

    python -m benchmarks.faults            # ~5 min on 2 CPUs
    python -m benchmarks.faults --runs B --json faults.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil
import torch

from devtools.tiny_models import build_teacher_and_student
from shared import reaper
from tests.conftest import Server
from tests.jobs import Job, actor_pids, command
from trainer.outputs.checkpoints import STATE_FILE, latest_checkpoint


def _step_times(out: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["time"]) for r in records if "train/loss" in r]


def _first_step_after(out: Path, t: float) -> float:
    return min(ts for _, ts in _step_times(out) if ts > t) - t


def _log_time(log: Path, pattern: str) -> float:
    """Wall time of the first log line matching `pattern` (our log lines start with a timestamp)."""
    for line in log.read_text().replace("\r", "\n").splitlines():
        if re.search(pattern, line) and (m := re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", line)):
            return datetime.strptime(m.group(0), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise LookupError(pattern)


def _accounting(out: Path) -> dict:
    """Prompts issued vs trained vs still held; duplicates and losses (must be 0)."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    trained = [p for r in records for p in r.get("data/trained_positions", [])]
    state = torch.load(latest_checkpoint(out / "checkpoints") / STATE_FILE, weights_only=False)
    held, issued = state["data"]["in_flight"], state["data"]["position"]
    steps = [r["step"] for r in records if "train/loss" in r]
    return {
        "issued": issued,
        "trained": len(trained),
        "held_at_end": len(held),
        "trained_twice": len(trained) - len(set(trained)),
        "lost": issued - len(set(trained) | set(held)),
        "duplicated_steps": len(steps) - len(set(steps)),
    }


def run_a(models: dict, tmp: Path) -> dict:
    with Server(models["teacher"], tmp / "t1.log") as t1, Server(models["teacher"], tmp / "t2.log") as t2:
        job = Job(models, tmp / "a", f"--teacher_urls=[{t1.url},{t2.url}]", "--steps=30",
                  "--num_rollout_actors=2", "--teacher_outage_s=300")  # fmt: skip
        job.wait_step(2)
        t_kill = time.time()
        os.kill(actor_pids(job.proc.pid)[0], signal.SIGKILL)
        t1.proc.kill()
        job.wait_step(job.steps()[-1] + 3)
        t_outage = time.time()
        t2.proc.kill()
        t1.proc.wait()
        t1.restart()
        t1.wait_ready()
        t_back = time.time()
        job.finish()
    out = tmp / "a"
    return {
        "actor_and_teacher_killed": {
            "next_step_s": _first_step_after(out, t_kill),
            "actor_replaced_after_s": _log_time(job.log, "died: replaced") - t_kill,
        },
        "outage": {
            "length_s": t_back - t_outage,
            "first_step_after_return_s": _first_step_after(out, t_back),
        },
        "accounting": _accounting(out),
    }


def run_b(models: dict, tmp: Path) -> dict:
    out = tmp / "b"
    args = ["--checkpoint_every=3", "--steps=8"]
    job = Job(models, out, *args, env={"SKD_TEACHER_API_KEY": "secret-" + "7" * 12})
    job.wait_step(5)
    started = psutil.Process(job.proc.pid).children(recursive=True)
    key_on_cmdline = any("secret-" in command(p) for p in started)
    t_kill = time.time()
    job.proc.kill()
    job.proc.wait()
    while [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
        time.sleep(0.1)
    gone_s = time.time() - t_kill
    steps_before = job.steps()
    t_resume = time.time()
    resumed = Job(models, out, *args, "--resume", env={"SKD_TEACHER_API_KEY": "secret-" + "7" * 12})
    resumed.finish()
    return {
        "driver_killed": {
            "processes": len(started),
            "all_gone_after_s": gone_s,
            "key_on_cmdline": key_on_cmdline,
        },
        "resume": {
            "steps_before_kill": steps_before[-1],
            "resumed_at_step": min(s for s, ts in _step_times(out) if ts > t_resume),
            "first_step_after_start_s": _first_step_after(out, t_resume),
            "key_in_outputs": any(
                "secret-" in p.read_text(errors="ignore")
                for p in out.rglob("*")
                if p.is_file() and p.suffix in (".md", ".jsonl", ".log")
            ),
        },
        "accounting": _accounting(out),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--runs", nargs="+", choices=["A", "B"], default=["A", "B"], help="which runs (default both)"
    )
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1")
    runs = {"A": run_a, "B": run_b}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        models = build_teacher_and_student(tmp / "models")
        result = _rounded({name: runs[name](models, tmp) for name in args.runs})
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def _rounded(x):
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return round(x, 1) if isinstance(x, float) else x


if __name__ == "__main__":
    main()
