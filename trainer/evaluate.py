"""Held-out evaluation of the student: the acceptance rate of its drafts under the teacher's top-K in SKD
rollouts (accepted / proposed draft tokens, as in training but on held-out prompts), and on its own greedy
responses the per-token KL(teacher || student), the task metric and the share of its tokens in the
teacher's top-K ("greedy acceptance": inflated by repetitive outputs, which the teacher also predicts).

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


def _acceptance(targets, top_k: int, vocab_size: int) -> float:
    """Fraction of response tokens among the teacher's top-K at their position."""
    hits = [
        in_top_k(lp, top, rank=vocab_size, k=top_k, vocab_size=vocab_size)
        for t in targets
        for lp, top in zip(t.teacher_token_logprobs, t.teacher_topk_logprobs)
    ]
    return sum(hits) / max(len(hits), 1)


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
    """SKD rollouts of the prompts give the draft acceptance rate; the student's greedy responses give KL,
    the task metric and how many of its own tokens the teacher ranks in its top-K."""
    import ray

    _, acceptance = ray.get(actor.skd_acceptance.remote(prompts))
    version, greedy = ray.get(actor.generate_greedy.remote(prompts, cfg.max_new_tokens))
    k_eval = (
        min(max(cfg.top_k, cfg.num_logprobs), max_logprobs) if cfg.top_k < vocab_size else cfg.num_logprobs
    )

    async def score():
        async with TeacherClient(urls, api_key=cfg.teacher_api_key) as client:
            items = [ScoreItem(token_ids=p + r, start=len(p)) for p, r in zip(prompts, greedy)]
            return await client.score(ScoreRequest(items=items, num_logprobs=k_eval))

    greedy_targets = asyncio.run(score()).items
    samples = [
        Sample(
            index=-1,
            method="eval",
            kind="kd",
            prompt_ids=p,
            response_ids=r,
            teacher_topk_ids=[t[: cfg.num_logprobs] for t in targets.teacher_topk_ids],
            teacher_topk_logprobs=[t[: cfg.num_logprobs] for t in targets.teacher_topk_logprobs],
            weight_version=version,
        )
        for p, r, targets in zip(prompts, greedy, greedy_targets)
    ]
    texts = [learner.tokenizer.decode(r, skip_special_tokens=True) for r in greedy]
    task = summarize_scores([score_response(ex, t) for ex, t in zip(examples, texts)])
    return {
        "eval/acceptance": acceptance,
        "eval/greedy_acceptance": _acceptance(greedy_targets, cfg.top_k, vocab_size),
        "eval/kl": learner.kl_to_teacher(samples),
        "eval/response_tokens": float(np.mean([len(r) for r in greedy])),
        "eval/weight_version": float(version),
        **{f"eval/{k}": v for k, v in task.items()},
    }
