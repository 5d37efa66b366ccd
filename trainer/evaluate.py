"""Held-out evaluation of the student: the acceptance rate of its drafts under the teacher's top-K in SKD
rollouts (accepted / proposed draft tokens, as in training but on the first `num_eval_acceptance_prompts`
held-out prompts), and on its own greedy responses the per-token KL(teacher || student), the task metric
and the share of its tokens in the teacher's top-K ("greedy acceptance": inflated by repetitive outputs,
which the teacher also predicts).

The responses come from a rollout actor's engine (current weights), the teacher's targets from /score,
the student's log-probs from the learner; so the numbers describe exactly the model being trained. Beside
them, measures a collapsed student cannot game: the student's KL on the teacher's own greedy responses and
the share of repeated 4-grams in its responses, each next to the teacher's. Each
evaluation also returns the responses with their per-item scores (kept by trainer.outputs.responses).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.errors import first_line
from shared.protocol import (
    GenerateItem,
    GenerateRequest,
    ScoreItem,
    ScoreRequest,
    ServerInfo,
    TeacherTargets,
)
from shared.skd import in_top_k
from trainer.config import RunConfig, TeacherConfig
from trainer.data.tasks import Example, score_set_items
from trainer.learner.interface import Learner
from trainer.outputs import metrics as m
from trainer.records import Sample
from trainer.teacher.service import client as teacher_client

logger = logging.getLogger(__name__)


def greedy_acceptance(targets: list[TeacherTargets], top_k: int, vocab_size: int) -> float:
    """Fraction of response tokens among the teacher's top-K at their position."""
    hits = [
        in_top_k(lp, top, rank=vocab_size, k=top_k, vocab_size=vocab_size)
        for t in targets
        for lp, top in zip(t.teacher_token_logprobs, t.teacher_topk_logprobs)
    ]
    return sum(hits) / max(len(hits), 1)


def repeated_ngrams(responses: list[list[int]], n: int = 4) -> float:
    """Of all token n-grams in the responses, the share that already occurred earlier in their response
    (0: no repetition; a response of one token repeated: nearly 1)."""
    total = repeated = 0
    for r in responses:
        seen: set[tuple[int, ...]] = set()
        for i in range(len(r) - n + 1):
            gram = tuple(r[i : i + n])
            repeated += gram in seen
            seen.add(gram)
            total += 1
    return repeated / total if total else 0.0


class Evaluator:
    """Evaluates the student that `actor()` runs (push the weights first) on fixed held-out prompts."""

    def __init__(
        self,
        actor,
        urls: list[str],
        learner: Learner,
        examples: list[Example],
        prompts: list[list[int]],
        cfg: RunConfig,
        info: ServerInfo,
    ):
        self.actor, self.urls, self.learner, self.cfg = actor, urls, learner, cfg
        self.examples, self.prompts = examples, prompts
        self.vocab_size = info.vocab_size
        full = cfg.top_k >= info.vocab_size  # on-policy K: every token is in the "top-K"
        self.teacher: tuple[list[list[int]], list[TeacherTargets]] | None = None  # its greedy responses
        self.k_scored = cfg.num_logprobs if full else min(max(cfg.top_k, cfg.num_logprobs), info.max_logprobs)

    async def _teacher_responses(self) -> tuple[list[list[int]], list[TeacherTargets]]:
        """The teacher's own greedy responses to the held-out prompts, with its targets along them."""
        async with teacher_client(self.cfg.part(TeacherConfig), self.urls) as client:
            req = GenerateRequest(
                items=[GenerateItem(prompt_ids=p) for p in self.prompts],
                max_tokens=self.cfg.max_new_tokens,
                temperature=0.0,
                num_logprobs=self.cfg.num_logprobs,
            )
            items = (await client.generate(req)).items
        return [r.token_ids for r in items], list(items)

    def _against_the_teacher(self, greedy: list[list[int]], version: int) -> dict[str, float]:
        """The student read against the teacher's own greedy responses (made once: the teacher does not
        change): their lengths and repetition beside the student's, and the student's KL on them. A
        student that collapses into a repetition the teacher also continues (after "1 1 1" a small
        teacher predicts "1") scores a high acceptance and a low KL on its own responses; here it shows:
        repeated n-grams far above the teacher's, and a large KL on what the teacher would say."""
        if self.teacher is None:
            self.teacher = asyncio.run(self._teacher_responses())
        responses, targets = self.teacher
        return {
            m.EVAL_TEACHER_RESPONSE_TOKENS: float(np.mean([len(r) for r in responses])),
            m.EVAL_REPEATED_NGRAMS: repeated_ngrams(greedy),
            m.EVAL_TEACHER_REPEATED_NGRAMS: repeated_ngrams(responses),
            m.EVAL_KL_ON_TEACHER: self._kl(responses, targets, version),
        }

    async def _teacher_targets(self, responses: list[list[int]]) -> list[TeacherTargets]:
        async with teacher_client(self.cfg.part(TeacherConfig), self.urls) as client:
            items = [ScoreItem(token_ids=p + r, start=len(p)) for p, r in zip(self.prompts, responses)]
            return (await client.score(ScoreRequest(items=items, num_logprobs=self.k_scored))).items

    def _kl(self, responses: list[list[int]], targets: list[TeacherTargets], version: int) -> float:
        n = self.cfg.num_logprobs
        samples = [
            Sample(
                index=-1,
                method="eval",
                kind="kd",
                prompt_ids=p,
                response_ids=r,
                teacher_topk_ids=[t[:n] for t in target.teacher_topk_ids],
                teacher_topk_logprobs=[t[:n] for t in target.teacher_topk_logprobs],
                weight_version=version,
            )
            for p, r, target in zip(self.prompts, responses, targets)
        ]
        return self.learner.kl_to_teacher(samples)

    def start(self) -> tuple[PendingEvaluation, list[dict]]:
        """Evaluate the pushed student: the greedy responses, their teacher targets, task scores and KL now
        (the KL needs the learner at these weights); the acceptance rollouts go on in the actor (which keeps
        these weights loaded until they end) while training continues: `PendingEvaluation`. Also returns
        per held-out item its response and task scores (eval-set order)."""
        import ray

        # Both actor calls at once: the engine batches the greedy responses with the SKD rollouts, and
        # the driver scores the responses while the rollouts go on.
        t0 = time.perf_counter()
        step = self.learner.step  # pushed just before: the actor waits for it if the push's call is late
        rollouts = self.actor().skd_acceptance.remote(
            self.prompts[: self.cfg.num_eval_acceptance_prompts], min_version=step
        )
        version, greedy = ray.get(
            self.actor().generate_greedy.remote(self.prompts, self.cfg.max_new_tokens, min_version=step)
        )
        t_greedy = time.perf_counter()
        targets = asyncio.run(self._teacher_targets(greedy))
        t_targets = time.perf_counter()
        texts = [self.learner.tokenizer.decode(r, skip_special_tokens=True) for r in greedy]
        task, scores = score_set_items(
            self.examples, texts, comet_model=getattr(self.cfg, "comet_model", None)
        )
        items = [
            {"index": i, "response": text, "tokens": len(r), "scores": score}
            for i, (text, r, score) in enumerate(zip(texts, greedy, scores))
        ]
        t_kl = time.perf_counter()
        kl = self._kl(greedy, targets, version)
        metrics = {
            m.EVAL_GREEDY_ACCEPTANCE: greedy_acceptance(targets, self.cfg.top_k, self.vocab_size),
            m.EVAL_KL: kl,
            m.EVAL_RESPONSE_TOKENS: float(np.mean([len(r) for r in greedy])),
            **self._against_the_teacher(greedy, version),
            m.EVAL_WEIGHT_VERSION: float(version),
            **{m.EVAL_TASK.format(name=k): v for k, v in task.items()},
            m.EVAL_TIME.format(part="greedy"): t_greedy - t0,
            m.EVAL_TIME.format(part="teacher"): t_targets - t_greedy,  # the teacher's targets (/score)
            m.EVAL_TIME.format(part="task"): t_kl - t_targets,  # decoding and the task metric
            m.EVAL_TIME.format(part="kl"): time.perf_counter() - t_kl,  # the learner's forward
        }
        return PendingEvaluation(step, metrics, rollouts, t0), items


@dataclass
class PendingEvaluation:
    """An evaluation whose acceptance rollouts are still running in the actor (an `eval_async` run
    collects it within a few steps, and before each checkpoint and at the end)."""

    step: int
    metrics: dict[str, float]
    rollouts: Any  # the actor call's ref: (version, acceptance)
    started: float

    def ready(self) -> bool:
        import ray

        return bool(ray.wait([self.rollouts], timeout=0)[0])

    def finish(self) -> dict[str, float]:
        """The whole record: the acceptance rate added (NaN if the actor died meanwhile: the supervisor
        replaces it, the next evaluation runs on the replacement), and how long the loop waited for it."""
        import ray
        from ray.exceptions import RayActorError

        t0 = time.perf_counter()
        try:
            _, acceptance = ray.get(self.rollouts)
        except RayActorError as e:
            logger.warning("step %d: held-out acceptance lost, its actor died (%s)", self.step, first_line(e))
            acceptance = float("nan")
        waited = time.perf_counter() - t0
        return {
            m.EVAL_ACCEPTANCE: acceptance,
            **self.metrics,
            m.EVAL_TIME.format(part="rollouts_wait"): waited,  # the loop's wait (0 if they had finished)
            m.EVAL_ROLLOUTS_S: t0 + waited - self.started,  # from the evaluation's start to collected
        }
