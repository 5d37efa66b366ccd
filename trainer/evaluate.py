"""Held-out evaluation of the student: draft acceptance under the teacher's top-K, per-token
KL(teacher || student) and the task metric, all on the student's own greedy responses.

The responses come from a rollout actor's engine (current weights), the teacher's targets from /score,
the student's log-probs from the learner; so the numbers describe exactly the model being trained.
"""

from __future__ import annotations

import asyncio

import numpy as np

from shared.client import TeacherClient
from shared.protocol import ScoreItem, ScoreRequest
from shared.skd import in_top_k
from trainer.config import RunConfig
from trainer.data import Example, score_response, summarize_scores
from trainer.learner import Learner
from trainer.rollout import Sample


def evaluate(
    actor,
    urls: list[str],
    learner: Learner,
    examples: list[Example],
    prompts: list[list[int]],
    cfg: RunConfig,
    vocab_size: int,
    max_logprobs: int,
) -> dict[str, float]:
    import ray

    version, responses = ray.get(actor.generate_greedy.remote(prompts, cfg.max_new_tokens))
    k_eval = (
        min(max(cfg.top_k, cfg.num_logprobs), max_logprobs) if cfg.top_k < vocab_size else cfg.num_logprobs
    )

    async def score():
        async with TeacherClient(urls, api_key=cfg.teacher_api_key) as client:
            items = [ScoreItem(token_ids=p + r, start=len(p)) for p, r in zip(prompts, responses)]
            return await client.score(ScoreRequest(items=items, num_logprobs=k_eval))

    scored = asyncio.run(score())
    accepted, total = 0, 0
    samples = []
    for p, r, targets in zip(prompts, responses, scored.items):
        for tok_lp, top in zip(targets.teacher_token_logprobs, targets.teacher_topk_logprobs):
            accepted += in_top_k(tok_lp, top, rank=vocab_size, k=cfg.top_k, vocab_size=vocab_size)
            total += 1
        samples.append(
            Sample(
                index=-1, method="eval", kind="kd", prompt_ids=p, response_ids=r,
                teacher_topk_ids=[t[: cfg.num_logprobs] for t in targets.teacher_topk_ids],
                teacher_topk_logprobs=[t[: cfg.num_logprobs] for t in targets.teacher_topk_logprobs],
                weight_version=version,
            )
        )  # fmt: skip
    texts = [learner.tokenizer.decode(r, skip_special_tokens=True) for r in responses]
    task = summarize_scores([score_response(ex, t) for ex, t in zip(examples, texts)])
    return {
        "eval/acceptance": accepted / max(total, 1),
        "eval/kl": learner.kl_to_teacher(samples),
        "eval/response_tokens": float(np.mean([len(r) for r in responses])),
        "eval/weight_version": float(version),
        **{f"eval/{k}": v for k, v in task.items()},
    }
