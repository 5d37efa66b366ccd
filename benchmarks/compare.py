"""The paper's comparison at a size this machine runs: every method from the same student at equal budget.

    python -m benchmarks.compare              # 6 methods x 3 seeds on the short-answer task (hours, 2 cores)
    python -m benchmarks.compare --quick      # smoke run: 1 seed, 2 steps, 8 held-out prompts (~15 min)
    python -m benchmarks.compare --methods skd on_policy --seeds 0 1 --steps 20 -- --gamma=3

Parts, in the order they run:
- one teacher server for all runs (`trainer.teacher.service`), and the teacher's own greedy score on the
  held-out prompts (the ceiling the task metric can approach; measured first, as it decides whether the task
  can show anything);
- one training job per (method, seed) as a subprocess (`trainer/main.py --teacher_urls=...`), each from the
  same initial student, with the same optimizer steps x batch size (prompts seen), the same response-length
  limit and the same evaluation: held-out draft acceptance, KL(teacher || student) per token on the student's
  greedy outputs, and the task metric (`eval/answer_match` on `short_answers`);
- the summary: `results.json` (every run's eval curve and the tokens it trained on), `summary.md` (final mean
  and spread per method) and a plot per metric over steps (mean over seeds, min-max band).

A run that exists already (its `metrics.jsonl` ends with the final evaluation) is read, not re-run, and an
interrupted one continues from its last checkpoint (one per evaluation), so a second call goes on where the
first stopped; runs made with other settings start over (`--fresh`: all of them). `--quick` writes to its own
dir. `--report` summarizes the runs finished so far without starting anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from shared import reaper
from trainer.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]


def metrics(args: argparse.Namespace) -> dict[str, tuple[str, bool]]:
    """metrics.jsonl key -> (label, higher is better): acceptance, KL and the task's metric."""
    return {
        "eval/acceptance": ("held-out draft acceptance (SKD rollouts, K=25)", True),
        "eval/kl": ("KL(teacher || student) per token, student's greedy outputs", False),
        f"eval/{args.metric}": (f"{args.metric} ({args.data}), student's greedy outputs", True),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per run")
    p.add_argument(
        "--batch_size", type=int, default=8, help="sequences per step (prompts seen = steps x this)"
    )
    p.add_argument("--eval_every", type=int, default=10)
    p.add_argument(
        "--lr",
        type=float,
        default=3e-4,
        help="every run's learning rate: at the trainer's default 5e-5 no method moves answer_match within "
        "20 steps; at 3e-4 the pruned student recovers within the budget (probe runs, 2026-11-27)",
    )
    p.add_argument("--num_eval_prompts", type=int, default=64)
    p.add_argument("--max_new_tokens", type=int, default=32)
    p.add_argument(
        "--data", default="short_answers", help="train_data of every run (its eval split is held out)"
    )
    p.add_argument("--eval_data", default=None, help="held-out data (default: train_data's eval split)")
    p.add_argument("--metric", default="answer_match", help="the task metric to summarize and plot")
    p.add_argument("--teacher_model", default="default")
    p.add_argument("--student_model", default="default")
    p.add_argument(
        "--out", type=Path, default=None, help="default outputs/compare (--quick: outputs/compare-quick)"
    )
    p.add_argument("--quick", action="store_true", help="1 seed, 2 steps, 8 held-out prompts: a smoke run")
    p.add_argument("--fresh", action="store_true", help="re-run runs that finished before")
    p.add_argument("--report", action="store_true", help="summarize the runs finished so far; start nothing")
    p.add_argument("extra", nargs="*", help="more trainer flags for every run, after --, e.g. -- --lr=1e-4")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = ROOT / "outputs" / ("compare-quick" if args.quick else "compare")
    if args.quick:
        args.seeds, args.steps, args.eval_every, args.num_eval_prompts = args.seeds[:1], 2, 2, 8
        args.max_new_tokens = min(args.max_new_tokens, 16)
    return args


def trainer_flags(
    args: argparse.Namespace, method: str, seed: int, urls: list[str], student: Path
) -> list[str]:
    """The same budget and evaluation for every method; only the method and the seed differ."""
    return [
        f"--method={method}",
        f"--seed={seed}",
        f"--train_data={args.data}",
        *([f"--eval_data={args.eval_data}"] if args.eval_data else []),
        f"--teacher_model={args.teacher_model}",
        f"--student_model={student}",
        f"--teacher_urls=[{','.join(urls)}]",
        f"--steps={args.steps}",
        f"--lr={args.lr}",
        f"--batch_size={args.batch_size}",
        f"--eval_every={args.eval_every}",
        f"--num_eval_prompts={args.num_eval_prompts}",
        f"--max_new_tokens={args.max_new_tokens}",
        f"--checkpoint_every={args.eval_every}",  # an interrupted run continues from its last evaluation
        "--save_total_limit=1",
        "--preflight=false",  # checked once here: same teacher, same student for every run
        *args.extra,
    ]


def finished(run_dir: Path, steps: int) -> bool:
    records = read_metrics(run_dir)
    return any(r["step"] == steps and "eval/kl" in r for r in records)


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def run_one(args: argparse.Namespace, method: str, seed: int, urls: list[str], student: Path) -> dict:
    """Train one (method, seed) to the budget, or read it if done; its eval curve and what it trained on.

    An unfinished run continues from its last checkpoint (`--resume=true`); one made with other settings
    (another budget, `--quick`, other flags) or stopped before its first checkpoint starts over."""
    run_dir = args.out / method / f"seed{seed}"
    flags = trainer_flags(args, method, seed, urls, student)
    plan = [f for f in flags if not f.startswith("--teacher_urls=")]  # the teacher's port changes per call
    if args.fresh or not finished(run_dir, args.steps):
        checkpoint = prepare_run_dir(run_dir, plan, args.fresh)
        cmd = [sys.executable, "trainer/main.py", f"--output_dir={run_dir}", *flags]
        cmd.append("--resume=true" if checkpoint else "--resume=false")
        t0 = time.perf_counter()
        with open(run_dir / "console.log", "a") as log:
            rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            tail = (run_dir / "console.log").read_text().splitlines()[-15:]
            raise SystemExit(f"{method} seed {seed} failed (exit {rc}):\n" + "\n".join(tail))
        (run_dir / "wall_s").write_text(f"{time.perf_counter() - t0:.1f}\n")  # the last (or only) part
    return read_run(args, method, seed)


def prepare_run_dir(run_dir: Path, plan: list[str], fresh: bool) -> Path | None:
    """The checkpoint an unfinished run of this `plan` continues from; None after clearing a run made with
    other settings, or stopped before its first checkpoint (nothing in it to keep), or when `fresh`."""
    from trainer.outputs.checkpoints import latest_checkpoint

    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    planned = run_dir / "plan.json"
    if fresh or checkpoint is None or not planned.exists() or json.loads(planned.read_text()) != plan:
        shutil.rmtree(run_dir, ignore_errors=True)
        checkpoint = None
    run_dir.mkdir(parents=True, exist_ok=True)
    planned.write_text(json.dumps(plan, indent=0))
    return checkpoint


def read_run(args: argparse.Namespace, method: str, seed: int) -> dict:
    """A finished run's eval curve, what it trained on and how long it took."""
    run_dir = args.out / method / f"seed{seed}"
    records = read_metrics(run_dir)
    evals = [r for r in records if "eval/kl" in r]
    train = [r for r in records if "train/loss" in r]
    wall = run_dir / "wall_s"
    accepted = [r["train/batch_acceptance"] for r in train if r.get("train/batch_acceptance") is not None]
    ks = [r["train/top_k"] for r in train if "train/top_k" in r]  # target_acceptance's K, per step
    return {
        "method": method,
        "seed": seed,
        "evals": evals,
        "optimizer_steps": len(train),
        "prompts_seen": len(train) * args.batch_size,
        "response_tokens_trained": sum(r.get("train/tokens", 0) for r in train),
        "batch_acceptance": statistics.fmean(accepted) if accepted else None,  # mean over steps
        "mean_top_k": statistics.fmean(ks) if ks else None,
        "eval_s": sum(v for e in evals for k, v in e.items() if k.startswith("perf/eval_")),  # parts
        "wall_s": float(wall.read_text()) if wall.exists() else None,
    }


def teacher_score(args: argparse.Namespace, urls: list[str], student: Path) -> dict[str, float]:
    """The teacher's greedy responses to the held-out prompts, scored like the student's."""
    from transformers import AutoTokenizer

    from shared.client import TeacherClient
    from shared.protocol import GenerateItem, GenerateRequest
    from trainer.config import RunConfig
    from trainer.data.prompts import load_prompts
    from trainer.data.tasks import score_set

    cfg = RunConfig(train_data=args.data, eval_data=args.eval_data, num_eval_prompts=args.num_eval_prompts)
    tokenizer = AutoTokenizer.from_pretrained(student)
    _, examples, prompt_ids = load_prompts(cfg, tokenizer)
    req = GenerateRequest(
        items=[GenerateItem(prompt_ids=ids) for ids in prompt_ids],
        max_tokens=args.max_new_tokens,
        temperature=0,
    )

    async def generate():
        async with TeacherClient(urls) as client:
            return await client.generate(req)

    out = asyncio.run(generate())
    responses = [tokenizer.decode(item.token_ids, skip_special_tokens=True) for item in out.items]
    return score_set(examples, responses)


def mean_spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(args: argparse.Namespace, runs: list[dict], teacher: dict[str, float]) -> str:
    """summary.md: the initial student (every run's step 0), then per method the final evaluation's mean
    ± standard deviation over seeds."""
    keys = [k for k in metrics(args) if any(k in r["evals"][-1] for r in runs)]
    names = [k.removeprefix("eval/") for k in keys]
    initial = [mean_spread([r["evals"][0][k] for r in runs]) for k in keys]
    lines = [
        f"# Method comparison ({args.data}, {args.steps} steps x {args.batch_size} prompts, "
        f"seeds {args.seeds}, max_new_tokens {args.max_new_tokens}, "
        f"{args.num_eval_prompts} held-out prompts)",
        "",
        "- teacher, greedy: " + ", ".join(f"{k} {v:.3f}" for k, v in teacher.items()),
        "- initial student (step 0): " + ", ".join(f"{n} {m:.3f}" for n, (m, _) in zip(names, initial)),
        "",
        "| method (final) | " + " | ".join(names) + " | response tokens trained | wall s | seeds |",
        "|---" * (len(keys) + 4) + "|",
    ]
    for method in args.methods:
        mine = [r for r in runs if r["method"] == method]
        last = [mean_spread([r["evals"][-1][k] for r in mine]) for k in keys]
        tokens = statistics.fmean(r["response_tokens_trained"] for r in mine)
        walls = [r["wall_s"] for r in mine if r["wall_s"] is not None]
        wall = f"{statistics.fmean(walls):.0f}" if walls else "-"
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in last]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {tokens:.0f} | {wall} | {len(mine)} |")
    return "\n".join(lines) + "\n"


def plot(args: argparse.Namespace, runs: list[dict]) -> list[Path]:
    """One PNG per metric: mean over seeds per method over steps, with the min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for key, (label, _) in metrics(args).items():
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for method in args.methods:
            curves = [
                {e["step"]: e[key] for e in r["evals"] if key in e} for r in runs if r["method"] == method
            ]
            steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
            if not steps:
                continue
            values = [[c[s] for c in curves] for s in steps]
            ax.plot(steps, [statistics.fmean(v) for v in values], marker="o", label=method)
            ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], alpha=0.15)
        if not ax.lines:
            plt.close(fig)
            continue
        ax.set_xlabel("optimizer step")
        ax.set_title(f"{label}\nmean over seeds {args.seeds}, band = min..max", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        path = args.out / f"{key.removeprefix('eval/')}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    from trainer.config import RunConfig
    from trainer.models import resolve_models
    from trainer.teacher.service import teacher_service

    args = parse_args(argv)
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cfg = RunConfig(
        teacher_model=args.teacher_model,
        student_model=args.student_model,
        max_new_tokens=args.max_new_tokens,
        train_data=args.data,
        eval_data=args.eval_data,
    )
    grid = [(m, s) for s in args.seeds for m in args.methods]  # seed-major: every method early on
    if args.report:  # what has finished so far, without starting anything
        runs = [read_run(args, m, s) for m, s in grid if finished(args.out / m / f"seed{s}", args.steps)]
        if not runs or not (args.out / "teacher.json").exists():
            raise SystemExit(f"no finished comparison run in {args.out}: run the comparison first")
        teacher = json.loads((args.out / "teacher.json").read_text())
        args.methods = [m for m in args.methods if any(r["method"] == m for r in runs)]
        args.seeds = sorted({r["seed"] for r in runs})
    else:
        teacher_path, student = resolve_models(cfg)  # the same initial student for every run
        with teacher_service(cfg, teacher_path, args.out / "teacher_server.log") as (urls, _):
            teacher = teacher_score(args, urls, student)
            (args.out / "teacher.json").write_text(json.dumps(teacher))
            print(f"teacher, greedy, {args.num_eval_prompts} held-out prompts: {teacher}", flush=True)
            runs = [run_one(args, m, s, urls, student) for m, s in tqdm(grid, desc="runs", unit="run")]
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "teacher": teacher, "runs": runs}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    summary = summarize(args, runs, teacher)
    (args.out / "summary.md").write_text(summary)
    paths = plot(args, runs)
    print(summary + "\nplots: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
