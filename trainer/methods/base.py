"""What a rollout method works with: `InFlight` (a sequence being made), `RolloutEnv` (the actor's student
engine, the teacher, the settings, a seed stream) and `Method`, the base every method extends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from shared.client import TeacherClient
from trainer.records import Prompt, Sample, SampleKind

if TYPE_CHECKING:
    from trainer.config import RunConfig


class Drafter(Protocol):
    """What a method asks of the actor's student engine (trainer.rollout.engine.StudentEngine)."""

    def draft(self, contexts: list[list[int]], max_tokens: list[int], seeds: list[int]) -> list[list[int]]:
        """Sampled continuations at the student's drafting temperature / top-p, one seeded request each."""
        ...


@dataclass
class InFlight:
    """A sequence in flight on a rollout actor: its prompt, the method advancing it and what has been
    committed so far."""

    prompt: Prompt
    method: Method
    version: int | None = None  # weights that started it (None: not started yet)
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
    student: Drafter
    teacher: TeacherClient
    rng: np.random.Generator
    eos_ids: frozenset[int]

    def seed(self) -> int:
        return int(self.rng.integers(2**31))

    def commit(self, seq: InFlight, tokens: list[int], topk_ids, topk_logprobs) -> None:
        """Append committed tokens with their teacher targets; done at EOS or the length limit."""
        seq.response += tokens
        seq.topk_ids += topk_ids
        seq.topk_logprobs += topk_logprobs
        if len(seq.response) >= self.cfg.max_new_tokens or (
            seq.response and seq.response[-1] in self.eos_ids
        ):
            seq.done = True


class Method:
    """A rollout method. Subclasses set `name` (its --method value), `needs_reference` (its prompts must
    come with a reference response), `sample_kind` (how the learner trains on its samples) and `step`;
    `route` may hand a new sequence to another method (mixed does). A method whose acceptance depends on
    a top-K sets `steers_k` and takes a new K in `set_top_k` (target_acceptance)."""

    name: ClassVar[str] = ""
    needs_reference: ClassVar[bool] = False
    sample_kind: ClassVar[SampleKind] = "kd"
    steers_k: ClassVar[bool] = False

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    def route(self, rng: np.random.Generator) -> Method:
        """The method that runs a new sequence (itself, or another one it hands the sequence to)."""
        return self

    def set_top_k(self, k: int) -> None:
        """The K for this method's next verification rounds (target_acceptance)."""
        raise ValueError(f"method {self.name} has no top-K to adapt (target_acceptance)")

    def check_reference(self, prompt: Prompt) -> None:
        """A prompt this method cannot run (no reference where it needs one) is an error naming both."""
        if self.needs_reference and prompt.reference_ids is None:
            raise ValueError(f"prompt {prompt.index} has no reference, which method {self.name} needs")

    async def step(self, seqs: list[InFlight], env: RolloutEnv) -> None:
        """Advance every sequence by one step of this method; mark the finished ones done."""
        raise NotImplementedError
