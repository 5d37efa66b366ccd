"""Admission: how many prompts may be handed out now, and on which weights each may start, so that every
sequence is trained within `max_staleness` versions of the weights that started it and none is dropped.

The learner trains on the outstanding prompts (handed out, not yet trained) in stream order, `batch` per
step (trainer.rollout.buffer). A prompt handed out while `outstanding` others are outstanding is therefore
trained at step `step + outstanding // batch` at the latest. It may start on weights of version `v` only if
that step is at most `v + max_staleness` away, so:

- `min_version`: the oldest weights it may start on (the actor waits for them if it has older ones);
- `room`: how many prompts may be outstanding beyond those now, given the newest weights pushed: the
  rollout runs ahead of the learner by at most `max_staleness + 1` batches and never further.

As in AReaL's staleness control, sequences are admitted only as fast as the learner will take them; a
sequence that takes long is waited for rather than overtaken, so a batch's responses are as long as what
is generated (taking them in completion order, and dropping the late ones, favoured short responses).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Admission:
    batch: int  # samples the learner takes per step
    max_staleness: int

    def room(self, step: int, pushed: int, outstanding: int) -> int:
        """Prompts that may be handed out now: the learner has made `step` steps, the actors may have the
        weights of step `pushed`, and `outstanding` prompts are handed out and not yet trained."""
        return max(0, (pushed - step + self.max_staleness + 1) * self.batch - outstanding)

    def min_version(self, step: int, outstanding: int) -> int:
        """The oldest weights a prompt handed out now may start on, with `outstanding` prompts ahead of it."""
        return max(0, step + outstanding // self.batch - self.max_staleness)
