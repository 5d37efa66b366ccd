"""The records the trainer's roles hand each other: prompts to the rollout actors, samples back to the
learner. Nothing here imports a component, so every component can import it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

SampleKind = Literal["kd", "sft"]
"""How the learner trains on a sample: KD on the teacher's top-k targets, or cross-entropy on its tokens."""


class Prompt(BaseModel):
    """A tokenised prompt. `index` is its row in the loaded data; `position` its place in the prompt stream
    (set by the feeder: the same row recurs at a new position every epoch; None outside training);
    `min_version` the oldest student weights its sequence may start on (trainer.rollout.admission)."""

    index: int
    prompt_ids: list[int] = Field(min_length=1)
    reference_ids: list[int] | None = None
    position: int | None = None
    min_version: int = 0


class Sample(BaseModel):
    """One finished sequence: what the learner trains on, and how it was made."""

    index: int
    position: int | None = None
    method: str
    kind: SampleKind
    prompt_ids: list[int]
    response_ids: list[int]
    teacher_topk_ids: list[list[int]] = []
    teacher_topk_logprobs: list[list[float]] = []
    weight_version: int
    num_drafted: int = 0
    num_accepted: int = 0
    actor: int = 0


def batch_acceptance(batch: list[Sample]) -> float | None:
    """Accepted / drafted tokens over a batch's samples (None: nothing in it was drafted)."""
    drafted = sum(s.num_drafted for s in batch)
    return sum(s.num_accepted for s in batch) / drafted if drafted else None
