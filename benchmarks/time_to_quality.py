"""Time to quality: how long the embedded default job (`make run`: SKD, pruned student, SmolLM2-135M
teacher) takes to reach a held-out draft acceptance target, per variant of the speed settings, the variants
run one after another in one invocation (same machine, same minutes).

    python -m benchmarks.time_to_quality                                  # fixed gamma vs the defaults
    python -m benchmarks.time_to_quality --variants "" overlap_groups=2
    python -m benchmarks.time_to_quality --target 0.5 -- --lr=3e-4       # flags after -- go to every run

Each variant is a `trainer/main.py` run (its own teacher server, like `make run`) that evaluates every
`--eval_every` steps and is stopped at its first evaluation at or above the target. Reported per variant:
the step, the training wall-clock to it with start-up and evaluation time left out (the part the speed
settings change; from the trainer's `perf/*` phase times) and the raw wall-clock from launch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared import reaper

ROOT = Path(__file__).resolve().parents[1]


def records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def reached(recs: list[dict], target: float) -> dict | None:
    """The first evaluation at or above the target, with the training time to it (evaluations excluded)."""
    hit = next((r for r in recs if r.get("eval/acceptance", -1.0) >= target), None)
    if hit is None:
        return None
    train = [r for r in recs if "train/loss" in r and r["step"] <= hit["step"]]
    seconds = sum(
        r["perf/step_busy_s"] + r["perf/step_idle_s"] - r.get("perf/time_eval_s", 0.0) for r in train
    )
    return {"step": hit["step"], "acceptance": hit["eval/acceptance"], "train_s": seconds}


def run_variant(flags: list[str], args: argparse.Namespace, run_dir: Path) -> dict:
    """Train until the target is reached (or the steps run out); stop the job there."""
    cmd = [sys.executable, "trainer/main.py", f"--output_dir={run_dir}", f"--eval_every={args.eval_every}"]
    cmd += [f"--steps={args.max_steps}", "--checkpoint_every=1000000", *args.extra, *flags]
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, never a resumed one
    run_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    with open(run_dir / "console.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        hit = None
        while proc.poll() is None and hit is None:
            time.sleep(2)
            hit = reached(records(run_dir), args.target)
        wall = time.perf_counter() - t0
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the trainer and the teacher server it started
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if hit is None and proc.returncode != 0:
        raise SystemExit(f"{flags} failed (exit {proc.returncode}); see {run_dir / 'console.log'}")
    hit = hit or reached(records(run_dir), args.target)
    evals = [(r["step"], round(r["eval/acceptance"], 3)) for r in records(run_dir) if "eval/acceptance" in r]
    return {"flags": " ".join(flags) or "(defaults)", "reached": hit, "wall_s": wall, "evals": evals}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["adaptive_gamma=false", ""],
        help='trainer settings per variant, one string each, without dashes ("" = the defaults)',
    )
    ap.add_argument("--target", type=float, default=0.6, help="held-out draft acceptance to reach")
    ap.add_argument("--eval_every", type=int, default=3)
    ap.add_argument("--max_steps", type=int, default=60, help="give up after this many steps")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "time_to_quality")
    ap.add_argument("extra", nargs="*", help="trainer flags for every variant, after --")
    args = ap.parse_args(argv)
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    rows = []
    for i, variant in enumerate(args.variants):
        flags = [f"--{setting.removeprefix('--')}" for setting in variant.split()]
        rows.append(run_variant(flags, args, args.out / f"variant{i}"))
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "results.json").write_text(json.dumps({"target": args.target, "rows": rows}, indent=1))
    print(f"| variant | step reaching {args.target} | training s (no evals) | wall s from launch |")
    print("|---|---|---|---|")
    for r in rows:
        hit = r["reached"]
        cells = f"{hit['step']} | {hit['train_s']:.0f}" if hit else "not reached | -"
        print(f"| {r['flags']} | {cells} | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
