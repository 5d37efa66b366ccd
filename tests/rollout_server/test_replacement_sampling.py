"""The replacement token's distribution over many seeds matches the dense teacher's sampling distribution.

Each case draws thousands of replacements in one request (one seed, per-item streams) and runs a
chi-square test against the exact distribution; a negative control shows the test rejects a wrong one.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tests.reference import sampling_distribution

N = 3000


def _chi2_pvalue(counts: np.ndarray, q: np.ndarray) -> float:
    """Chi-square goodness of fit, bins with expected count < 5 pooled into one."""
    if counts[q == 0].sum() > 0:
        return 0.0  # samples fell where the reference puts no mass
    expected = q * counts.sum()
    big = expected >= 5
    obs, exp = counts[big], expected[big]
    if expected[~big].sum() > 0:
        obs, exp = np.append(obs, counts[~big].sum()), np.append(exp, expected[~big].sum())
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


@pytest.mark.parametrize(
    "temperature,top_p,draft",
    [
        (1.0, 1.0, [5, 6]),  # top-M draw here + exact tail draw by the engine
        (0.7, 0.8, [5, 6]),  # nucleus: local when certified, engine otherwise
        (1.3, 1.0, [5]),  # tempered full vocabulary: engine
        (0.7, 0.8, []),  # empty draft: the engine's own sample
    ],
)
def test_replacement_distribution_matches_teacher(http, hf_teacher, temperature, top_p, draft):
    rng = np.random.default_rng(11)
    ctx = rng.integers(3, hf_teacher.vocab_size, size=45).tolist()
    item = {"context_ids": ctx, "draft_ids": draft}
    body = {"items": [item] * N, "top_k": 0, "temperature": temperature, "top_p": top_p, "seed": 123}
    resp = http.post("/verify", json=body)
    assert resp.status_code == 200, resp.text
    samples = np.array([r["replacement_id"] for r in resp.json()["items"]])
    assert all(r["num_accepted"] == 0 for r in resp.json()["items"])  # K = 0 rejects everything

    row = hf_teacher.row(ctx, len(ctx))
    q = sampling_distribution(row, temperature, top_p)
    counts = np.bincount(samples, minlength=row.size).astype(float)
    assert _chi2_pvalue(counts, q) > 1e-4
    # negative control: the same samples against a plausible wrong sampler are rejected
    wrong = sampling_distribution(row, 1.0, 1.0) if (temperature, top_p) != (1.0, 1.0) else None
    if wrong is None:
        wrong = np.exp(row) * (row >= np.sort(row)[-25])
        wrong /= wrong.sum()
    assert _chi2_pvalue(counts, wrong) < 1e-6
