"""The SKD rule as pure functions: acceptance, chunking, and exactness of the replacement sampler."""

from __future__ import annotations

import numpy as np
import pytest

from shared.skd import ReplacementPlan, accepted_length, in_top_k, plan_replacement
from tests.reference import sampling_distribution


def test_in_top_k_boundaries_and_ties():
    top = [-0.1, -1.0, -2.0, -2.0, -3.0]  # descending; ranks 3 and 4 tie
    assert in_top_k(-2.0, top, rank=4, k=3, vocab_size=100)  # tied with the 3rd value: accepted
    assert not in_top_k(-2.0001, top, rank=5, k=3, vocab_size=100)
    assert in_top_k(-0.1, top, rank=1, k=1, vocab_size=100)
    assert not in_top_k(-0.1, top, rank=1, k=0, vocab_size=100)  # K = 0 rejects everything
    assert in_top_k(-50.0, top, rank=99, k=100, vocab_size=100)  # K >= vocab accepts everything
    assert in_top_k(-50.0, top, rank=7, k=7, vocab_size=100)  # K beyond the list: engine rank decides
    assert not in_top_k(-50.0, top, rank=8, k=7, vocab_size=100)


def test_accepted_length_stops_at_first_rejection():
    assert accepted_length([]) == 0
    assert accepted_length([True, True, True]) == 3
    assert accepted_length([True, False, True]) == 1
    assert accepted_length([False, True]) == 0


def _topk(row: np.ndarray, m: int):
    order = np.argsort(-row, kind="stable")[:m]
    return order.tolist(), row[order].tolist()


def _implied_distribution(sampler, row: np.ndarray, m: int, temperature: float, top_p: float, n: int = 8000):
    """The distribution a planner produces, integrating over a fine grid of u (engine draws are exact)."""
    ids, lps = _topk(row, m)
    out = np.zeros_like(row)
    exact = sampling_distribution(row, temperature, top_p)
    for u in (np.arange(n) + 0.5) / n:
        plan = sampler(ids, lps, temperature, top_p, float(u), row.size)
        if not plan.needs_engine:
            out[plan.token_id] += 1.0 / n
        elif plan.exclude_ids:  # engine samples at T=1 from the tokens not excluded
            p = np.exp(row)
            p[list(plan.exclude_ids)] = 0.0
            out += p / p.sum() / n
        else:
            out += exact / n
    return out, exact


def _rows(vocab: int = 300):
    rng = np.random.default_rng(0)
    for scale in (0.5, 3.0, 8.0):  # flat, medium and peaked teachers
        logits = rng.normal(size=vocab) * scale
        yield logits - np.logaddexp.reduce(logits)


@pytest.mark.parametrize(
    "temperature,top_p", [(1.0, 1.0), (0.5, 1.0), (1.5, 1.0), (1.0, 0.9), (0.2, 0.5), (2.0, 0.7)]
)
def test_replacement_sampler_is_exact(temperature, top_p):
    for row in _rows():
        got, exact = _implied_distribution(plan_replacement, row, 25, temperature, top_p)
        assert np.abs(got - exact).max() < 5e-4, (temperature, top_p)


def test_replacement_sampler_check_catches_a_truncating_sampler():
    """The exactness check has power: sampling from the renormalised top-M alone is caught."""

    def top_m_only(ids, lps, temperature, top_p, u, vocab):
        p = np.exp(np.array(lps) / temperature)
        return ReplacementPlan(token_id=ids[int(np.searchsorted(np.cumsum(p / p.sum()), u))])

    row = next(iter(_rows()))  # flat: much mass outside the top 25
    got, exact = _implied_distribution(top_m_only, row, 25, 1.0, 1.0)
    assert np.abs(got - exact).max() > 1e-2


def test_greedy_and_local_paths():
    row = list(_rows())[2]
    ids, lps = _topk(row, 25)
    assert plan_replacement(ids, lps, 0.0, 1.0, 0.99, row.size).token_id == ids[0]
    # a peaked teacher at the paper's settings (T=0.2, top_p=0.5) never needs the engine
    assert not plan_replacement(ids, lps, 0.2, 0.5, 0.3, row.size).needs_engine
