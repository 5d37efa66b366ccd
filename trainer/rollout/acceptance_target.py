"""`target_acceptance`: K adapted per step to hold the train batch's acceptance near a target.

Why: the share of student tokens the teacher keeps is what makes SKD SKD, and at a fixed K it depends on
the pair and moves as the student learns. A same-family pair accepts ~100% of draft tokens at the paper's
K = 25 (SKD is then on-policy KD: nothing is corrected), an untrained student far less (SKD is then close
to teacher sampling). Holding the acceptance instead of K keeps the mix of student and teacher tokens
the method is about, whatever the pair.

The rule (`next_top_k`): after each optimizer step K is multiplied by 2 ** (GAIN * (target - acceptance)),
a step in log K proportional to the miss (the teacher's probability mass falls off roughly
geometrically in rank, so acceptance moves with log K), at most MAX_FACTOR up or down per step, kept in
[1, k_max] (k_max: the teacher's max_logprobs). K is kept as a float so that small steps add up; the
actors get it rounded. The batch's samples were drafted under the K of a step or two before (staleness),
so the gain is modest: a 10-point miss doubles or halves K.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from trainer.records import Sample, batch_acceptance

GAIN = 10.0  # doublings of K per unit of acceptance missed
MAX_FACTOR = 4.0  # the most K changes in one step


def next_top_k(k: float, acceptance: float, target: float, k_max: int) -> float:
    """The next K (a float; the actors round it) given the last batch's acceptance."""
    if not 0.0 <= acceptance <= 1.0:
        raise ValueError(f"acceptance must be in [0, 1], got {acceptance}")
    factor = min(max(2.0 ** (GAIN * (target - acceptance)), 1.0 / MAX_FACTOR), MAX_FACTOR)
    return min(max(k * factor, 1.0), float(k_max))


class AcceptanceTarget:
    """The driver's K for the rollouts: `update` after each step, `state` into the checkpoint."""

    def __init__(self, target: float, k: float, k_max: int):
        if k_max < 1:
            raise ValueError(f"k_max must be >= 1, got {k_max}")
        self.target, self.k_max = target, k_max
        self.k = min(max(float(k), 1.0), float(k_max))

    @property
    def top_k(self) -> int:
        return max(1, round(self.k))

    def update(self, batch: Sequence[Sample]) -> int:
        """K for the next rollouts from this batch's acceptance (unchanged if it drafted nothing)."""
        acceptance = batch_acceptance(list(batch))
        if acceptance is not None:
            self.k = next_top_k(self.k, acceptance, self.target, self.k_max)
        return self.top_k

    def state(self) -> dict:
        return {"k": self.k}

    def load_state(self, state: dict | None) -> None:
        if state and math.isfinite(k := float(state.get("k", self.k))):
            self.k = min(max(k, 1.0), float(self.k_max))
