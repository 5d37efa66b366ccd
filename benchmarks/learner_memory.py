"""Peak memory and step time of the learner's memory settings, and 1 vs 2 learner workers (issue 14).

One optimizer step on a batch of 8 sequences x 512 response tokens (64-token prompts, teacher top-20
targets) on SmolLM2-135M-Instruct as the student (the embedded default model, 135M parameters, vocabulary
49,152). Each setting runs in a fresh process; its peak RSS is the kernel's high-water mark over the steps
(reset with /proc/self/clear_refs once the model is loaded, so loading does not count), and the CUDA peak
where a GPU is used. Settings are cumulative, as a user would stack them:

    fp32 -> bf16 -> + gradient checkpointing -> + chunked loss -> + LoRA (r=16, all-linear)

plus 8-bit AdamW alone. `--workers` then runs 2 steps with 1 learner worker (2 threads) and with 2 FSDP
workers over gloo (1 thread each) on the same batches: losses and step times side by side.

    python -m benchmarks.learner_memory [--tokens 512] [--batch 8] [--workers-only | --no-workers]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from shared import reaper

SETTINGS = {
    "fp32": {},
    "bf16": {"learner_dtype": "bf16"},
    "bf16+ckpt": {"learner_dtype": "bf16", "gradient_checkpointing": True},
    "bf16+ckpt+chunk": {"learner_dtype": "bf16", "gradient_checkpointing": True, "loss_chunk_tokens": 1024},
    "bf16+ckpt+chunk+lora": {
        "learner_dtype": "bf16",
        "gradient_checkpointing": True,
        "loss_chunk_tokens": 1024,
        "lora_rank": 16,
    },
    "fp32+adamw_8bit": {"optimizer": "adamw_8bit"},
}


def batch(n: int, tokens: int, vocab: int, seed: int = 0, prompt: int = 64, k: int = 20):
    from trainer.records import Sample

    r = random.Random(seed)
    return [
        Sample(
            index=i,
            method="bench",
            kind="kd",
            prompt_ids=[r.randrange(vocab) for _ in range(prompt)],
            response_ids=[r.randrange(vocab) for _ in range(tokens)],
            teacher_topk_ids=[r.sample(range(vocab), k) for _ in range(tokens)],
            teacher_topk_logprobs=[
                sorted((-r.random() * 8 for _ in range(k)), reverse=True) for _ in range(tokens)
            ],
            weight_version=0,
        )
        for i in range(n)
    ]


def _rss_peak_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def one_setting(name: str, tokens: int, n: int, steps: int) -> dict:
    """Runs in its own process: load, reset the peak, train `steps` steps."""
    import torch

    from trainer.config import RunConfig
    from trainer.learner.local import LocalLearner
    from trainer.models import ensure_default_teacher

    torch.set_num_threads(2)
    cfg = RunConfig(batch_size=n, warmup_steps=0, lr_schedule="constant", **SETTINGS[name])
    learner = LocalLearner(cfg, ensure_default_teacher())
    data = [batch(n, tokens, learner.lm.config.vocab_size, seed=s) for s in range(steps)]
    loaded = _rss_peak_gib()
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for b in data:
        t0 = time.perf_counter()
        losses.append(learner.train_step(b)["loss"])
        times.append(time.perf_counter() - t0)
    trainable = sum(p.numel() for p in learner.lm.parameters() if p.requires_grad)
    params = list(learner.lm.parameters())
    state = sum(p.nbytes + (p.grad.nbytes if p.grad is not None else 0) for p in params)
    state += sum(t.nbytes for s in learner.optimizer.state.values() for t in s.values() if torch.is_tensor(t))
    return {
        "state_bytes_per_param": state / sum(p.numel() for p in params),
        "setting": name,
        "peak_rss_gib": _rss_peak_gib(),
        "rss_after_load_gib": loaded,
        "cuda_peak_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "step_s": times,
        "loss": losses,
        "trainable_params": trainable,
        "params": sum(p.numel() for p in learner.lm.parameters()),
    }


def workers(tokens: int, n: int, steps: int) -> dict:
    """1 worker (2 threads) vs 2 FSDP workers over gloo (1 thread each), same batches."""
    import ray
    import torch

    from trainer.config import RunConfig
    from trainer.learner.group import LearnerGroup
    from trainer.learner.local import LocalLearner
    from trainer.models import ensure_default_teacher

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    model = ensure_default_teacher()
    out = {}
    base = {"batch_size": n, "warmup_steps": 0, "lr_schedule": "constant", "trainer_device": "cpu"}
    torch.set_num_threads(2)
    one = LocalLearner(RunConfig(**base), model)
    data = [batch(n, tokens, one.lm.config.vocab_size, seed=s) for s in range(steps)]
    out["1 worker"] = [_timed(one.train_step, b) for b in data]
    del one
    ray.init(address="local", include_dashboard=False, num_cpus=2, log_to_driver=False)
    group = LearnerGroup(RunConfig(**base, num_learner_workers=2, trainer_threads=1), model)
    out["2 workers (fsdp, gloo)"] = [_timed(group.train_step, b) for b in data]
    group.shutdown()
    ray.shutdown()
    return out


def _timed(fn, arg) -> tuple[float, float]:
    t0 = time.perf_counter()
    loss = fn(arg)["loss"]
    return time.perf_counter() - t0, loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=512, help="response tokens per sequence")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--only", choices=sorted(SETTINGS), help="(internal) run one setting, print JSON")
    ap.add_argument("--workers-only", action="store_true")
    ap.add_argument("--no-workers", action="store_true")
    args = ap.parse_args()
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    if args.only:
        print("RESULT " + json.dumps(one_setting(args.only, args.tokens, args.batch, args.steps)))
        return
    rows = []
    for name in [] if args.workers_only else SETTINGS:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.learner_memory",
            "--only",
            name,
            "--tokens",
            str(args.tokens),
        ]
        cmd += ["--batch", str(args.batch), "--steps", str(args.steps)]
        run = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in run.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{name} failed:\n{run.stderr[-3000:]}")
        rows.append(json.loads(line[7:]))
        print(f"{name}: done", file=sys.stderr, flush=True)
    if rows:
        base = rows[0]
        print(
            f"\n{args.batch} x {args.tokens} response tokens, {base['params'] / 1e6:.0f}M params, "
            f"{args.steps} steps"
        )
        print(
            "| setting | peak RSS GiB | vs fp32 | step s (last) | vs fp32 | loss step 1 | trainable "
            "| state B/param |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            peak = r["peak_rss_gib"]
            print(
                f"| {r['setting']} | {peak:.2f} | {peak / base['peak_rss_gib']:.0%} | "
                f"{r['step_s'][-1]:.1f} | {r['step_s'][-1] / base['step_s'][-1]:.2f}x | {r['loss'][0]:.4f} | "
                f"{r['trainable_params'] / 1e6:.1f}M | {r['state_bytes_per_param']:.2f} |"
            )
        print(json.dumps(rows))
    if not args.no_workers:
        result = workers(args.tokens, args.batch, args.steps)
        print("\n| learner | step s | loss |")
        print("|---|---|---|")
        for name, steps in result.items():
            for i, (seconds, loss) in enumerate(steps, 1):
                print(f"| {name}, step {i} | {seconds:.1f} | {loss:.6f} |")


if __name__ == "__main__":
    main()
