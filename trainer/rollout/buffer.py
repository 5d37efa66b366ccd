"""The sample buffer: batches for the learner from the actors' sample queue, in stream order.

A batch is the samples of the prompts `due` next (the first outstanding stream positions), whatever order
they finished in: a long response is waited for, never overtaken by shorter ones that finished first, so
what the learner trains on is what was generated, not its short end (trainer.rollout.admission keeps the
wait within `max_staleness`). With `due=None` (batch_order=completion) a batch is the first to finish.
Samples made by weights more than `max_staleness` versions behind the learner are dropped
(off-policy data the run promised not to train on), counted, and handed to `release` so their prompts' stream
positions are not kept waiting. The buffer also counts the response tokens it receives (rollout throughput)
and keeps the response lengths of what it received and dropped since the last step record (`lengths`): a
batch's lengths set beside them show whether batching is biased by length.
"""

from __future__ import annotations

import queue
from collections.abc import Callable

from trainer.records import Sample


class SampleBuffer:
    def __init__(
        self,
        sample_queue,
        max_staleness: int,
        release: Callable[[Sample], None],
        due: Callable[[int], list[int]] | None,
        dropped: int = 0,
        poll_s: float = 0.05,
    ):
        self.queue = sample_queue
        self.max_staleness = max_staleness
        self.release, self.due = release, due
        self.dropped = dropped  # stale samples dropped over the run (carried over on resume)
        self.received_tokens = 0
        self.received_lengths: list[int] = []  # since the last `lengths()`
        self.dropped_lengths: list[int] = []
        self.poll_s = poll_s
        self.samples: list[Sample] = []

    def _receive(self) -> None:
        """Whatever is in the queue now, waiting up to `poll_s` for the first sample if it is empty."""
        try:
            first = self.queue.get(timeout=self.poll_s)
        except queue.Empty:
            return
        self._add([first])
        self.drain()

    def drain(self) -> None:
        """Receive everything queued now, without waiting."""
        size = self.queue.qsize()
        self._add(self.queue.get_nowait_batch(size) if size else [])

    def _add(self, new: list[Sample]) -> None:
        lengths = [len(s.response_ids) for s in new]
        self.received_tokens += sum(lengths)
        self.received_lengths += lengths
        self.samples += new

    def lengths(self) -> tuple[list[int], list[int]]:
        """Response lengths of the samples received and dropped since the previous call."""
        out = self.received_lengths, self.dropped_lengths
        self.received_lengths, self.dropped_lengths = [], []
        return out

    def positions(self) -> set[int]:
        """Stream positions of every sample queued or held here (the queue drained first)."""
        self.drain()
        return {s.position for s in self.samples}

    def _drop_stale(self, version: int) -> None:
        fresh = []
        for s in self.samples:
            if version - s.weight_version <= self.max_staleness:
                fresh.append(s)
            else:
                self.dropped += 1
                self.dropped_lengths.append(len(s.response_ids))
                self.release(s)
        self.samples = fresh

    def take(self, n: int, version: int, while_waiting: Callable[[], None]) -> list[Sample]:
        """The samples of the `n` positions due next, fresh for a learner at weight `version`; calls
        `while_waiting` (keep the actors fed, watch them) until they are all here."""
        while True:
            self._drop_stale(version)
            due = self.due(n) if self.due else [s.position for s in self.samples[:n]]  # else: as finished
            held = {s.position: s for s in self.samples}
            if len(due) == n and all(p in held for p in due):
                taken = set(due)
                self.samples = [s for s in self.samples if s.position not in taken]
                return [held[p] for p in due]
            while_waiting()
            self._receive()
