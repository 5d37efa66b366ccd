"""P3: the whole system (teacher server + Ray student actors) against an SKD loop written as the paper's code
works, on the same models, prompts and settings, measured in one run.

    python -m benchmarks.reference_loop                  # reference loop, then the system (1 and 2 actors)
    python -m benchmarks.reference_loop --reference_only --seconds 60

The reference loop (`reference_skd`): one process, teacher and student in transformers, one sequence at a
time. Per round the student samples `gamma` tokens (its temperature/top-p) on its KV cache, the teacher scores
them in one forward pass on its KV cache, the draft is kept up to the first token outside the teacher's
top-K (`shared.skd.in_top_k`), that token is replaced by a sample from the teacher (its temperature/top-p),
and both caches are cropped to the committed tokens (`DynamicCache.crop`). No bonus token when all pass.
Figure: committed tokens/s over whole prompts, after one warm-up prompt.

The system's figure: committed tokens/s of SKD rollout actors (1, 2) with a teacher server, after a warm-up
(`benchmarks.rollout_speed.measure`; a first, discarded measurement warms the teacher), default
settings otherwise. P3 = system / reference.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from shared import reaper
from shared.skd import in_top_k

ROOT = Path(__file__).resolve().parents[1]


def sample(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator) -> int:
    """A token from softmax(logits / temperature) cut to its top-p nucleus (greedy at temperature 0)."""
    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, -1)
    sorted_probs, order = probs.sort(descending=True)
    keep = sorted_probs.cumsum(-1) - sorted_probs < top_p  # the smallest prefix reaching top_p
    sorted_probs = sorted_probs * keep
    return int(order[torch.multinomial(sorted_probs, 1, generator=gen)])


def crop(cache, length: int) -> None:
    """Drop the cache's positions from `length` on (the draft tokens past the committed ones)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


@torch.inference_mode()
def reference_skd(teacher, student, prompt_ids: list[int], cfg, eos: set[int], gen: torch.Generator) -> dict:
    """One sequence, paper-style; returns its committed tokens and the draft counts."""
    from transformers import DynamicCache

    ctx = list(prompt_ids)
    t_cache, s_cache = DynamicCache(), DynamicCache()
    prefix = torch.tensor([ctx[:-1]])  # invariant: each cache holds every committed token but the last
    teacher(prefix, past_key_values=t_cache, use_cache=True)
    student(prefix, past_key_values=s_cache, use_cache=True)
    response, drafted, accepted = [], 0, 0
    while len(response) < cfg.max_new_tokens and not (response and response[-1] in eos):
        gamma = min(cfg.gamma, cfg.max_new_tokens - len(response))
        draft, last = [], ctx[-1]
        for _ in range(gamma):
            logits = student(torch.tensor([[last]]), past_key_values=s_cache, use_cache=True).logits[0, -1]
            last = sample(logits, cfg.student_temperature, cfg.student_top_p, gen)
            draft.append(last)
        logits = teacher(torch.tensor([[ctx[-1], *draft]]), past_key_values=t_cache, use_cache=True).logits[0]
        logprobs = torch.log_softmax(logits.float(), -1)
        committed, rejected = [], False
        for j, token in enumerate(draft):
            top = logprobs[j].topk(cfg.top_k).values.tolist() if cfg.top_k > 0 else []
            if not in_top_k(
                float(logprobs[j, token]), top, rank=0, k=cfg.top_k, vocab_size=logprobs.shape[-1]
            ):
                committed.append(sample(logits[j], cfg.teacher_temperature, cfg.teacher_top_p, gen))
                rejected = True
                break
            committed.append(token)
            if token in eos:
                break
        drafted += len(draft)
        accepted += len(committed) - rejected
        ctx += committed
        response += committed
        crop(t_cache, len(ctx) - 1)
        crop(s_cache, len(ctx) - 1)
    return {"response": response, "drafted": drafted, "accepted": accepted}


def reference_throughput(seconds: float, dtype: str, cfg, teacher_dir: Path, student_dir: Path) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.data.prompts import load_prompts

    torch.set_num_threads(os.cpu_count() or 1)
    kw = {"dtype": getattr(torch, dtype)}
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, **kw).eval()
    student = AutoModelForCausalLM.from_pretrained(student_dir, **kw).eval()
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    prompts, _, _ = load_prompts(cfg, tokenizer)
    eos_id = teacher.generation_config.eos_token_id
    eos = set(eos_id if isinstance(eos_id, list) else [eos_id])
    gen = torch.Generator().manual_seed(cfg.seed)
    reference_skd(teacher, student, prompts[0].prompt_ids, cfg, eos, gen)  # warm-up
    totals = {"tokens": 0, "drafted": 0, "accepted": 0, "sequences": 0}
    t0 = time.perf_counter()
    for p in prompts[1:]:
        out = reference_skd(teacher, student, p.prompt_ids, cfg, eos, gen)
        totals["tokens"] += len(out["response"])
        totals["drafted"] += out["drafted"]
        totals["accepted"] += out["accepted"]
        totals["sequences"] += 1
        if time.perf_counter() - t0 > seconds:
            break
    elapsed = time.perf_counter() - t0
    return {
        "dtype": dtype,
        "seconds": elapsed,
        **totals,
        "committed_tokens_per_s": totals["tokens"] / elapsed,
        "draft_acceptance": totals["accepted"] / max(totals["drafted"], 1),
    }


def main(argv: list[str] | None = None) -> None:
    from trainer.config import RunConfig
    from trainer.models import resolve_models

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0, help="measuring time of each side")
    ap.add_argument("--dtype", default="float32", help="the reference loop's dtype (float32 | bfloat16)")
    ap.add_argument("--student", help="student model dir (default: the pruned initialisation)")
    ap.add_argument(
        "--teacher_model", default="default", help="teacher model dir (default: the embedded one)"
    )
    ap.add_argument("--reference_only", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "reference_loop.json")
    args = ap.parse_args(argv)
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    cfg = RunConfig(teacher_model=args.teacher_model, student_model=args.student or "default")
    teacher_dir, student_dir = resolve_models(cfg)
    results = {"reference": reference_throughput(args.seconds, args.dtype, cfg, teacher_dir, student_dir)}
    print(json.dumps(results["reference"]), flush=True)
    if not args.reference_only:
        results["system"] = system_throughput(args.seconds, cfg, teacher_dir, str(student_dir))
        for row in results["system"]:
            row["p3_vs_reference"] = (
                row["committed_tokens_per_s"] / results["reference"]["committed_tokens_per_s"]
            )
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))


def system_throughput(seconds: float, cfg, teacher_dir: Path, student: str) -> list[dict]:
    """The same models and settings through the teacher server and 1 or 2 rollout actors."""
    import ray

    from benchmarks.rollout_speed import measure, teacher

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    rows = []
    with teacher(cfg, teacher_dir) as (urls, eos):
        warm = cfg.model_copy(update={"actor_num_cpus": 0.5})
        measure(warm, student, urls, eos, seconds / 4)  # discarded: the teacher's first batches compile
        for actors in (1, 2):
            run_cfg = cfg.model_copy(update={"num_rollout_actors": actors, "actor_num_cpus": 0.5})
            rows.append({"actors": actors, **measure(run_cfg, student, urls, eos, seconds)})
    return rows


if __name__ == "__main__":
    main()
