"""The prompt stream: an endless, seeded, epoch-by-epoch shuffle of the training prompts, fed to the
actors' shared Ray queue, with a position that checkpoints and resumes exactly.

`in_flight` holds prompts handed out but not yet trained on (or dropped); on resume they are handed out
again first, so a crash loses no data and the stream continues where it stood.
"""

from __future__ import annotations

import numpy as np

from trainer.records import Prompt


class PromptFeeder:
    def __init__(self, prompts: list[Prompt], seed: int, state: dict | None = None):
        if not prompts:
            raise ValueError("no training prompts")
        self.prompts = prompts
        self.seed = seed
        self.position = 0  # prompts drawn from the stream so far
        self.in_flight: dict[int, int] = {}  # stream position -> prompt index
        self.retry: list[int] = []
        if state:
            self.position = state["position"]
            self.retry = sorted(state["in_flight"])

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.prompts))

    def _draw(self) -> tuple[int, Prompt]:
        if self.retry:
            pos = self.retry.pop(0)
        else:
            pos, self.position = self.position, self.position + 1
        epoch, offset = divmod(pos, len(self.prompts))
        prompt = self.prompts[int(self._order(epoch)[offset])]
        self.in_flight[pos] = prompt.index
        return pos, prompt

    def fill(self, queue, target: int) -> int:
        """Top the queue up to `target` waiting prompts; returns how many were added."""
        need = target - queue.qsize()
        if need <= 0:
            return 0
        batch = []
        for _ in range(need):
            pos, prompt = self._draw()
            batch.append(prompt.model_copy(update={"position": pos}))
        queue.put_nowait_batch(batch)
        return len(batch)

    def unaccounted(self, seen: set[int]) -> list[int]:
        """Handed-out positions not among `seen` (every position still held somewhere downstream)."""
        return [pos for pos in self.in_flight if pos not in seen]

    def reissue(self, positions: list[int]) -> None:
        """These handed-out positions were lost (their actor died): hand them out again, first."""
        for position in positions:
            del self.in_flight[position]
        self.retry = sorted([*positions, *self.retry])

    def done(self, *positions: int | None) -> None:
        """Samples for these stream positions were trained on or dropped."""
        for position in positions:
            self.in_flight.pop(position, None)

    def state(self) -> dict:
        return {"position": self.position, "in_flight": sorted(self.in_flight) + self.retry}
