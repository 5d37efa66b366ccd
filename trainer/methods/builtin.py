"""The built-in rollout methods (see trainer.methods for what each does)."""

from __future__ import annotations

import numpy as np

from shared.protocol import GenerateItem, GenerateRequest, ScoreItem, ScoreRequest, VerifyItem, VerifyRequest
from trainer.config import RunConfig
from trainer.methods.base import InFlight, Method, RolloutEnv

ON_POLICY_K = 2**31 - 1  # >= any vocabulary: every draft token accepted


class Speculative(Method):
    """SKD: one draft call of up to `gamma` tokens for every sequence, one /verify under top-K. With
    `adaptive_gamma` each sequence's draft length follows its own acceptance (`next_gamma`)."""

    name = "skd"
    steers_k = True

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        self.k = cfg.top_k  # target_acceptance moves it (set_top_k)

    @property
    def top_k(self) -> int:
        return self.k

    def set_top_k(self, k: int) -> None:
        self.k = k

    def draft_len(self, seq: InFlight) -> int:
        return min(seq.gamma or self.cfg.gamma, self.cfg.max_new_tokens - len(seq.response))

    def next_gamma(self, gamma: int, drafted: int, accepted: int) -> int:
        """Longer after a round that kept its whole draft, shorter after one that did not."""
        if not self.cfg.adaptive_gamma:
            return gamma
        return min(gamma + 2, self.cfg.gamma_max) if accepted == drafted else max(gamma - 1, 1)

    async def step(self, seqs: list[InFlight], env: RolloutEnv) -> None:
        budget = [self.draft_len(s) for s in seqs]
        drafts = env.student.draft([s.context for s in seqs], budget, [env.seed() for _ in seqs])
        req = VerifyRequest(
            items=[VerifyItem(context_ids=s.context, draft_ids=d) for s, d in zip(seqs, drafts)],
            top_k=self.top_k,
            temperature=self.cfg.teacher_temperature,
            top_p=self.cfg.teacher_top_p,
            num_logprobs=self.cfg.num_logprobs,
            seed=env.seed(),
        )
        resp = await env.teacher.verify(req)
        for s, d, res in zip(seqs, drafts, resp.items):
            env.commit(s, res.token_ids, res.teacher_topk_ids, res.teacher_topk_logprobs)
            s.drafted += len(d)
            s.accepted += res.num_accepted
            s.gamma = self.next_gamma(s.gamma or self.cfg.gamma, len(d), res.num_accepted)


class OnPolicy(Speculative):
    """On-policy KD: the speculative method with K = infinity, so the whole response is drafted at once."""

    name = "on_policy"
    top_k = ON_POLICY_K
    steers_k = False

    def draft_len(self, seq: InFlight) -> int:
        return self.cfg.max_new_tokens - len(seq.response)


class TeacherSampling(Method):
    name = "teacher_sampling"

    async def step(self, seqs: list[InFlight], env: RolloutEnv) -> None:
        req = GenerateRequest(
            items=[GenerateItem(prompt_ids=s.context) for s in seqs],
            max_tokens=self.cfg.max_new_tokens,
            temperature=self.cfg.teacher_temperature,
            top_p=self.cfg.teacher_top_p,
            num_logprobs=self.cfg.num_logprobs,
            seed=env.seed(),
        )
        resp = await env.teacher.generate(req)
        for s, res in zip(seqs, resp.items):
            env.commit(s, res.token_ids, res.teacher_topk_ids, res.teacher_topk_logprobs)
            s.done = True


class SupervisedKD(Method):
    name = "supervised_kd"
    needs_reference = True

    async def step(self, seqs: list[InFlight], env: RolloutEnv) -> None:
        refs = [list(s.prompt.reference_ids or [])[: self.cfg.max_new_tokens] for s in seqs]
        items = [
            ScoreItem(token_ids=s.prompt.prompt_ids + r, start=len(s.prompt.prompt_ids))
            for s, r in zip(seqs, refs)
        ]
        resp = await env.teacher.score(ScoreRequest(items=items, num_logprobs=self.cfg.num_logprobs))
        for s, r, res in zip(seqs, refs, resp.items):
            env.commit(s, r, res.teacher_topk_ids, res.teacher_topk_logprobs)
            s.done = True


class SFT(Method):
    name = "sft"
    needs_reference = True
    sample_kind = "sft"

    async def step(self, seqs: list[InFlight], env: RolloutEnv) -> None:
        for s in seqs:
            s.response, s.done = list(s.prompt.reference_ids or []), True


class MixedSKD(Method):
    """supervised_kd with probability `mixed_lambda`, else skd: the SKD paper's reference code's
    `mixed_skd` (called `mixed` here before issue 38)."""

    name = "mixed_skd"
    needs_reference = True
    steers_k = True

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        self.supervised, self.skd = SupervisedKD(cfg), Speculative(cfg)

    def set_top_k(self, k: int) -> None:
        self.skd.set_top_k(k)

    def route(self, rng: np.random.Generator) -> Method:
        return self.supervised if rng.random() < self.cfg.mixed_lambda else self.skd


class MixedOnPolicy(Method):
    """supervised_kd with probability `mixed_lambda`, else on_policy: the SKD paper's `mixed` baseline
    (its reference code's kd_type=mixed, GKD's mixture of fixed and student-generated outputs). No K: the
    student's half is on-policy, not speculative."""

    name = "mixed_on_policy"
    needs_reference = True

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        self.supervised, self.on_policy = SupervisedKD(cfg), OnPolicy(cfg)

    def route(self, rng: np.random.Generator) -> Method:
        return self.supervised if rng.random() < self.cfg.mixed_lambda else self.on_policy


BUILTIN = (Speculative, OnPolicy, TeacherSampling, SupervisedKD, SFT, MixedSKD, MixedOnPolicy)
