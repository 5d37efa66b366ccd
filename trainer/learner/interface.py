"""What the rest of the job needs of a learner, however it runs: in the driver (`LocalLearner`) or as N
Ray workers joined by torch.distributed (`LearnerGroup`). The loop, the evaluator and checkpointing are
typed against this protocol, never against one of the two."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import torch

from trainer.records import Sample


class Learner(Protocol):
    step: int  # optimizer steps taken: the version of the weights it exports
    tokenizer: Any  # the student's tokenizer (decodes responses for task metrics)

    def train_step(self, batch: list[Sample]) -> dict[str, float]:
        """One optimizer step on a batch; returns its stats (loss, tokens, ...)."""
        ...

    def kl_to_teacher(self, samples: list[Sample]) -> float:
        """Mean per-token KL(teacher || student) on samples that carry teacher targets."""
        ...

    def weight_buckets(self, dtype: torch.dtype) -> Iterable[Any]:
        """The student's weights in the engines' dtype as buckets a weight transport carries."""
        ...

    def save(self, directory: Path, extra: dict) -> Path:
        """A checkpoint of this step in `directory` (with `extra` state); returns its path."""
        ...

    def load_state(self, checkpoint: Path) -> dict:
        """Optimizer, scheduler, step and RNG from a checkpoint; returns the rest of its state."""
        ...

    def shutdown(self) -> None: ...
