"""Benchmarks of the training system (figures for the closing note; not a test).

R1  Rollout throughput (committed tokens/s) of SKD rollout actors on the embedded default models
    (SmolLM2-135M teacher server, pruned student), actors only, after a warm-up.
R2  Time of one weight push of the 135M-parameter model to 2 actors: export from the learner, ray.put,
    load into both vLLM engines and reset their prefix caches (median of repeats, with its parts).
R3  The trainer's busy fraction in steady state when rollout capacity suffices (supervised_kd on the
    arithmetic prompts: one /score per sample), from the job's own metrics.

    python -m benchmarks.bench_training [--only r1|r2|r3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import ray
import torch

from shared import reaper
from trainer.config import RunConfig
from trainer.data.tasks import load_examples
from trainer.methods import METHODS
from trainer.models import default_student, ensure_default_teacher


def rollout_throughput(seconds: float, student: str | None) -> list[dict]:
    """R1 for 1 and 2 actors against one teacher server (`benchmarks.rollout_speed.measure`)."""
    from benchmarks.rollout_speed import measure
    from trainer.teacher.service import teacher_service

    cfg = RunConfig(actor_num_cpus=0.5)
    teacher = ensure_default_teacher()
    student = Path(student) if student else default_student(teacher, cfg)
    with teacher_service(cfg, teacher, Path(tempfile.mkdtemp()) / "teacher.log") as (urls, info):
        configs = {n: RunConfig(actor_num_cpus=0.5, num_rollout_actors=n) for n in (1, 2)}
        return [
            {"actors": n} | measure(c, str(student), urls, info.eos_token_ids, seconds)
            for n, c in configs.items()
        ]


def weight_push(repeats: int) -> dict:
    from ray.util.queue import Queue

    from trainer.learner.local import LocalLearner
    from trainer.rollout.worker import rollout_actor

    model = ensure_default_teacher()  # the 135M-parameter model itself plays the student here
    cfg = RunConfig(student_dtype="bfloat16", actor_num_cpus=0.5)
    learner = LocalLearner(cfg, model)
    params = sum(p.numel() for p in learner.model.parameters())
    workers = [
        rollout_actor(cfg).remote(
            cfg, str(model), ["http://127.0.0.1:9"], (Queue(), Queue()), i, [2], METHODS["skd"](cfg)
        )
        for i in range(2)
    ]
    ray.get([w.get_stats.remote() for w in workers])  # engines up
    totals, exports, puts, loads = [], [], [], []
    for version in range(1, repeats + 1):
        t0 = time.perf_counter()
        weights = learner.export_weights(torch.bfloat16)
        t1 = time.perf_counter()
        ref = ray.put(weights)
        t2 = time.perf_counter()
        load = ray.get([w.update_weights.remote(version, ref, apply_now=True) for w in workers])
        t3 = time.perf_counter()
        totals.append(t3 - t0)
        exports.append(t1 - t0)
        puts.append(t2 - t1)
        loads.append(max(load))
    for w in workers:
        ray.kill(w)
    return {
        "parameters": params,
        "actors": 2,
        "push_s_median": statistics.median(totals),
        "push_s_all": totals,
        "export_s_median": statistics.median(exports),
        "ray_put_s_median": statistics.median(puts),
        "engine_load_s_median_slowest_actor": statistics.median(loads),
    }


def busy_fraction(steps: int) -> dict:
    from trainer.cli import main

    out = Path(tempfile.mkdtemp()) / "run"
    data = out.parent / "arith.jsonl"
    data.write_text(
        "".join(ex.model_dump_json() + "\n" for ex in load_examples("embedded") if ex.task == "arithmetic")
    )
    args = {
        "method": "supervised_kd",
        "train_data": data,
        "steps": steps,
        "eval_at_start": "false",
        "eval_every": steps,
        "checkpoint_every": steps,
        "output_dir": out,
        "num_eval_prompts": 8,
    }
    main([f"--{k}={v}" for k, v in args.items()])
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "steps": steps,
        "busy_fraction_whole_run": _fraction_after(records, 0),
        "busy_fraction_second_half": _fraction_after(records, steps // 2),  # steady state
    }


def _fraction_after(records: list[dict], after_step: int) -> float:
    """Busy fraction from per-step timings logged after `after_step`."""
    rows = [r for r in records if "perf/step_busy_s" in r and r["step"] > after_step]
    busy = sum(r["perf/step_busy_s"] for r in rows)
    idle = sum(r["perf/step_idle_s"] for r in rows)
    return busy / max(busy + idle, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["r1", "r2", "r3"])
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--student", help="R1: student model dir (default: the pruned initialisation)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/training.json"))
    args = ap.parse_args()
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    results = {}
    if args.only in (None, "r2"):
        results["r2_weight_push"] = weight_push(args.repeats)
        print(json.dumps(results["r2_weight_push"], indent=2))
    if args.only in (None, "r1"):
        results["r1_rollout"] = rollout_throughput(args.seconds, args.student)
        print(json.dumps(results["r1_rollout"], indent=2))
    if args.only in (None, "r3"):
        results["r3_busy"] = busy_fraction(args.steps)
        print(json.dumps(results["r3_busy"], indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
