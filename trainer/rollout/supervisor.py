"""Keeping the rollout going while the learner waits for samples: the prompt queue topped up as far as
admission allows (trainer.rollout.admission: no sequence outruns the staleness bound), and dead actors
replaced with exactly the prompts only they held issued again. The one owner of fault recovery: the feeder,
the sample buffer and the actor group each say what they hold, and nothing else reaches into them.
"""

from __future__ import annotations

import logging

from ray.util.queue import Empty

from trainer.config import RunConfig
from trainer.rollout.admission import Admission
from trainer.rollout.buffer import SampleBuffer
from trainer.rollout.feeder import PromptFeeder
from trainer.rollout.group import RolloutGroup

logger = logging.getLogger(__name__)


class RolloutSupervisor:
    """Called between polls of the sample buffer (`SampleBuffer.take(..., while_waiting=supervisor)`)."""

    def __init__(
        self,
        cfg: RunConfig,
        feeder: PromptFeeder,
        prompt_queue,
        rollout: RolloutGroup,
        buffer: SampleBuffer,
    ):
        self.feeder, self.prompt_queue, self.rollout, self.buffer = feeder, prompt_queue, rollout, buffer
        self.target = 2 * cfg.num_rollout_actors * cfg.max_inflight_per_actor  # prompts kept waiting
        self.admission = None  # batch_order=completion: prompts handed out ahead, as many as `target`
        if cfg.batch_order == "stream":
            self.admission = Admission(cfg.batch_size * cfg.grad_accum, cfg.max_staleness)

    def __call__(self, step: int, pushed: int) -> None:
        """Top up the prompt queue with what may start now (the learner has made `step` steps, the actors
        may have the weights of step `pushed`); replace actors that died."""
        if self.admission is None:
            self.feeder.fill(self.prompt_queue, self.target)
        else:
            gate = self.admission
            room = gate.room(step, pushed, len(self.feeder.outstanding))
            min_version = lambda ahead: gate.min_version(step, ahead)  # noqa: E731
            self.feeder.fill(self.prompt_queue, self.target, room, min_version)
        if dead := self.rollout.dead():
            self.recover(dead)

    def recover(self, dead: list[int]) -> None:
        """Replace dead actors and issue again the prompts only they held. Everything handed out is
        somewhere downstream of the queue; looking upstream first (the queue, emptied here, then the live
        actors, then the samples queued) finds every prompt still held, as prompts only move downstream."""
        waiting = _take_all(self.prompt_queue)
        held = self.rollout.held_positions(skip=dead)
        seen = {p.position for p in waiting} | held | self.buffer.positions()
        lost = self.feeder.unaccounted(seen)
        for i in dead:
            self.rollout.replace(i)
        self.feeder.reissue(lost)
        if waiting:
            self.prompt_queue.put_nowait_batch(waiting)
        logger.warning("rollout actor(s) %s died: replaced; %d prompts issued again", dead, len(lost))


def _take_all(queue) -> list:
    """Everything waiting in a Ray queue, one at a time: `get_nowait_batch(qsize())` raises Empty when a
    live actor takes a prompt between the two calls."""
    items = []
    while True:
        try:
            items.append(queue.get_nowait())
        except Empty:
            return items
