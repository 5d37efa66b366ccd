"""Distillation losses over the teacher's sparse top-k targets.

The teacher sends its top-k log-probs per position, not the whole distribution. Each distribution is
coarsened to k + 1 buckets: the teacher's top-k tokens and one "tail" bucket holding the rest of the mass
(teacher: 1 - sum of its top-k probabilities, known exactly because the log-probs are normalised over the
full vocabulary; student: 1 - its probability of those same k tokens). The divergences below are exact
divergences between these bucketed distributions: equal to the full-vocabulary ones when k = vocabulary,
and a lower bound otherwise (data-processing inequality). Dropping the tail instead and renormalising the
top-k would ignore how much mass the student wastes outside the teacher's support.

- forward KL(teacher || student): the paper's default (mode covering)
- reverse KL(student || teacher)
- JSD(beta): beta * KL(T || M) + (1 - beta) * KL(S || M), M = beta * T + (1 - beta) * S
- cross-entropy on given tokens (SFT)
"""

from __future__ import annotations

import math

import torch

from trainer.config import LossKind

_LOG_EPS = -60.0  # log of an empty bucket: finite so 0 * log 0 terms and gradients stay 0, not NaN


def _with_tail(top_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N, k] log-probs (masked entries ignored) -> [N, k + 1] bucket log-probs, the tail last."""
    top = top_logprobs.masked_fill(~mask, float("-inf"))
    tail_mass = -torch.expm1(torch.logsumexp(top, dim=-1))
    tail = torch.log(tail_mass.clamp(min=math.exp(_LOG_EPS)))
    return torch.cat([top.clamp(min=_LOG_EPS), tail[:, None]], dim=-1)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def sparse_kd_loss(student_logits: torch.Tensor, *targets, **options) -> torch.Tensor:
    """`sparse_kd_from_logprobs` given the student's logits [N, V]."""
    return sparse_kd_from_logprobs(torch.log_softmax(student_logits.float(), dim=-1), *targets, **options)


def sparse_kd_from_logprobs(
    student_logprobs: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    kind: LossKind = "forward_kl",
    beta: float = 0.5,
) -> torch.Tensor:
    """Per-position divergence [N] between teacher top-k targets and the student's full distribution.

    student_logprobs [N, V] (log-softmax; computed once by the caller, which may share it with other losses);
    teacher_ids [N, k] (-1 pads); teacher_logprobs [N, k] (log-softmax, temperature 1).
    """
    mask = teacher_ids >= 0
    student_top = student_logprobs.gather(-1, teacher_ids.clamp(min=0))
    log_t = _with_tail(teacher_logprobs.float(), mask)
    log_s = _with_tail(student_top, mask)
    if kind == "forward_kl":
        return _kl(log_t, log_s)
    if kind == "reverse_kl":
        return _kl(log_s, log_t)
    if kind == "jsd":
        if not 0.0 < beta < 1.0:
            raise ValueError(f"jsd beta must be in (0, 1), got {beta}")
        b = torch.tensor(beta)
        log_m = torch.logaddexp(torch.log(b) + log_t, torch.log1p(-b) + log_s)
        return beta * _kl(log_t, log_m) + (1.0 - beta) * _kl(log_s, log_m)
    raise ValueError(f"unknown loss {kind!r}")


def token_nll(student_logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Per-position cross-entropy [N] of the given tokens (SFT on references)."""
    return torch.nn.functional.cross_entropy(student_logits.float(), token_ids, reduction="none")
