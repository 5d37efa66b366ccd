"""Benchmarks of the teacher verification service (figures for the closing note; not a test).

P1  Teacher tokens computed per committed token for SKD rounds (γ draft tokens, K=25) on 256-token
    responses after 256-token prompts: our prefix-cached verification vs a naive full re-prefill (the same
    engine with prefix caching off), replaying the same request trace side by side in one run.
P2  /verify throughput (committed tokens/s) with N concurrent clients over HTTP vs the same requests
    sent in-process to an engine of the same configuration.

The trace comes from a realistic SKD run: a drafter (the teacher's weights, sampling at temperature 1,
each draft token replaced by a random one with probability --noise) proposes γ tokens for every active
sequence, the teacher verifies the batch, and the committed tokens extend the contexts.

    python -m benchmarks.bench_verify                       # SmolLM2-135M teacher (embedded default)
    python -m benchmarks.bench_verify --teacher tiny --p1-sequences 8 --p2-sequences 32
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rollout_server.config import ServerConfig
from rollout_server.engine import TeacherEngine
from shared import reaper
from shared.client import TeacherClient, wait_until_healthy
from shared.protocol import Usage, VerifyItem, VerifyRequest

Trace = list[list[VerifyItem]]  # per round, the batch of items sent


def add_usage(total: Usage, more: Usage) -> None:
    for key in Usage.model_fields:
        setattr(total, key, getattr(total, key) + getattr(more, key))


def teacher_path(name: str) -> Path:
    if name == "smollm2":
        from trainer.models import ensure_default_teacher

        return ensure_default_teacher()
    if name == "tiny":
        from devtools.tiny_models import build_tiny_llama

        out = Path(tempfile.gettempdir()) / "skd-bench-tiny-teacher"
        if not (out / "config.json").exists():
            build_tiny_llama(out, seed=1, hidden_size=256, num_layers=4, num_heads=4, logit_scale=8.0)
        return out
    return Path(name)


def prompts(model: Path, n: int, length: int) -> list[list[int]]:
    """n windows of `length` tokens from standard-library source text (deterministic)."""
    import argparse as a
    import asyncio as b
    import json as c
    import logging as d
    import textwrap as e

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    ids = tok("\n".join(inspect.getsource(m) for m in (a, b, c, d, e)))["input_ids"]
    step = max(1, (len(ids) - length) // n)
    return [ids[i * step : i * step + length] for i in range(n)]


async def make_trace(engine: TeacherEngine, model: Path, args, n_seq: int) -> tuple[Trace, Usage, int]:
    """Run SKD rounds to `response_len` tokens per sequence; return the requests sent and their cost."""
    from vllm import LLM, SamplingParams

    drafter = LLM(
        model=str(model),
        dtype=args.dtype,
        max_model_len=args.prompt_len + args.response_len + 64,
        kv_cache_memory_bytes=1 << 30,
        distributed_executor_backend="uni",
        block_size=32,
        enable_chunked_prefill=False,
        max_num_batched_tokens=4096,
    )
    rng = np.random.default_rng(0)
    vocab = engine.vocab_size
    contexts = prompts(model, n_seq, args.prompt_len)
    produced = [0] * n_seq
    trace: Trace = []
    usage = Usage()
    drafted = accepted = 0
    while True:
        active = [i for i in range(n_seq) if produced[i] < args.response_len]
        if not active:
            break
        outs = drafter.generate(
            [{"prompt_token_ids": contexts[i]} for i in active],
            SamplingParams(max_tokens=args.gamma, temperature=1.0, detokenize=False, seed=len(trace)),
            use_tqdm=False,
        )
        items = []
        for i, out in zip(active, outs):
            draft = [
                int(rng.integers(vocab)) if rng.random() < args.noise else t for t in out.outputs[0].token_ids
            ]
            items.append(
                VerifyItem(context_ids=contexts[i], draft_ids=draft[: args.response_len - produced[i]])
            )
        resp = await engine.verify(VerifyRequest(items=items, top_k=args.top_k, seed=len(trace)))
        trace.append(items)
        add_usage(usage, resp.usage)
        for i, item, res in zip(active, items, resp.items):
            contexts[i] = contexts[i] + res.token_ids
            produced[i] += len(res.token_ids)
            drafted += len(item.draft_ids)
            accepted += res.num_accepted
    drafter.llm_engine.engine_core.shutdown()
    del drafter
    print(f"trace: {len(trace)} rounds, acceptance {accepted / max(drafted, 1):.3f}", file=sys.stderr)
    return trace, usage, sum(produced)


async def replay_usage(engine: TeacherEngine, trace: Trace, top_k: int) -> tuple[Usage, int, float]:
    usage, committed = Usage(), 0
    start = time.perf_counter()
    for r, items in enumerate(trace):
        resp = await engine.verify(VerifyRequest(items=items, top_k=top_k, seed=r))
        add_usage(usage, resp.usage)
        committed += sum(len(x.token_ids) for x in resp.items)
    return usage, committed, time.perf_counter() - start


def per_sequence(trace: Trace) -> list[list[VerifyItem]]:
    """Regroup a batched trace into each sequence's own sequence of single-item rounds."""
    by_prompt: dict[tuple, list[VerifyItem]] = {}
    for items in trace:
        for item in items:
            key = tuple(item.context_ids[:64])
            by_prompt.setdefault(key, []).append(item)
    return list(by_prompt.values())


async def run_clients(verify, sequences: list[list[VerifyItem]], top_k: int) -> tuple[int, float]:
    """One client per sequence, each sending its rounds in order; committed tokens and wall time."""

    async def client(rounds):
        n = 0
        for r, item in enumerate(rounds):
            resp = await verify(VerifyRequest(items=[item], top_k=top_k, seed=r))
            n += len(resp.items[0].token_ids)
        return n

    start = time.perf_counter()
    counts = await asyncio.gather(*(client(s) for s in sequences))
    return sum(counts), time.perf_counter() - start


def engine_config(model: Path, args, **kw) -> ServerConfig:
    return ServerConfig(
        model=str(model),
        dtype=args.dtype,
        max_model_len=args.prompt_len + args.response_len + 64,
        kv_cache_gib=args.kv_cache_gib,
        **kw,
    )


async def p1(model: Path, args) -> dict:
    engine = TeacherEngine.start(engine_config(model, args))
    trace, ours, committed = await make_trace(engine, model, args, args.p1_sequences)
    engine.shutdown()
    naive_engine = TeacherEngine.start(engine_config(model, args, enable_prefix_caching=False))
    naive, naive_committed, naive_s = await replay_usage(naive_engine, trace, args.top_k)
    naive_engine.shutdown()
    minimal = sum(len(i.context_ids) + len(i.draft_ids) for items in trace for i in items)
    return {
        "sequences": args.p1_sequences,
        "rounds": len(trace),
        "committed_tokens": committed,
        "ours_teacher_tokens_computed": ours.teacher_tokens_computed,
        "ours_per_committed_token": ours.teacher_tokens_computed / committed,
        "naive_teacher_tokens_computed": naive.teacher_tokens_computed,
        "naive_per_committed_token": naive.teacher_tokens_computed / naive_committed,
        "naive_lower_bound_per_committed_token": minimal / committed,
        "reduction_vs_naive": (naive.teacher_tokens_computed / naive_committed)
        / (ours.teacher_tokens_computed / committed),
        "naive_replay_seconds": naive_s,
        "trace": trace,
    }


async def p2(model: Path, args, trace: Trace | None) -> dict:
    engine = TeacherEngine.start(engine_config(model, args))
    if trace is None or len(per_sequence(trace)) < args.p2_sequences:
        trace, _, _ = await make_trace(engine, model, args, args.p2_sequences)
    sequences = per_sequence(trace)[: args.p2_sequences]
    await engine.llm.reset_prefix_cache()  # the measured run starts cold, like the fresh server
    rng = np.random.default_rng(1)  # warm-up rounds share no prefix with the measured ones
    warm = [
        [VerifyItem(context_ids=rng.integers(engine.vocab_size, size=300).tolist(), draft_ids=[1, 2, 3])]
        for _ in sequences
    ]
    await run_clients(engine.verify, warm, args.top_k)  # warm-up (compilation, allocator)
    in_proc_tokens, in_proc_s = await run_clients(engine.verify, sequences, args.top_k)
    engine.shutdown()

    port = 8000 + os.getpid() % 1000
    cmd = [sys.executable, "-m", "rollout_server", "--port", str(port), "--log-level", "warning"]
    cmd += ["--model", str(model), "--dtype", args.dtype, "--kv-cache-gib", str(args.kv_cache_gib)]
    cmd += ["--max-model-len", str(args.prompt_len + args.response_len + 64)]
    server = subprocess.Popen(cmd)
    try:
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_until_healthy, url, server, 300)
        async with TeacherClient(url) as client:
            await run_clients(client.verify, warm, args.top_k)
            http_tokens, http_s = await run_clients(client.verify, sequences, args.top_k)
    finally:
        server.terminate()
        server.wait()
    return {
        "clients": len(sequences),
        "in_process_tokens_per_s": in_proc_tokens / in_proc_s,
        "http_tokens_per_s": http_tokens / http_s,
        "http_over_in_process": (http_tokens / http_s) / (in_proc_tokens / in_proc_s),
        "committed_tokens": [in_proc_tokens, http_tokens],
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="smollm2", help="smollm2 | tiny | a model dir")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--response-len", type=int, default=256)
    ap.add_argument("--gamma", type=int, default=5)
    ap.add_argument("--top-k", type=int, default=25)
    ap.add_argument("--noise", type=float, default=0.3, help="probability a draft token is random")
    ap.add_argument("--p1-sequences", type=int, default=8)
    ap.add_argument("--p2-sequences", type=int, default=32)
    ap.add_argument("--kv-cache-gib", type=float, default=2.0)
    ap.add_argument("--only", choices=["p1", "p2"])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/verify.json"))
    args = ap.parse_args()
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    model = teacher_path(args.teacher)
    results: dict = {"teacher": str(model), "args": {k: str(v) for k, v in vars(args).items()}}
    trace = None
    if args.only in (None, "p1"):
        results["p1"] = await p1(model, args)
        trace = results["p1"].pop("trace")
        print(json.dumps({"p1": results["p1"]}, indent=2))
    if args.only in (None, "p2"):
        results["p2"] = await p2(model, args, trace)
        print(json.dumps({"p2": results["p2"]}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
