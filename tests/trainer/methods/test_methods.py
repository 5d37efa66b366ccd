"""The method registry and what each built-in method decides on its own (no engine, no teacher)."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.config import RunConfig
from trainer.methods import METHODS, ON_POLICY_K, InFlight, Speculative, lookup
from trainer.methods.builtin import OnPolicy, SupervisedKD
from trainer.records import Prompt


def test_registry_declares_what_each_method_needs_and_yields():
    assert list(METHODS) == [
        "skd",
        "on_policy",
        "teacher_sampling",
        "supervised_kd",
        "sft",
        "mixed_skd",
        "mixed_on_policy",
    ]
    assert all(cls.name == name for name, cls in METHODS.items())
    assert {n for n, m in METHODS.items() if m.needs_reference} == {
        "supervised_kd",
        "sft",
        "mixed_skd",
        "mixed_on_policy",
    }
    assert {n for n, m in METHODS.items() if m.sample_kind == "sft"} == {"sft"}
    cfg = RunConfig(top_k=7)
    assert METHODS["skd"](cfg).top_k == 7 and METHODS["on_policy"](cfg).top_k == ON_POLICY_K
    seq = InFlight(Prompt(index=0, prompt_ids=[1]), METHODS["skd"](cfg), 0, response=[7] * 24)  # 40 left
    assert METHODS["skd"](cfg).draft_len(seq) == cfg.gamma and METHODS["on_policy"](cfg).draft_len(seq) == 40


def test_adaptive_gamma_follows_each_sequences_acceptance():
    fixed = METHODS["skd"](RunConfig(gamma=5, adaptive_gamma=False))
    assert [fixed.next_gamma(5, 5, a) for a in (0, 5)] == [5, 5]
    skd = METHODS["skd"](RunConfig(gamma=5, adaptive_gamma=True, gamma_max=8))
    assert skd.next_gamma(5, 5, 5) == 7 and skd.next_gamma(7, 7, 7) == 8  # whole draft kept: +2, capped
    assert skd.next_gamma(5, 5, 4) == 4 and skd.next_gamma(1, 1, 0) == 1  # a rejection: -1, at least 1
    seq = InFlight(Prompt(index=0, prompt_ids=[1]), skd, 0, gamma=7, response=[7] * 60)  # 4 left
    assert skd.draft_len(seq) == 4
    with pytest.raises(ValueError, match=r"gamma_max \(16\).*or adaptive_gamma=false"):
        RunConfig(gamma=20)  # adaptive by default
    assert RunConfig(gamma=20, adaptive_gamma=False).longest_draft == 20
    with pytest.raises(ValueError, match="overlap_groups"):
        RunConfig(overlap_groups=5, max_inflight_per_actor=4)
    assert RunConfig(gamma=5, adaptive_gamma=True, gamma_max=16).longest_draft == 16


@pytest.mark.parametrize("name, other", [("mixed_skd", Speculative), ("mixed_on_policy", OnPolicy)])
def test_a_mixed_method_hands_sequences_to_supervised_kd_or_its_other_method(name, other):
    rng = np.random.default_rng(0)
    for lam, expected in ((0.0, other), (1.0, SupervisedKD)):
        mixed = METHODS[name](RunConfig(method=name, mixed_lambda=lam))
        assert all(type(mixed.route(rng)) is expected for _ in range(20))
    mixed = METHODS[name](RunConfig(method=name, mixed_lambda=0.3))
    routed = [mixed.route(rng).name for _ in range(2000)]
    assert routed.count("supervised_kd") / len(routed) == pytest.approx(0.3, abs=0.04)
    assert set(routed) == {"supervised_kd", other.name}
    skd = METHODS["skd"](RunConfig())
    assert skd.route(rng) is skd


def test_the_old_name_mixed_stops_naming_both_new_ones():
    with pytest.raises(ValueError, match=r"mixed_skd .*what 'mixed' ran before.*mixed_on_policy"):
        lookup("mixed")


def test_the_methods_with_a_top_k_take_a_new_one_for_target_acceptance():
    assert {n for n, m in METHODS.items() if m.steers_k} == {"skd", "mixed_skd"}
    skd = METHODS["skd"](RunConfig(top_k=25))
    skd.set_top_k(3)
    assert skd.top_k == 3
    mixed = METHODS["mixed_skd"](RunConfig(method="mixed_skd", mixed_lambda=0.0, top_k=25))
    mixed.set_top_k(9)  # what it routes to SKD verifies under the new K
    assert mixed.route(np.random.default_rng(0)).top_k == 9
    with pytest.raises(ValueError, match="no top-K"):
        METHODS["sft"](RunConfig()).set_top_k(3)
    with pytest.raises(ValueError, match="top_k"):
        RunConfig(top_k=0, target_acceptance=0.9)
