"""The phase timer: every second of a run charged to exactly one phase."""

from __future__ import annotations

import pytest

from trainer.outputs.timing import PhaseTimer


def test_phase_timer_accounts_for_every_second(monkeypatch):
    clock = iter([0.0, 2.0, 5.0, 5.5, 6.0, 10.0])
    monkeypatch.setattr("trainer.outputs.timing.time.perf_counter", lambda: next(clock))
    timer = PhaseTimer()  # t = 0
    assert timer.lap("wait") == 2.0
    timer.lap("train")  # 3 s
    timer.lap("push")  # 0.5 s
    first = timer.end_step()
    timer.lap("log")  # 0.5 s
    timer.lap("wait")  # 4 s
    assert first == {"wait": 2.0, "train": 3.0, "push": 0.5}
    assert timer.end_step() == {"log": 0.5, "wait": 4.0}
    assert sum(timer.total.values()) == 10.0
    assert timer.busy_fraction == pytest.approx(4.0 / 10.0)
