"""Admission and stream-order batches: the driver hands prompts out only as fast as the learner takes them
within `max_staleness`, and the learner trains on them in stream order. The rule alone (pure), then the
real feeder, supervisor and sample buffer over Ray queues against an actor that takes `length` rounds per
sequence (the rollout's timing without an engine): what the learner trains on is what was generated, in
order, none of it stale, none dropped."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.config import RunConfig
from trainer.records import Prompt, Sample
from trainer.rollout.admission import Admission


def test_the_rollout_runs_at_most_max_staleness_plus_one_batches_ahead():
    gate = Admission(batch=8, max_staleness=2)
    assert gate.room(step=0, pushed=0, outstanding=0) == 24
    assert gate.room(step=5, pushed=5, outstanding=20) == 4
    assert gate.room(step=5, pushed=4, outstanding=8) == 8  # pushed a step behind: a batch less
    assert gate.room(step=5, pushed=5, outstanding=30) == 0  # never negative
    # a prompt with 17 ahead is trained 2 steps on: it may start on the weights of step 5 + 2 - 2
    assert gate.min_version(step=5, outstanding=17) == 5
    assert gate.min_version(step=5, outstanding=7) == 3
    assert gate.min_version(step=0, outstanding=0) == 0


def test_the_feeder_hands_out_within_room_and_reissued_prompts_first_beyond_it(ray_cluster):
    from ray.util.queue import Queue

    from trainer.rollout.feeder import PromptFeeder

    feeder, q = PromptFeeder([Prompt(index=i, prompt_ids=[i + 1]) for i in range(10)], seed=0), Queue()
    assert feeder.fill(q, target=50, room=3, min_version=lambda ahead: 100 + ahead) == 3
    sent = q.get_nowait_batch(3)
    assert [(p.position, p.min_version) for p in sent] == [(0, 100), (1, 101), (2, 102)]
    assert feeder.due(2) == [0, 1] and feeder.outstanding == [0, 1, 2]
    feeder.reissue([1])  # its actor died: handed out again first, even with no room
    assert feeder.fill(q, target=50, room=0, min_version=lambda ahead: ahead) == 1
    (again,) = q.get_nowait_batch(1)
    assert (again.position, again.min_version) == (1, 1)  # one outstanding prompt ahead of it
    feeder.done(0)
    assert feeder.due(5) == [1, 2]


class RoundsActor:
    """The rollout's timing without an engine: each prompt's sequence takes `length(position)` rounds, up
    to `inflight` at once; it starts once the loaded weights reach the prompt's `min_version`; pushed
    weights load between rounds; finished samples go on the sample queue in the order they finish."""

    def __init__(self, prompts, samples, inflight: int, length):
        self.prompts, self.samples, self.inflight, self.length = prompts, samples, inflight, length
        self.version = self.pushed = 0
        self.seqs: list[list] = []  # [prompt, started version or None, rounds left]

    def dead(self) -> list[int]:
        return []

    def round(self) -> None:
        self.version = self.pushed
        room = min(self.inflight - len(self.seqs), self.prompts.qsize())
        self.seqs += [[p, None, self.length(p.position)] for p in self.prompts.get_nowait_batch(room)]
        for s in self.seqs:
            if s[1] is None and s[0].min_version <= self.version:
                s[1] = self.version
            if s[1] is not None:
                s[2] -= 1
        done = [s for s in self.seqs if s[2] <= 0]
        self.seqs = [s for s in self.seqs if s[2] > 0]
        if done:
            self.samples.put_nowait_batch([
                Sample(index=p.index, position=p.position, method="skd", kind="kd", prompt_ids=p.prompt_ids,
                       response_ids=[7] * self.length(p.position), weight_version=v)
                for p, v, _ in done
            ])  # fmt: skip


def simulate(batch_order: str, max_staleness: int, batch: int = 4, steps: int = 10):
    """The real feeder, supervisor and sample buffer, wired as trainer.loop wires them, against a
    `RoundsActor` whose sequences take 1-16 rounds; returns the samples trained on, in order, the lengths
    generated, and the buffer."""
    from ray.util.queue import Queue

    from trainer.rollout.buffer import SampleBuffer
    from trainer.rollout.feeder import PromptFeeder
    from trainer.rollout.supervisor import RolloutSupervisor

    lengths = np.random.default_rng(0).integers(1, 17, size=1000)  # rounds = response tokens
    cfg = RunConfig(batch_size=batch, max_staleness=max_staleness, max_inflight_per_actor=8,
                    batch_order=batch_order)  # fmt: skip
    feeder = PromptFeeder([Prompt(index=i, prompt_ids=[i + 1]) for i in range(50)], seed=0)
    prompt_q, sample_q = Queue(), Queue()
    actor = RoundsActor(prompt_q, sample_q, cfg.max_inflight_per_actor, lambda pos: int(lengths[pos]))
    due = feeder.due if batch_order == "stream" else None
    buffer = SampleBuffer(sample_q, max_staleness, lambda s: feeder.done(s.position), due, poll_s=0.01)
    supervisor = RolloutSupervisor(cfg, feeder, prompt_q, actor, buffer)
    trained, generated = [], []
    for step in range(steps):

        def while_waiting(step=step):
            supervisor(step, actor.pushed)
            actor.round()

        taken = buffer.take(batch, step, while_waiting)
        generated += buffer.lengths()[0]
        trained += taken
        assert all(step - s.weight_version <= max_staleness for s in taken)
        feeder.done(*(s.position for s in taken))
        actor.pushed = step + 1  # the push after the step
    return trained, generated, buffer, lengths


@pytest.mark.parametrize("max_staleness", [0, 2])
def test_batches_are_what_was_generated_in_stream_order_none_stale_none_dropped(ray_cluster, max_staleness):
    """Every batch is the next stream positions, so the trained lengths are the generated lengths, and no
    sample is older than the bound or dropped."""
    trained, generated, buffer, lengths = simulate("stream", max_staleness)
    assert [s.position for s in trained] == list(range(40))
    assert [len(s.response_ids) for s in trained] == list(lengths[:40])
    assert buffer.dropped == 0
    # what the learner trained on has the generated lengths, not their short end
    assert np.mean([len(s.response_ids) for s in trained]) == pytest.approx(np.mean(generated), rel=0.25)


def test_batches_taken_as_sequences_finish_lean_to_short_responses_and_drop_long_ones(ray_cluster):
    """The cause, shown with the same parts (batch_order=completion, the loop before issue 37): long
    sequences finish last, so the batches are the short end of what was generated and the long ones go
    stale and are dropped."""
    trained, generated, buffer, _ = simulate("completion", max_staleness=0)
    assert buffer.dropped > 0 and [s.position for s in trained] != list(range(40))
    assert np.mean([len(s.response_ids) for s in trained]) < 0.75 * np.mean(generated)


def test_a_sync_interval_the_staleness_bound_cannot_cover_is_refused():
    with pytest.raises(ValueError, match=r"max_staleness \(0\) < sync_every - 1 \(1\)"):
        RunConfig(sync_every=2, max_staleness=0)
    RunConfig(sync_every=3, max_staleness=2)
