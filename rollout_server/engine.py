"""The teacher engine: SKD verification, scoring and sampling over one vLLM AsyncLLM.

Every item becomes one engine request, so concurrent items and requests are batched by vLLM's
continuous batching; nothing here serialises requests.

Verification reads the prefix cache (vLLM skips it by default for prompt-logprob requests), so a round
costs the tokens after the last cached block instead of the whole context. Rows of prompt log-probs at or
before `num_cached_tokens` were not computed by the request and are never read: when a needed row falls
there (the context ends exactly on a cached block), the request is re-run without reading the cache.

The replacement token is drawn exactly (see `shared.skd.plan_replacement`): locally from the top-M
log-probs when the math allows, otherwise by one more engine sample at that position.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from dataclasses import dataclass

import numpy as np

from rollout_server.config import ServerConfig
from shared.engine_settings import engine_kwargs
from shared.errors import first_line
from shared.protocol import (
    GenerateRequest,
    GenerateResponse,
    GenerateResult,
    ScoreRequest,
    ScoreResponse,
    ServerInfo,
    TeacherTargets,
    Usage,
    VerifyItem,
    VerifyRequest,
    VerifyResponse,
    VerifyResult,
)
from shared.skd import accepted_length, in_top_k, plan_replacement

# Logit bias that removes a token from a sample: exp(-100) relative weight, i.e. exactly zero in fp32.
_EXCLUDE_BIAS = -100.0
# Rows the engine returns per position beyond what a request needs, for exact local replacement draws.
_SAMPLING_ROWS = 20


@dataclass
class Row:
    """Teacher log-probs at one position: the given token's and the top-M (descending)."""

    token_logprob: float
    rank: int
    top_ids: list[int]
    top_logprobs: list[float]


def _rows(flat, first: int, last: int) -> list[Row]:
    """Parse vLLM FlatLogprobs rows [first, last): entry 0 is the given token, then the top-M."""
    rows = []
    for i in range(first, last):
        s, e = flat.start_indices[i], flat.end_indices[i]
        rows.append(Row(flat.logprobs[s], flat.ranks[s], flat.token_ids[s + 1 : e], flat.logprobs[s + 1 : e]))
    return rows


class ConfigError(ValueError):
    """Server settings the engine cannot serve; the message is one line naming the option."""


def _model_limits(config: ServerConfig) -> tuple[int | None, int | None]:
    """(max_position_embeddings, vocab_size) from the model's config, None where it does not say."""
    from transformers import AutoConfig

    try:
        hf = AutoConfig.from_pretrained(config.model)
    except Exception as e:  # missing dir, no config.json, unknown architecture, hub unreachable
        raise ConfigError(f"--model {config.model}: cannot read its config ({first_line(e)})") from None
    hf = getattr(hf, "get_text_config", lambda: hf)()
    return getattr(hf, "max_position_embeddings", None), getattr(hf, "vocab_size", None)


def resolve_model_option(config: ServerConfig) -> ServerConfig:
    """`config` with --model as a local directory (a hub id `org/name[@revision]` resolved by
    `shared.hub.resolve_model`: downloaded, or from the HF cache when offline), so vLLM and transformers never
    reach for the hub themselves; clients still see the name given (--served-model-name defaults to it).
    A local directory comes back unchanged, so resolving twice costs nothing."""
    from shared.hub import resolve_model

    try:
        path = str(resolve_model(config.model))
    except ValueError as e:
        raise ConfigError(f"--model: {' '.join(str(e).split())}") from None
    if path == config.model:
        return config
    return config.model_copy(
        update={"model": path, "served_model_name": config.served_model_name or config.model}
    )


def check_config(config: ServerConfig) -> None:
    """Raise ConfigError for settings the engine cannot serve, before it starts (a clear line, not a
    traceback from inside the engine)."""
    from shared.engine_settings import CPU_BLOCK_SIZE, on_cpu

    hf_len, vocab = _model_limits(config)
    if hf_len and config.max_model_len and config.max_model_len + 1 > hf_len:
        raise ConfigError(
            f"--max-model-len {config.max_model_len} is too long for this model: it has {hf_len} positions "
            f"and /verify samples one token after context + draft, so at most {hf_len - 1} (the default)"
        )
    if vocab and config.max_logprobs > vocab:
        raise ConfigError(f"--max-logprobs {config.max_logprobs} exceeds the vocabulary size {vocab}")
    if config.block_size and on_cpu() and config.block_size % CPU_BLOCK_SIZE:
        raise ConfigError(
            f"--block-size {config.block_size}: the CPU backend needs a multiple of {CPU_BLOCK_SIZE}"
        )


def _engine_max_len(config: ServerConfig) -> int | None:
    """The engine's length limit: the served one + 1 (the sampled token after context + draft)."""
    check_config(config)
    hf_len, _ = _model_limits(config)
    return config.max_model_len + 1 if config.max_model_len else hf_len


def _cut_after_eos(draft: list[int], eos_ids: list[int]) -> list[int]:
    """A sequence ends at EOS: draft tokens after the first EOS are not verified (nor committed)."""
    for j, t in enumerate(draft):
        if t in eos_ids:
            return draft[: j + 1]
    return draft


def _targets(rows: list[Row], n: int) -> TeacherTargets:
    return TeacherTargets(
        teacher_topk_ids=[r.top_ids[:n] for r in rows],
        teacher_topk_logprobs=[r.top_logprobs[:n] for r in rows],
        teacher_token_logprobs=[r.token_logprob for r in rows],
    )


class TeacherEngine:
    """One vLLM engine serving /verify, /score and /generate."""

    def __init__(self, llm, config: ServerConfig, *, vocab_size: int, max_model_len: int, eos_ids: list[int]):
        self.llm = llm
        self.config = config
        self.name = config.served_model_name or config.model
        self.vocab_size = vocab_size
        self.max_model_len = max_model_len
        self.eos_ids = eos_ids
        self.block_size = llm.vllm_config.cache_config.block_size

    @classmethod
    def start(cls, config: ServerConfig) -> TeacherEngine:
        """Load the model into an AsyncLLM (platform settings from `shared.engine_settings`)."""
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        config = resolve_model_option(config)  # a no-op after __main__ resolved it
        # The engine serves one token more than clients may send: every verification samples one
        # (discarded) token after context + draft, which vLLM counts against its limit.
        engine_len = _engine_max_len(config)
        args = AsyncEngineArgs(
            model=config.model,
            served_model_name=config.served_model_name,
            dtype=config.dtype,
            max_logprobs=max(config.max_logprobs, _SAMPLING_ROWS),
            enable_prefix_caching=config.enable_prefix_caching,
            gpu_memory_utilization=config.gpu_memory_utilization,
            max_num_seqs=config.max_num_seqs,
            seed=config.seed,
            disable_log_stats=True,
            **engine_kwargs(
                max_model_len=engine_len,
                kv_cache_gib=config.kv_cache_gib,
                block_size=config.block_size,
                tensor_parallel_size=config.tensor_parallel_size,
                enforce_eager=config.enforce_eager,
                role="teacher",
            ),
        )
        llm = AsyncLLM.from_engine_args(args)
        model_config = llm.vllm_config.model_config
        eos_ids: set[int] = set()
        for eos in (
            model_config.hf_config.eos_token_id,
            model_config.try_get_generation_config().get("eos_token_id"),
        ):
            eos_ids.update([eos] if isinstance(eos, int) else eos or [])
        return cls(
            llm,
            config,
            vocab_size=model_config.get_vocab_size(),
            max_model_len=model_config.max_model_len - 1,
            eos_ids=sorted(eos_ids),
        )

    @functools.cached_property
    def _info(self) -> ServerInfo:
        return ServerInfo(
            model=self.name,
            vocab_size=self.vocab_size,
            max_model_len=self.max_model_len,
            max_logprobs=self.config.max_logprobs,
            max_items_per_request=self.config.max_items_per_request,
            max_tokens_per_request=self.config.max_tokens_per_request,
            eos_token_ids=self.eos_ids,
            block_size=self.block_size,
            prefix_caching=self.config.enable_prefix_caching,
        )

    def info(self) -> ServerInfo:
        return self._info

    @property
    def healthy(self) -> bool:
        return not self.llm.errored

    def shutdown(self) -> None:
        self.llm.shutdown()

    # --- engine calls ----------------------------------------------------------------------------------

    async def _run(self, prompt: list[int], usage: Usage, **params):
        """One engine request; returns the final RequestOutput and adds its cost to `usage`."""
        from vllm import SamplingParams

        sp = SamplingParams(detokenize=False, flat_logprobs=True, **params)
        out = None
        async for output in self.llm.generate({"prompt_token_ids": prompt}, sp, request_id=uuid.uuid4().hex):
            out = output
        cached = out.num_cached_tokens or 0
        usage.prompt_tokens += len(prompt)
        usage.cached_tokens += cached
        usage.teacher_tokens_computed += len(prompt) - cached + len(out.outputs[0].token_ids)
        usage.engine_requests += 1
        return out

    async def _score_rows(self, tokens: list[int], first: int, m: int, usage: Usage, **params):
        """Prompt log-prob rows [first, len(tokens)) read through the prefix cache where it is safe."""
        out = await self._run(
            tokens, usage, prompt_logprobs=m, skip_reading_prefix_cache=False, max_tokens=1, **params
        )
        if self.config.enable_prefix_caching and (out.num_cached_tokens or 0) >= first:
            out = await self._run(
                tokens, usage, prompt_logprobs=m, skip_reading_prefix_cache=True, max_tokens=1, **params
            )
        return _rows(out.prompt_logprobs, first, len(tokens)), out

    # --- /verify ---------------------------------------------------------------------------------------

    async def verify(self, req: VerifyRequest) -> VerifyResponse:
        usage = Usage()
        rngs = (
            [np.random.default_rng([req.seed, i]) for i in range(len(req.items))]
            if req.seed is not None
            else [np.random.default_rng() for _ in req.items]
        )
        results = await asyncio.gather(
            *(self._verify_item(item, req, rng, usage) for item, rng in zip(req.items, rngs))
        )
        return VerifyResponse(items=list(results), model=self.name, usage=usage)

    def _rows_needed(self, req: VerifyRequest) -> int:
        k = req.top_k if req.top_k < self.vocab_size else 0
        return min(max(req.num_logprobs, k, _SAMPLING_ROWS), max(self.config.max_logprobs, _SAMPLING_ROWS))

    async def _verify_item(self, item: VerifyItem, req: VerifyRequest, rng, usage: Usage) -> VerifyResult:
        ctx, draft = item.context_ids, _cut_after_eos(item.draft_ids, self.eos_ids)
        m = self._rows_needed(req)
        u = float(rng.random())
        engine_seed = int(rng.integers(2**31))
        sampling = {"temperature": req.temperature, "top_p": req.top_p, "seed": engine_seed}

        if not draft:  # one teacher-sampled token; its sample row holds the targets
            out = await self._run(ctx, usage, max_tokens=1, logprobs=m, **sampling)
            row = _rows(out.outputs[0].logprobs, 0, 1)[0]
            return self._result(0, out.outputs[0].token_ids[0], [row], req.num_logprobs, draft)

        rows, _ = await self._score_rows(ctx + draft, len(ctx), m, usage, temperature=0.0)
        n = accepted_length(
            [in_top_k(r.token_logprob, r.top_logprobs, r.rank, req.top_k, self.vocab_size) for r in rows]
        )
        if n == len(draft):
            return self._result(n, None, rows, req.num_logprobs, draft)

        row = rows[n]
        plan = plan_replacement(row.top_ids, row.top_logprobs, req.temperature, req.top_p, u, self.vocab_size)
        if plan.needs_engine:
            bias = dict.fromkeys(plan.exclude_ids, _EXCLUDE_BIAS) if plan.exclude_ids else None
            out = await self._run(
                ctx + draft[:n], usage, max_tokens=1, logprobs=0, logit_bias=bias, **sampling
            )
            token = out.outputs[0].token_ids[0]
            sample = out.outputs[0].logprobs
            token_logprob = sample.logprobs[sample.start_indices[0]]
        else:
            token = plan.token_id
            token_logprob = row.top_logprobs[row.top_ids.index(token)]
        replaced = Row(token_logprob, 0, row.top_ids, row.top_logprobs)
        return self._result(n, token, [*rows[:n], replaced], req.num_logprobs, draft)

    @staticmethod
    def _result(n: int, replacement: int | None, rows: list[Row], k: int, draft: list[int]) -> VerifyResult:
        tokens = draft[:n] + ([replacement] if replacement is not None else [])
        return VerifyResult(
            num_accepted=n, replacement_id=replacement, token_ids=tokens, **_targets(rows, k).model_dump()
        )

    # --- /score ----------------------------------------------------------------------------------------

    async def score(self, req: ScoreRequest) -> ScoreResponse:
        usage = Usage()
        m = max(req.num_logprobs, 0)

        async def one(item):
            rows, _ = await self._score_rows(item.token_ids, item.start, m, usage, temperature=0.0)
            return _targets(rows, req.num_logprobs)

        items = await asyncio.gather(*(one(it) for it in req.items))
        return ScoreResponse(items=list(items), model=self.name, usage=usage)

    # --- /generate -------------------------------------------------------------------------------------

    async def generate(self, req: GenerateRequest) -> GenerateResponse:
        usage = Usage()

        async def one(i, item):
            seed = None if req.seed is None else int(np.random.default_rng([req.seed, i]).integers(2**31))
            out = await self._run(
                item.prompt_ids,
                usage,
                max_tokens=min(req.max_tokens, self.max_model_len - len(item.prompt_ids)),
                temperature=req.temperature,
                top_p=req.top_p,
                seed=seed,
                logprobs=req.num_logprobs,
            )
            gen = out.outputs[0]
            rows = _rows(gen.logprobs, 0, len(gen.token_ids))
            return GenerateResult(
                token_ids=list(gen.token_ids),
                finish_reason="stop" if gen.finish_reason == "stop" else "length",
                **_targets(rows, req.num_logprobs).model_dump(),
            )

        items = await asyncio.gather(*(one(i, it) for i, it in enumerate(req.items)))
        return GenerateResponse(items=list(items), model=self.name, usage=usage)
