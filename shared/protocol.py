"""The wire protocol between the teacher service and its clients (student actors, trainer, benchmarks).

pydantic models for every route's request and response body. Static constraints (types, signs, non-empty
lists) live here, so a malformed request is rejected with a 422 naming the item and field before any work.
Limits that depend on the served model (vocabulary, max length, logprob cap) are checked by the server.
Ranges match what the vLLM engine accepts (`SamplingParams._verify_args`), so nothing valid here is refused
inside the engine: temperature 0 (greedy) or in [0.01, 2], top_p in (0, 1], integers within int64.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

INT64_MAX = 2**63 - 1
TokenId = Annotated[int, Field(ge=0, lt=2**31)]
TokenIds = list[TokenId]
# vLLM raises a temperature in (0, MIN_TEMPERATURE) to MIN_TEMPERATURE (with only a server-side warning),
# and rejects one above MAX_TEMPERATURE inside the engine: both are refused here instead.
MIN_TEMPERATURE = 0.01
MAX_TEMPERATURE = 2.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SamplingFields(_Strict):
    """How the teacher samples a token (replacements, /generate)."""

    temperature: float = Field(
        1.0,
        ge=0.0,
        le=MAX_TEMPERATURE,
        description=f"Teacher sampling temperature: 0 = greedy, else {MIN_TEMPERATURE} to {MAX_TEMPERATURE}.",
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass (1 = whole vocabulary).")
    num_logprobs: int = Field(
        20,
        ge=0,
        le=INT64_MAX,
        description="Teacher top log-probs returned per committed position (the KD targets); "
        "at most the server's max_logprobs (/info).",
    )
    seed: int | None = Field(
        None, ge=0, le=INT64_MAX, description="Makes the teacher's sampling reproducible."
    )

    @field_validator("temperature")
    @classmethod
    def _not_below_engine_minimum(cls, t: float) -> float:
        if 0.0 < t < MIN_TEMPERATURE:
            raise ValueError(
                f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE}: "
                f"the engine would silently raise {t} to {MIN_TEMPERATURE}"
            )
        return t


class Usage(BaseModel):
    """Teacher work done for one request; `teacher_tokens_computed` is what a prefix cache saves."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    teacher_tokens_computed: int = Field(0, description="prompt tokens - cached tokens + sampled tokens")
    engine_requests: int = 0


class TeacherTargets(BaseModel):
    """Teacher log-probs at a run of positions (temperature 1, log-softmax over the full vocabulary)."""

    teacher_topk_ids: list[list[int]]
    teacher_topk_logprobs: list[list[float]]
    teacher_token_logprobs: list[float] = Field(description="Teacher log-prob of the token at each position.")


# --- /verify -------------------------------------------------------------------------------------------


class VerifyItem(_Strict):
    context_ids: TokenIds = Field(min_length=1, description="Prompt + committed response tokens so far.")
    draft_ids: TokenIds = Field(default_factory=list, description="The student's proposed next tokens.")


class VerifyRequest(SamplingFields):
    items: list[VerifyItem] = Field(min_length=1)
    top_k: int = Field(
        25,
        ge=0,
        le=INT64_MAX,
        description="Acceptance set size K: 0 rejects every draft token, >= vocab accepts all.",
    )


class VerifyResult(TeacherTargets):
    num_accepted: int
    replacement_id: int | None = Field(description="Teacher token at the first rejection; null if none.")
    token_ids: list[int] = Field(description="Committed tokens: accepted draft prefix + replacement.")


class VerifyResponse(BaseModel):
    items: list[VerifyResult]
    model: str
    usage: Usage = Field(default_factory=Usage)


# --- /score --------------------------------------------------------------------------------------------


class ScoreItem(_Strict):
    token_ids: TokenIds = Field(min_length=2)
    start: int = Field(
        1, ge=1, le=INT64_MAX, description="First position scored: token i is predicted from tokens < i."
    )


class ScoreRequest(_Strict):
    items: list[ScoreItem] = Field(min_length=1)
    num_logprobs: int = Field(
        20, ge=0, le=INT64_MAX, description="At most the server's max_logprobs (/info)."
    )


class ScoreResponse(BaseModel):
    items: list[TeacherTargets]
    model: str
    usage: Usage = Field(default_factory=Usage)


# --- /generate -----------------------------------------------------------------------------------------


class GenerateItem(_Strict):
    prompt_ids: TokenIds = Field(min_length=1)


class GenerateRequest(SamplingFields):
    items: list[GenerateItem] = Field(min_length=1)
    max_tokens: int = Field(
        256, ge=1, le=INT64_MAX, description="Tokens sampled at most (also cut at max_model_len)."
    )


class GenerateResult(TeacherTargets):
    token_ids: list[int]
    finish_reason: Literal["stop", "length"]


class GenerateResponse(BaseModel):
    items: list[GenerateResult]
    model: str
    usage: Usage = Field(default_factory=Usage)


# --- /info, /health ------------------------------------------------------------------------------------


class ServerInfo(BaseModel):
    model: str
    vocab_size: int
    max_model_len: int = Field(description="Longest sequence (context + draft, or prompt + output) served.")
    max_logprobs: int
    max_items_per_request: int
    max_tokens_per_request: int
    eos_token_ids: list[int]
    block_size: int
    prefix_caching: bool


class Health(BaseModel):
    status: Literal["ok", "starting", "error"]
