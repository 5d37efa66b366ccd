"""The step record's length figures: what was generated, dropped and trained on, side by side, and the
teacher's probability of the token that ended each short response."""

from __future__ import annotations

import math

import pytest

from trainer.outputs import metrics as m
from trainer.records import Sample


def _sample(position: int, response: list[int], last_top: dict[int, float] | None = None) -> Sample:
    top = [[9]] * (len(response) - 1) + [list(last_top or {9: 0.0})]
    lps = [[0.0]] * (len(response) - 1) + [list((last_top or {9: 0.0}).values())]
    return Sample(index=0, position=position, method="skd", kind="kd", prompt_ids=[1], response_ids=response,
                  teacher_topk_ids=top, teacher_topk_logprobs=lps, weight_version=0)  # fmt: skip


def test_a_step_record_sets_the_trained_lengths_beside_the_generated_and_dropped():
    batch = [
        _sample(0, [5, 5, 2], {2: math.log(0.5), 7: math.log(0.3)}),  # ended at 3 < 4: teacher p = 0.5
        _sample(1, [5, 2], {7: math.log(0.9)}),  # ended on a token outside the teacher's top-k: p = 0
        _sample(2, [5, 5, 5, 5]),  # reached max_new_tokens: not an early end
    ]
    record = m.step_record({"loss": 1.0, "tokens": 9}, batch, step=1, phases={"train": 1.0},
                           busy_fraction=1.0, received_tokens=12, position=3, dropped=1,
                           lengths=([3, 2, 4, 3], [7]), max_new_tokens=4)  # fmt: skip
    assert record[m.TRAINED_LENGTHS] == [3, 2, 4]
    assert record[m.GENERATED_LENGTHS] == [3, 2, 4, 3] and record[m.DROPPED_LENGTHS] == [7]
    assert record[m.RESPONSE_TOKENS] == pytest.approx(3.0)
    assert record[m.END_TEACHER_PROB] == pytest.approx((0.5 + 0.0) / 2)


def test_no_early_end_means_no_end_probability():
    assert m.end_teacher_prob([_sample(0, [5, 5])], max_new_tokens=2) is None
    assert m.end_teacher_prob([_sample(0, [5, 5])], max_new_tokens=None) is None


def test_repeated_ngrams_counts_the_4grams_a_response_already_had():
    from trainer.evaluate import repeated_ngrams

    assert repeated_ngrams([[1, 2, 3, 4, 5, 6]]) == 0.0
    assert repeated_ngrams([[7] * 10]) == pytest.approx(6 / 7)  # 7 4-grams, all but the first repeated
    # pooled over responses; [9, 9] has no 4-gram
    assert repeated_ngrams([[1, 2, 3, 4, 1, 2, 3, 4], [9, 9]]) == pytest.approx(1 / 5)
    assert repeated_ngrams([[1, 2], []]) == 0.0
