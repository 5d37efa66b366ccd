"""target_acceptance's rule on its own (pure): K moves in log space toward the target acceptance, bounded
per step and to [1, k_max]; its state survives a checkpoint."""

from __future__ import annotations

import math

import pytest

from trainer.records import Sample
from trainer.rollout.acceptance_target import GAIN, MAX_FACTOR, AcceptanceTarget, next_top_k


def _sample(drafted: int, accepted: int) -> Sample:
    return Sample(index=0, method="skd", kind="kd", prompt_ids=[1], response_ids=[2] * max(accepted, 1),
                  teacher_topk_ids=[[2]] * max(accepted, 1), teacher_topk_logprobs=[[0.0]] * max(accepted, 1),
                  weight_version=0, num_drafted=drafted, num_accepted=accepted)  # fmt: skip


def test_k_falls_when_the_batch_accepts_more_than_the_target_and_rises_when_less():
    assert next_top_k(25, 0.99, 0.9, 100) < 25 < next_top_k(25, 0.8, 0.9, 100)
    assert next_top_k(25, 0.9, 0.9, 100) == 25  # on target: unchanged
    # a step in log K proportional to the miss: 5 points below the target is half a doubling at GAIN 10
    assert math.log2(next_top_k(10, 0.85, 0.9, 100) / 10) == pytest.approx(GAIN * 0.05)


def test_k_is_bounded_per_step_and_to_its_range():
    assert next_top_k(16, 0.0, 0.99, 1000) == 16 * MAX_FACTOR  # a huge miss: at most MAX_FACTOR up
    assert next_top_k(16, 1.0, 0.01, 1000) == 16 / MAX_FACTOR  # and down
    assert next_top_k(2, 1.0, 0.5, 100) == 1.0  # never below 1
    assert next_top_k(90, 0.0, 0.9, 100) == 100.0  # never above the teacher's max_logprobs
    with pytest.raises(ValueError, match="acceptance"):
        next_top_k(5, 1.5, 0.9, 100)


def test_small_steps_add_up_and_the_state_survives_a_checkpoint():
    steer = AcceptanceTarget(target=0.9, k=5, k_max=64)
    ks = [steer.update([_sample(100, 92)]) for _ in range(8)]  # 2 points over: K * 2**-0.2 per step
    assert steer.k == pytest.approx(5 * 2 ** (-0.2 * 8)) and ks[-1] == round(steer.k) < 5
    assert steer.update([_sample(0, 0)]) == ks[-1]  # a batch with nothing drafted (e.g. sft): no change
    again = AcceptanceTarget(target=0.9, k=25, k_max=64)
    again.load_state(steer.state())
    assert again.k == steer.k and again.top_k == steer.top_k
    assert AcceptanceTarget(target=0.9, k=300, k_max=64).top_k == 64  # the first K is kept in range
