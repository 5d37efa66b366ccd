"""The prompt stream: an endless, seeded, epoch-by-epoch shuffle of the training prompts, fed to the
actors' shared Ray queue, with a position that checkpoints and resumes exactly.

`in_flight` holds prompts handed out but not yet trained on (or dropped); on resume they are handed out
again first, so a crash loses no data and the stream continues where it stood. The learner trains on the
outstanding prompts in stream order (`due`), and each prompt handed out carries the oldest weights it may
start on (`Prompt.min_version`, from trainer.rollout.admission).
"""

from __future__ import annotations

from collections.abc import Callable

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

    @property
    def outstanding(self) -> list[int]:
        """Stream positions handed out (or to be handed out again) and not yet trained on, in order."""
        return sorted([*self.in_flight, *self.retry])

    def due(self, n: int) -> list[int]:
        """The positions the learner trains on next: the first `n` outstanding ones."""
        return self.outstanding[:n]

    def fill(
        self,
        queue,
        target: int,
        room: int | None = None,
        min_version: Callable[[int], int] = lambda ahead: 0,
    ) -> int:
        """Top the queue up to `target` waiting prompts, with at most `room` new ones (prompts to hand out
        again do not count: they are outstanding already); each is tagged `min_version(ahead)`, `ahead`
        being the outstanding prompts before it in stream order. Returns how many were added."""
        need = target - queue.qsize()
        batch = []
        while need > len(batch) and (self.retry or room is None or room > 0):
            if not self.retry and room is not None:
                room -= 1
            pos, prompt = self._draw()
            ahead = sum(p < pos for p in self.outstanding)
            batch.append(prompt.model_copy(update={"position": pos, "min_version": min_version(ahead)}))
        if batch:
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
