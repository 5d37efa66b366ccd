"""Weight push time to 2 rollout actors, full weights vs LoRA, side by side (issue 14; LoRA goal: <= 0.1 s).

One Ray cluster, 2 actors (vLLM-CPU student engines) on SmolLM2-135M-Instruct as the student (`--student
pruned`: the default pruned student), and for each mode a learner (LoRA rank r on all linear layers first,
then full fine-tuning). A push is timed in three parts:
  export  learner.weight_buckets(engine dtype) into a list (LoRA: merged, changed modules only)
  put     ray.put of each bucket
  load    update_weights(apply_now=True) on both actors until both have loaded (reload + prefix-cache reset)
  first use  a 1-token generate on each actor (vLLM loads a LoRA adapter when a request first uses it)
Modes: LoRA merged (plain engines), full fine-tuning (same actors), LoRA as a vLLM adapter (new actors
whose engines run with enable_lora).
One optimiser step on a synthetic KD batch between pushes (not timed), so each push carries new weights;
median over the timed pushes after one warm-up push. After the LoRA pushes, lora_B is set to noise and pushed
once more: the actors' greedy first tokens must be the learner's own argmax (the merged weights arrived).

    flock /tmp/heavy.lock .venv/bin/python -m benchmarks.weight_push [--pushes 5] [--rank 16]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

import ray
import torch

from shared import reaper
from trainer.config import RunConfig
from trainer.learner.local import LocalLearner
from trainer.models import ensure_default_teacher, ensure_pruned_student
from trainer.records import Sample

TEXTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, there", "2 + 3 * 4 ="]


def kd_batch(vocab: int, rng: torch.Generator, n: int = 2, length: int = 16, k: int = 25) -> list[Sample]:
    """Random prompts and responses with random teacher top-k targets."""

    def ids(m: int) -> list[int]:
        return torch.randint(vocab, (m,), generator=rng).tolist()

    def topk() -> tuple[list[int], list[float]]:
        return ids(k), torch.log_softmax(torch.randn(k, generator=rng), 0).tolist()

    rows = [[topk() for _ in range(length)] for _ in range(n)]
    return [
        Sample(index=i, method="skd", kind="kd", prompt_ids=ids(length), response_ids=ids(length),
               teacher_topk_ids=[r[0] for r in row], teacher_topk_logprobs=[r[1] for r in row],
               weight_version=0)
        for i, row in enumerate(rows)
    ]  # fmt: skip


def push(learner: LocalLearner, actors: list, version: int) -> dict:
    t0 = time.perf_counter()
    buckets = list(learner.weight_buckets(torch.bfloat16))
    t1 = time.perf_counter()
    refs = [ray.put(b) for b in buckets]
    t2 = time.perf_counter()
    engine = ray.get([a.update_weights.remote(version, refs, apply_now=True) for a in actors])
    t3 = time.perf_counter()
    ray.get([a.generate_greedy.remote([[1, 2, 3]], 1) for a in actors])  # vLLM loads an adapter on first use
    t4 = time.perf_counter()
    arrays = [a for b in buckets for a in b["arrays"].values()]
    return {
        "params": sum(a.size for a in arrays),
        "bytes": sum(a.nbytes for a in arrays),
        "buckets": len(buckets),
        "export": t1 - t0,
        "put": t2 - t1,
        "load": t3 - t2,
        "engine": max(engine),  # the slower actor's own reload time
        "total": t3 - t0,
        "first_use": t4 - t3,
        "total_in_use": t4 - t0,
    }


def run_mode(cfg: RunConfig, student, actors: list, pushes: int, version: int) -> tuple[dict, LocalLearner]:
    learner = LocalLearner(cfg, student)
    rng = torch.Generator().manual_seed(0)
    vocab = learner.lm.get_input_embeddings().num_embeddings
    runs = []
    for i in range(pushes + 1):
        learner.train_step(kd_batch(vocab, rng))
        runs.append(push(learner, actors, version + i))
    timed = runs[1:]  # after the warm-up push
    keys = ("export", "put", "load", "engine", "total", "first_use", "total_in_use")
    row = {k: statistics.median(r[k] for r in timed) for k in keys}
    return {**timed[0], **row, "all_totals": [round(r["total"], 3) for r in timed]}, learner


def check_lora_arrives(learner: LocalLearner, actors: list, version: int) -> str:
    """lora_B := noise (a visibly different merged model), push, compare greedy first tokens."""
    prompts = [learner.tokenizer(t).input_ids for t in TEXTS]
    _, before = ray.get(actors[0].generate_greedy.remote(prompts, 1))
    noise = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in learner.lm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02, generator=noise)
        push(learner, actors, version)
        want = [learner.lm(torch.tensor([p])).logits[0, -1].argmax().item() for p in prompts]
    got = [[out[0] for out in ray.get(a.generate_greedy.remote(prompts, 1))[1]] for a in actors]
    same = sum(g == want for g in got)
    changed = sum(b[0] != w for b, w in zip(before, want))
    return (f"greedy first tokens equal the learner's argmax on {same}/{len(actors)} actors "
            f"({len(prompts)} prompts; {changed} of them differ from before the noise push)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pushes", type=int, default=5, help="timed pushes per mode (after 1 warm-up push)")
    ap.add_argument("--rank", type=int, default=16, help="LoRA rank (all linear layers)")
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument(
        "--student", choices=["135m", "pruned"], default="135m",
        help="135m: SmolLM2-135M-Instruct itself as the student; pruned: it with every 2nd layer kept",
    )  # fmt: skip
    args = ap.parse_args()
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1")
    from ray.util.queue import Queue

    from trainer.rollout.worker import rollout_actor

    student = ensure_default_teacher()
    if args.student == "pruned":
        student = ensure_pruned_student(student, 2)
    base = RunConfig(student_dtype="bfloat16", student_kv_cache_gib=0.25, actor_num_cpus=0.5,
                     max_prompt_len=64, max_new_tokens=16)  # fmt: skip
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    actors = [
        rollout_actor(base).remote(base, str(student), ["http://127.0.0.1:9"], (Queue(), Queue()), i, [2])
        for i in range(args.actors)
    ]
    ray.get([a.get_stats.remote() for a in actors])  # engines up
    rows, note = {}, ""
    # LoRA first: its pushes carry only the adapted modules, so the actors must still hold the base weights
    for mode, rank in ((f"LoRA r={args.rank}", args.rank), ("full", 0)):
        cfg = base.model_copy(update={"lora_rank": rank})
        rows[mode], learner = run_mode(cfg, student, actors, args.pushes, 100 * len(rows) + 1)
        if rank:
            note = check_lora_arrives(learner, actors, 99)
        else:
            params = sum(p.numel() for p in learner.lm.parameters())
        del learner
        gc.collect()
    for a in actors:
        ray.kill(a)
    # vLLM's own LoRA: actors whose engines run with enable_lora get only the adapter
    cfg = base.model_copy(update={"lora_rank": args.rank, "lora_transport": "adapter"})
    actors = [
        rollout_actor(cfg).remote(cfg, str(student), ["http://127.0.0.1:9"], (Queue(), Queue()), i, [2])
        for i in range(args.actors)
    ]
    ray.get([a.get_stats.remote() for a in actors])
    rows[f"LoRA r={args.rank}, vLLM adapter"], learner = run_mode(cfg, student, actors, args.pushes, 1)
    adapter_note = check_lora_arrives(learner, actors, 99)
    for a in actors:
        ray.kill(a)
    ray.shutdown()
    title = (f"student {student.name}: {params / 1e6:.1f}M parameters; {args.actors} actors, bf16 engines; "
             f"median of {args.pushes} pushes after 1 warm-up")  # fmt: skip
    print_table(title, rows)
    print(f"LoRA check (merged): {note}\nLoRA check (vLLM adapter): {adapter_note}")


def print_table(title: str, rows: dict) -> None:
    print(f"\n{title}")
    head = ("mode", "params sent", "MB sent", "export s", "put s", "load s", "(engine s)", "total s",
            "first use s", "total in use s")  # fmt: skip
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for mode, r in rows.items():
        times = [
            f"{r[k]:.3f}" for k in ("export", "put", "load", "engine", "total", "first_use", "total_in_use")
        ]
        cells = (mode, f"{r['params'] / 1e6:.1f}M", f"{r['bytes'] / 1e6:.0f}", *times)
        print("| " + " | ".join(cells) + " |")
    for mode, r in rows.items():
        print(f"{mode}: totals {r['all_totals']} s, {r['buckets']} bucket(s)")


if __name__ == "__main__":
    main()
