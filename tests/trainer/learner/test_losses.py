"""The sparse top-k distillation losses against dense full-vocabulary references (fp32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.reference import assert_equal_but_for_rounding
from trainer.learner.divergences import sparse_kd_loss, token_nll

V, N = 50, 16
EPS = torch.finfo(torch.float32).eps


def _setup(seed: int = 0, k: int = 8):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.log_softmax(torch.randn(N, V, generator=g) * 3, -1)
    student_logits = torch.randn(N, V, generator=g) * 2
    top_lp, top_ids = teacher.topk(k, dim=-1)
    return teacher, student_logits, top_ids, top_lp


def _dense(p_log: torch.Tensor, q_log: torch.Tensor, kind: str, beta: float = 0.5) -> torch.Tensor:
    """Independent reference in numpy float64 over whatever buckets the inputs define."""
    p, q = np.exp(p_log.double().numpy()), np.exp(q_log.double().numpy())

    def kl(a, b):
        return np.where(a > 0, a * (np.log(np.where(a > 0, a, 1)) - np.log(b)), 0).sum(-1)

    if kind == "forward_kl":
        return torch.tensor(kl(p, q))
    if kind == "reverse_kl":
        return torch.tensor(kl(q, p))
    m = beta * p + (1 - beta) * q
    return torch.tensor(beta * kl(p, m) + (1 - beta) * kl(q, m))


def _bucket(logprobs: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    top = logprobs.gather(-1, ids).exp()
    return torch.cat([top, (1 - top.sum(-1, keepdim=True)).clamp(min=1e-30)], -1).log()


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_full_vocabulary_targets_equal_the_dense_divergence(kind):
    teacher, student_logits, _, _ = _setup()
    ids = torch.arange(V).repeat(N, 1)
    got = sparse_kd_loss(student_logits, ids, teacher, kind, beta=0.3)
    ref = _dense(teacher, torch.log_softmax(student_logits, -1), kind, beta=0.3)
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_top_k_targets_equal_the_bucketed_dense_divergence(kind):
    teacher, student_logits, ids, top_lp = _setup(k=8)
    got = sparse_kd_loss(student_logits, ids, top_lp, kind)
    student = torch.log_softmax(student_logits, -1)
    ref = _dense(_bucket(teacher, ids), _bucket(student, ids), kind)
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-4)
    if kind == "forward_kl":  # coarsening can only lose information: a lower bound on the full KL
        full = _dense(teacher, student, kind)
        assert (got.double() <= full * (1 + 64 * EPS)).all()  # up to fp32 rounding


def test_gradient_matches_dense_forward_kl():
    teacher, student_logits, _, _ = _setup(1)
    ids = torch.arange(V).repeat(N, 1)
    a = student_logits.clone().requires_grad_()
    sparse_kd_loss(a, ids, teacher).sum().backward()
    b = student_logits.clone().requires_grad_()
    torch.nn.functional.kl_div(torch.log_softmax(b, -1), teacher, log_target=True, reduction="sum").backward()
    assert_equal_but_for_rounding(a.grad, b.grad)  # the same gradient, other formulas


def test_loss_is_zero_when_student_equals_teacher_and_padding_is_ignored():
    teacher, _, ids, top_lp = _setup(k=6)
    loss = sparse_kd_loss(teacher.clone(), ids, top_lp)
    assert loss.abs().max() < 64 * EPS  # rounding of terms that sum to the mass, 1
    padded_ids = torch.cat([ids, torch.full((N, 3), -1)], -1)
    padded_lp = torch.cat([top_lp, torch.zeros(N, 3)], -1)
    _, student_logits, _, _ = _setup(2)
    assert_equal_but_for_rounding(  # exact zeros added, but sums over 9 rather than 6 vectorise otherwise
        sparse_kd_loss(student_logits, padded_ids, padded_lp), sparse_kd_loss(student_logits, ids, top_lp)
    )


def test_token_nll_matches_log_softmax():
    _, student_logits, _, _ = _setup(3)
    tokens = torch.randint(V, (N,))
    ref = -torch.log_softmax(student_logits, -1)[torch.arange(N), tokens]
    torch.testing.assert_close(token_nll(student_logits, tokens), ref)


def test_bad_loss_arguments():
    _, student_logits, ids, top_lp = _setup()
    with pytest.raises(ValueError):
        sparse_kd_loss(student_logits, ids, top_lp, "jsd", beta=1.0)
    with pytest.raises(ValueError):
        sparse_kd_loss(student_logits, ids, top_lp, "nope")  # type: ignore[arg-type]
