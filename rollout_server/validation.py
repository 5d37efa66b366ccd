"""Checks of a request against the served model's limits (vocabulary, length, logprob cap, request size).

pydantic already rejected malformed bodies; these checks need the engine's numbers. Errors use FastAPI's
422 shape, `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`, naming the item and field, and a
rejected request reaches no engine.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.protocol import GenerateRequest, ScoreRequest, ServerInfo, VerifyRequest


class RequestRejected(Exception):
    def __init__(self, status: int, errors: list[dict]):
        super().__init__(status, errors)  # both in args: picklable (raised in the body parser process too)
        self.status = status
        self.errors = errors


def _error(loc: tuple, msg: str, kind: str) -> dict:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def _check_size(items: int, tokens: int, info: ServerInfo) -> None:
    if items > info.max_items_per_request:
        raise RequestRejected(
            413, [_error(("items",), f"{items} items > limit {info.max_items_per_request}", "too_large")]
        )
    if tokens > info.max_tokens_per_request:
        msg = f"{tokens} tokens in the request > limit {info.max_tokens_per_request}"
        raise RequestRejected(413, [_error(("items",), msg, "too_large")])


def _check_ids(ids: Iterable[int], loc: tuple, info: ServerInfo, errors: list[dict]) -> None:
    bad = next(((j, t) for j, t in enumerate(ids) if t >= info.vocab_size), None)
    if bad is not None:
        msg = f"token id {bad[1]} is outside the vocabulary (size {info.vocab_size})"
        errors.append(_error((*loc, bad[0]), msg, "out_of_vocabulary"))


def _check_logprobs(n: int, info: ServerInfo, errors: list[dict]) -> None:
    if n > info.max_logprobs:
        msg = f"num_logprobs {n} > server limit {info.max_logprobs}"
        errors.append(_error(("num_logprobs",), msg, "too_large"))


def _raise(errors: list[dict]) -> None:
    if errors:
        raise RequestRejected(422, errors)


def check_verify(req: VerifyRequest, info: ServerInfo) -> None:
    _check_size(len(req.items), sum(len(i.context_ids) + len(i.draft_ids) for i in req.items), info)
    errors: list[dict] = []
    _check_logprobs(req.num_logprobs, info, errors)
    for i, item in enumerate(req.items):
        _check_ids(item.context_ids, ("items", i, "context_ids"), info, errors)
        _check_ids(item.draft_ids, ("items", i, "draft_ids"), info, errors)
        total = len(item.context_ids) + max(len(item.draft_ids), 1)  # an empty draft commits one token
        if total > info.max_model_len:
            msg = f"context + draft (min. 1) is {total} tokens > max_model_len {info.max_model_len}"
            errors.append(
                _error(("items", i, "draft_ids" if item.draft_ids else "context_ids"), msg, "too_long")
            )
    _raise(errors)


def check_score(req: ScoreRequest, info: ServerInfo) -> None:
    _check_size(len(req.items), sum(len(i.token_ids) for i in req.items), info)
    errors: list[dict] = []
    _check_logprobs(req.num_logprobs, info, errors)
    for i, item in enumerate(req.items):
        _check_ids(item.token_ids, ("items", i, "token_ids"), info, errors)
        if len(item.token_ids) > info.max_model_len:
            msg = f"{len(item.token_ids)} tokens > max_model_len {info.max_model_len}"
            errors.append(_error(("items", i, "token_ids"), msg, "too_long"))
        if item.start >= len(item.token_ids):
            msg = f"start {item.start} must be < len(token_ids) = {len(item.token_ids)}"
            errors.append(_error(("items", i, "start"), msg, "out_of_range"))
    _raise(errors)


def check_generate(req: GenerateRequest, info: ServerInfo) -> None:
    _check_size(len(req.items), sum(len(i.prompt_ids) for i in req.items), info)
    errors: list[dict] = []
    _check_logprobs(req.num_logprobs, info, errors)
    for i, item in enumerate(req.items):
        _check_ids(item.prompt_ids, ("items", i, "prompt_ids"), info, errors)
        if len(item.prompt_ids) >= info.max_model_len:
            msg = f"prompt of {len(item.prompt_ids)} tokens >= max_model_len {info.max_model_len}"
            errors.append(_error(("items", i, "prompt_ids"), msg, "too_long"))
    _raise(errors)


def check_request(info: ServerInfo, req) -> None:
    """The check of any request body model (picklable with `functools.partial(check_request, info)`)."""
    check = {VerifyRequest: check_verify, ScoreRequest: check_score, GenerateRequest: check_generate}.get(
        type(req)
    )
    if check is not None:
        check(req, info)
