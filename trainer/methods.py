"""Rollout methods: how a rollout actor turns prompts into training samples.

A method advances a group of in-flight sequences by one step (one batched student call and/or one batched
teacher call) and marks the finished ones done. The actor groups its sequences by method and runs the
groups' steps concurrently. What each method needs (references or not) and yields (KD or SFT samples) is
declared on its class, and the trainer reads it from `METHODS`.

- skd            the student drafts `gamma` tokens, the teacher keeps them up to the first outside its top-K
                 and replaces that one (/verify)
- on_policy      the same with K = infinity: nothing is replaced, the student's own response (drafted whole)
- teacher_sampling  the teacher samples the response (K = 0 without the round trips: one /generate)
- supervised_kd  teacher targets on the reference response (/score)
- sft            the reference response itself, trained with cross-entropy
- mixed          hands each new sequence to supervised_kd with probability `mixed_lambda`, else to skd

Adding a method: a class with `name`, `needs_reference`, `sample_kind` and `step`, and one line in METHODS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from shared.client import TeacherClient
from shared.protocol import GenerateItem, GenerateRequest, ScoreItem, ScoreRequest, VerifyItem, VerifyRequest
from trainer.types import Prompt, Sample, SampleKind

if TYPE_CHECKING:
    from trainer.config import RunConfig
    from trainer.student_engine import StudentEngine

ON_POLICY_K = 2**31 - 1  # >= any vocabulary: every draft token accepted


@dataclass
class Sequence:
    """A sequence in flight: its prompt, the method advancing it and what has been committed so far."""

    prompt: Prompt
    method: RolloutMethod
    version: int  # weights that started it
    response: list[int] = field(default_factory=list)
    topk_ids: list[list[int]] = field(default_factory=list)
    topk_logprobs: list[list[float]] = field(default_factory=list)
    drafted: int = 0
    accepted: int = 0
    gamma: int | None = None  # its draft length (adaptive_gamma); None: cfg.gamma
    done: bool = False

    @property
    def context(self) -> list[int]:
        return self.prompt.prompt_ids + self.response

    def sample(self, actor: int) -> Sample:
        return Sample(
            index=self.prompt.index,
            position=self.prompt.position,
            method=self.method.name,
            kind=self.method.sample_kind,
            prompt_ids=self.prompt.prompt_ids,
            response_ids=self.response,
            teacher_topk_ids=self.topk_ids,
            teacher_topk_logprobs=self.topk_logprobs,
            weight_version=self.version,
            num_drafted=self.drafted,
            num_accepted=self.accepted,
            actor=actor,
        )


@dataclass
class RolloutEnv:
    """What a step may use: the actor's student engine, the teacher, the settings and a seed stream."""

    cfg: RunConfig
    student: StudentEngine
    teacher: TeacherClient
    rng: np.random.Generator
    eos_ids: frozenset[int]

    def seed(self) -> int:
        return int(self.rng.integers(2**31))

    def commit(self, seq: Sequence, tokens: list[int], topk_ids, topk_logprobs) -> None:
        """Append committed tokens with their teacher targets; done at EOS or the length limit."""
        seq.response += tokens
        seq.topk_ids += topk_ids
        seq.topk_logprobs += topk_logprobs
        if len(seq.response) >= self.cfg.max_new_tokens or (
            seq.response and seq.response[-1] in self.eos_ids
        ):
            seq.done = True


class RolloutMethod(Protocol):
    name: ClassVar[str]
    needs_reference: ClassVar[bool]  # prompts must come with a reference response
    sample_kind: ClassVar[SampleKind]

    def route(self, rng: np.random.Generator) -> RolloutMethod:
        """The method that runs a new sequence (itself, or another one it hands the sequence to)."""
        ...

    async def step(self, seqs: list[Sequence], env: RolloutEnv) -> None:
        """Advance every sequence by one step of this method; mark the finished ones done."""
        ...


class Method:
    """Defaults for `RolloutMethod`: a KD method that needs no reference and runs its own sequences."""

    name: ClassVar[str] = ""
    needs_reference: ClassVar[bool] = False
    sample_kind: ClassVar[SampleKind] = "kd"

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    def route(self, rng: np.random.Generator) -> RolloutMethod:
        return self

    async def step(self, seqs: list[Sequence], env: RolloutEnv) -> None:
        raise NotImplementedError


class Speculative(Method):
    """SKD: one draft call of up to `gamma` tokens for every sequence, one /verify under top-K. With
    `adaptive_gamma` each sequence's draft length follows its own acceptance (`next_gamma`)."""

    name = "skd"

    @property
    def top_k(self) -> int:
        return self.cfg.top_k

    def draft_len(self, seq: Sequence) -> int:
        return min(seq.gamma or self.cfg.gamma, self.cfg.max_new_tokens - len(seq.response))

    def next_gamma(self, gamma: int, drafted: int, accepted: int) -> int:
        """Longer after a round that kept its whole draft, shorter after one that did not."""
        if not self.cfg.adaptive_gamma:
            return gamma
        return min(gamma + 2, self.cfg.gamma_max) if accepted == drafted else max(gamma - 1, 1)

    async def step(self, seqs: list[Sequence], env: RolloutEnv) -> None:
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

    def draft_len(self, seq: Sequence) -> int:
        return self.cfg.max_new_tokens - len(seq.response)


class TeacherSampling(Method):
    name = "teacher_sampling"

    async def step(self, seqs: list[Sequence], env: RolloutEnv) -> None:
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

    async def step(self, seqs: list[Sequence], env: RolloutEnv) -> None:
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

    async def step(self, seqs: list[Sequence], env: RolloutEnv) -> None:
        for s in seqs:
            s.response, s.done = list(s.prompt.reference_ids or []), True


class Mixed(Method):
    """The paper's mixed sampling baseline: supervised KD with probability `mixed_lambda`, else SKD."""

    name = "mixed"
    needs_reference = True

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        self.supervised, self.skd = SupervisedKD(cfg), Speculative(cfg)

    def route(self, rng: np.random.Generator) -> RolloutMethod:
        return self.supervised if rng.random() < self.cfg.mixed_lambda else self.skd


METHODS: dict[str, type[Method]] = {
    m.name: m for m in (Speculative, OnPolicy, TeacherSampling, SupervisedKD, SFT, Mixed)
}
