"""Where the trainer's wall time goes: a lap timer that splits it into named phases.

`lap(phase)` charges the time since the previous lap to `phase`, so every second of the run belongs to
exactly one phase and nothing falls between them. `wait` (for samples) is idle; everything else (training,
weight pushes, logging, evaluation, checkpoints) is busy.
"""

from __future__ import annotations

import time
from collections import defaultdict

IDLE = "wait"


class PhaseTimer:
    def __init__(self):
        self.last = time.perf_counter()
        self.total: dict[str, float] = defaultdict(float)
        self.step: dict[str, float] = defaultdict(float)

    def lap(self, phase: str) -> float:
        """Charge the time since the previous lap to `phase`; returns it."""
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        self.total[phase] += elapsed
        self.step[phase] += elapsed
        return elapsed

    def end_step(self) -> dict[str, float]:
        """This step's seconds per phase (since the previous end_step); starts the next step."""
        step, self.step = dict(self.step), defaultdict(float)
        return step

    @property
    def busy_fraction(self) -> float:
        total = sum(self.total.values())
        return (total - self.total[IDLE]) / total if total > 0 else 0.0
