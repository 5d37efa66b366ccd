"""The engines' dtype on this machine: vLLM's prompt scoring and generation in bfloat16 and float32, side by
side, with what `student_dtype`/`teacher_dtype=auto` picks here (shared.engine_settings.engine_dtype).

    python -m benchmarks.engine_dtype [--model DIR] [--repeats 2]

Per dtype, in a fresh process each (one engine at a time), after a warm-up: 16 prompts of 300 tokens scored
with `prompt_logprobs=25` (what /verify and /score do), and 16 x 64 tokens generated at temperature 0.5. On a
CPU without native bf16 (AVX2 only), vLLM's bf16 is emulated and several times slower than float32.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from shared import reaper


def measure(model: str, dtype: str) -> dict:
    """One engine in this process: seconds to score and to generate, after one warm-up of each."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    import numpy as np
    from vllm import LLM, SamplingParams

    from shared.engine_settings import engine_kwargs

    llm = LLM(model, dtype=dtype, max_logprobs=30, **engine_kwargs(max_model_len=512, kv_cache_gib=1.0))
    rng = np.random.default_rng(0)
    prompts = [{"prompt_token_ids": rng.integers(100, 10000, 300).tolist()} for _ in range(16)]
    score = SamplingParams(max_tokens=1, prompt_logprobs=25, detokenize=False)
    generate = SamplingParams(max_tokens=64, temperature=0.5, detokenize=False, ignore_eos=True, seed=0)
    out = {}
    for name, params, tokens in (("score", score, 16 * 300), ("generate", generate, 16 * 64)):
        llm.generate(prompts, params, use_tqdm=False)
        t0 = time.perf_counter()
        llm.generate(prompts, params, use_tqdm=False)
        out[f"{name}_tok_per_s"] = tokens / (time.perf_counter() - t0)
    return out


def main() -> None:
    from shared.engine_settings import cpu_has_native_bf16, engine_dtype

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model dir (default: the embedded teacher)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved passes over the dtypes")
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    if args.one:
        print("RESULT " + json.dumps(measure(*args.one)), flush=True)
        return
    from trainer.models import ensure_default_teacher

    model = args.model or str(ensure_default_teacher())
    runs: dict[str, list[dict]] = {"bfloat16": [], "float32": []}
    for _ in range(args.repeats):
        for dtype, results in runs.items():
            cmd = [sys.executable, "-m", "benchmarks.engine_dtype", "--one", model, dtype]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results.append(json.loads(done.stdout.split("RESULT ", 1)[1]))
    print(f"native bf16 on this CPU: {cpu_has_native_bf16()}; auto picks {engine_dtype('auto', gpu=False)}")
    print("| dtype | prompt scoring tok/s | generation tok/s |\n|---|---|---|")
    mean = {d: {k: sum(r[k] for r in rs) / len(rs) for k in rs[0]} for d, rs in runs.items()}
    for dtype, m in mean.items():
        print(f"| {dtype} | {m['score_tok_per_s']:.0f} | {m['generate_tok_per_s']:.0f} |")
    ratio = {k: mean["float32"][k] / mean["bfloat16"][k] for k in mean["float32"]}
    score, gen = ratio["score_tok_per_s"], ratio["generate_tok_per_s"]
    print(f"float32 / bfloat16: scoring {score:.2f}x, generation {gen:.2f}x")


if __name__ == "__main__":
    main()
