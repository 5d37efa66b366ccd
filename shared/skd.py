"""The SKD rule (Xu et al., ICLR 2025, Algorithm 1), as pure functions over teacher log-probabilities.

- `in_top_k`: is a student token among the teacher's K most probable (ties at rank K accepted)?
- `accepted_length`: speculative chunking: the draft is kept up to its first rejected token.
- `plan_replacement`: sample the teacher's replacement token *exactly* from its top-M log-probs when
  that is possible, or say which engine sample is needed (the whole vocabulary is only in the engine).

K = 0 rejects everything (teacher sampling); K >= vocabulary accepts everything (on-policy KD).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def in_top_k(
    token_logprob: float, topk_logprobs: Sequence[float], rank: int, k: int, vocab_size: int
) -> bool:
    """True iff fewer than `k` tokens are strictly more probable than this one.

    `topk_logprobs` are the teacher's top log-probs in descending order and `rank` the engine's rank of
    the token (1 + number of tokens at least as probable); the exact top-k comparison is used whenever
    the k-th value is known, the rank otherwise.
    """
    if k <= 0:
        return False
    if k >= vocab_size:
        return True
    if k <= len(topk_logprobs):
        return token_logprob >= topk_logprobs[k - 1]
    return rank <= k


def accepted_length(accepted: Sequence[bool]) -> int:
    """Number of draft tokens kept: everything before the first rejection."""
    for j, ok in enumerate(accepted):
        if not ok:
            return j
    return len(accepted)


@dataclass(frozen=True)
class ReplacementPlan:
    """Either a token sampled exactly from the top-M, or a request for an engine sample.

    `exclude_ids`: the engine must sample from the distribution restricted to the other tokens (the
    top-M's share of the probability was already drawn here).
    """

    token_id: int | None = None
    exclude_ids: tuple[int, ...] = ()

    @property
    def needs_engine(self) -> bool:
        return self.token_id is None


def _pick(ids: Sequence[int], weights: Sequence[float], u: float) -> int:
    """Inverse-CDF draw: the first id whose cumulative weight exceeds u * total."""
    target = u * math.fsum(weights)
    acc = 0.0
    for token_id, w in zip(ids, weights):
        acc += w
        if target < acc:
            return token_id
    return ids[len(weights) - 1]


def plan_replacement(
    topk_ids: Sequence[int],
    topk_logprobs: Sequence[float],
    temperature: float,
    top_p: float,
    u: float,
    vocab_size: int,
) -> ReplacementPlan:
    """Sample from softmax(logits / temperature) cut to the top_p nucleus, given only the top-M log-probs.

    Exact, not approximate: the tokens outside the top-M carry a known total mass (1 - sum of top-M
    probabilities), which bounds their tempered mass; when that bound pins the nucleus inside the top-M,
    or when temperature = top_p = 1 (where the top-M's share is known exactly), the draw is made here
    with the uniform `u`. Otherwise the engine samples (over the whole vocabulary).
    """
    if not topk_ids:
        return ReplacementPlan()
    if temperature == 0.0:
        return ReplacementPlan(token_id=topk_ids[0])
    probs = [math.exp(lp) for lp in topk_logprobs]
    tail_mass = max(0.0, 1.0 - math.fsum(probs))
    n_tail = vocab_size - len(topk_ids)
    if n_tail <= 0:
        tail_mass = 0.0

    if top_p >= 1.0:
        if temperature != 1.0 and tail_mass > 0.0:
            return ReplacementPlan()  # the tempered normaliser needs the whole vocabulary
        if temperature == 1.0:
            top_share = 1.0 - tail_mass
            if tail_mass > 0.0 and u >= top_share:
                return ReplacementPlan(exclude_ids=tuple(topk_ids))
            return ReplacementPlan(token_id=_pick(topk_ids, probs, u / top_share if top_share else 0.0))
        weights = [math.exp((lp - topk_logprobs[0]) / temperature) for lp in topk_logprobs]
        return ReplacementPlan(token_id=_pick(topk_ids, weights, u))

    # Nucleus: relative tempered weights w_i = (p_i / p_1)^(1/T), bounds on the tail's share of them.
    inv_t = 1.0 / temperature
    lp1, lpm = topk_logprobs[0], topk_logprobs[-1]
    weights = [math.exp((lp - lp1) * inv_t) for lp in topk_logprobs]
    if tail_mass <= 0.0:
        tail_lo = tail_hi = 0.0
    elif inv_t >= 1.0:  # every tail p <= p_M, so p^(1/T) <= p * p_M^(1/T - 1)
        tail_lo = 0.0
        tail_hi = math.exp(math.log(tail_mass) + lpm * (inv_t - 1.0) - lp1 * inv_t)
    else:  # concave: the bound flips, the maximum is the uniform tail
        tail_lo = math.exp(math.log(tail_mass) + lpm * (inv_t - 1.0) - lp1 * inv_t)
        tail_hi = math.exp(math.log(n_tail) + (math.log(tail_mass / n_tail) - lp1) * inv_t)
    total = math.fsum(weights)
    z_lo, z_hi = total + tail_lo, total + tail_hi
    cum = 0.0
    for m, w in enumerate(weights):
        before = cum
        cum += w
        if cum >= top_p * z_hi:  # nucleus ends at m for the largest normaliser ...
            if m > 0 and before >= top_p * z_lo:  # ... but may end earlier for a smaller one
                return ReplacementPlan()
            return ReplacementPlan(token_id=_pick(topk_ids[: m + 1], weights[: m + 1], u))
    return ReplacementPlan()
