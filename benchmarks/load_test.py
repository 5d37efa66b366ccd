"""Load and memory soak of the teacher server (figures, not a test).

N concurrent clients send SKD-like /verify requests for T seconds per round, over several rounds: each
client runs one sequence at a time (a prompt window of real text, then rounds of γ draft tokens verified
with K=25 and the committed tokens appended, until `--response-len`), then starts the next sequence on a
new prompt, as rollout actors do. The drafts mix the teacher's own top tokens from the previous answer
(a good drafter) with random tokens (`--noise`). Per round it prints requests, errors, p50/p99 latency,
committed tokens/s, and the server's resident memory (its process and its children: the engine core,
the body parser) sampled every second, so one can see whether memory levels off.

    python -m benchmarks.load_test                                   # embedded SmolLM2 teacher, 64 x 60 s x 5
    python -m benchmarks.load_test --teacher tiny --clients 16 --seconds 20 --rounds 3
    python -m benchmarks.load_test --url http://host:8000 --server-pid PID   # a running server
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

from benchmarks.bench_verify import prompts, teacher_path
from shared import reaper
from shared.client import TeacherUnavailable, wait_until_healthy


def rss_mib(proc: psutil.Process) -> dict[str, float]:
    """Resident memory of the server process and of each child, in MiB."""
    out = {"server": proc.memory_info().rss / 2**20}
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            out[f"{child.name()}:{child.pid}"] = child.memory_info().rss / 2**20
    return out


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.committed = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def client(
    http: httpx.AsyncClient, windows: list[list[int]], args, seed: int, state: dict, stats, stop
):
    rng = np.random.default_rng(seed)
    while time.monotonic() < stop:
        if not state.get("context") or state["response"] >= args.response_len:
            state.update(context=list(windows[int(rng.integers(len(windows)))]), response=0, top=[])
        draft = [
            int(rng.choice(state["top"]))
            if state["top"] and rng.random() > args.noise
            else int(rng.integers(args.vocab))
            for _ in range(args.gamma)
        ]
        body = {
            "items": [{"context_ids": state["context"], "draft_ids": draft}],
            "top_k": args.top_k,
            "temperature": 1.0,
            "num_logprobs": args.num_logprobs,
            "seed": int(rng.integers(2**31)),
        }
        t = time.perf_counter()
        try:
            resp = await http.post("/verify", json=body)
        except httpx.HTTPError as e:
            stats.error(type(e).__name__)
            await asyncio.sleep(0.1)
            continue
        if resp.status_code != 200:
            stats.error(str(resp.status_code))
            await asyncio.sleep(0.1)
            continue
        stats.latencies.append(time.perf_counter() - t)
        item = resp.json()["items"][0]
        state["context"] = state["context"] + item["token_ids"]
        state["response"] += len(item["token_ids"])
        state["top"] = item["teacher_topk_ids"][-1][:8] if item["teacher_topk_ids"] else []
        stats.committed += len(item["token_ids"])


async def soak(url: str, proc: psutil.Process, windows: list[list[int]], args) -> list[dict]:
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    rounds = []
    states = [{} for _ in range(args.clients)]
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        args.vocab = (await http.get("/info")).json()["vocab_size"]
        print(f"server RSS before: {json.dumps({k: round(v) for k, v in rss_mib(proc).items()})}", flush=True)
        for r in range(args.rounds):
            stats, samples = Stats(), []
            stop = time.monotonic() + args.seconds

            async def sample(stop=stop, samples=samples):
                while time.monotonic() < stop:
                    samples.append(rss_mib(proc))
                    await asyncio.sleep(1.0)

            start = time.perf_counter()
            await asyncio.gather(
                sample(),
                *(
                    client(http, windows, args, 1000 * r + i, states[i], stats, stop)
                    for i in range(args.clients)
                ),
            )
            wall = time.perf_counter() - start
            total = [sum(s.values()) for s in samples]
            lat = sorted(stats.latencies)
            row = {
                "round": r + 1,
                "requests": len(lat) + sum(stats.errors.values()),
                "errors": stats.errors,
                "p50_ms": 1e3 * statistics.median(lat) if lat else None,
                "p99_ms": 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None,
                "committed_tokens_per_s": stats.committed / wall,
                "rss_mib_start": round(total[0]),
                "rss_mib_end": round(total[-1]),
                "rss_mib_max": round(max(total)),
                "rss_mib_end_by_process": {k: round(v) for k, v in samples[-1].items()},
            }
            rounds.append(row)
            print(
                f"round {row['round']}: {row['requests']} requests, errors {row['errors'] or 0}, "
                f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, "
                f"{row['committed_tokens_per_s']:.0f} committed tok/s, RSS (server + children) "
                f"{row['rss_mib_start']} -> {row['rss_mib_end']} MiB (max {row['rss_mib_max']}), "
                f"by process {json.dumps(row['rss_mib_end_by_process'])}",
                flush=True,
            )
    return rounds


def start_server(model: Path, args) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "rollout_server", "--model", str(model), "--port", str(port)]
    cmd += ["--dtype", args.dtype, "--kv-cache-gib", str(args.kv_cache_gib), "--log-level", "warning"]
    cmd += ["--max-model-len", str(args.prompt_len + args.response_len + 64), *args.server_args]
    env = {**os.environ, **dict(kv.split("=", 1) for kv in args.server_env)}
    server = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, timeout_s=600)
    except TeacherUnavailable as e:
        server.terminate()
        sys.exit(str(e))
    return server, url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", default="smollm2", help="smollm2 (embedded default) | tiny | a model dir")
    ap.add_argument("--url", help="a running server instead of starting one (give --server-pid for memory)")
    ap.add_argument("--server-pid", type=int, help="pid of the server at --url, for its memory")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60.0, help="per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--response-len", type=int, default=256)
    ap.add_argument("--gamma", type=int, default=5)
    ap.add_argument("--top-k", type=int, default=25)
    ap.add_argument("--num-logprobs", type=int, default=20)
    ap.add_argument("--noise", type=float, default=0.3, help="probability a draft token is random")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--kv-cache-gib", type=float, default=1.0)
    ap.add_argument("--server-env", action="append", default=[], help="KEY=VALUE for the server (repeat)")
    ap.add_argument("--server-args", nargs=argparse.REMAINDER, default=[], help="more server options (last)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/load_test.json"))
    args = ap.parse_args()
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)

    model = teacher_path(args.teacher)
    windows = prompts(model, 512, args.prompt_len)
    server = None
    if args.url:
        url = args.url.rstrip("/")
        proc = psutil.Process(args.server_pid or os.getpid())
    else:
        server, url = start_server(model, args)
        proc = psutil.Process(server.pid)
    try:
        rounds = asyncio.run(soak(url, proc, windows, args))
    finally:
        if server is not None:
            server.terminate()
            server.wait(60)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"teacher": str(model), "args": {k: str(v) for k, v in vars(args).items()}, "rounds": rounds}
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
