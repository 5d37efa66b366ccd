"""Independent dense reference: the teacher in transformers fp32, full-vocabulary log-softmax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

TOL = 1e-4  # vLLM fp32 vs transformers fp32 log-probs agree to ~3e-5 on this CPU


class DenseTeacher:
    def __init__(self, path: Path):
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(str(path), torch_dtype=torch.float32).eval()
        self.vocab_size = self.model.config.vocab_size

    @torch.no_grad()
    def logprobs(self, ids: list[int]) -> np.ndarray:
        """[len(ids), vocab]: row i is log p(. | ids[: i + 1])."""
        logits = self.model(torch.tensor([ids])).logits[0].float()
        return torch.log_softmax(logits, -1).numpy()

    def row(self, ids: list[int], position: int) -> np.ndarray:
        """Distribution of token `position` given the tokens before it."""
        return self.logprobs(ids[:position])[-1]


def strict_rank(row: np.ndarray, token: int) -> int:
    """Number of tokens strictly more probable than `token`."""
    return int((row > row[token]).sum())


def near_boundary(row: np.ndarray, token: int, k: int, tol: float = 1e-4) -> bool:
    """True where fp32 noise could flip the top-k decision (another token within tol straddles it)."""
    if k <= 0 or k >= row.size:
        return False
    fewest_above = int((row > row[token] + tol).sum())
    most_above = int((row > row[token] - tol).sum()) - 1
    return (fewest_above < k) != (most_above < k)


def sampling_distribution(row: np.ndarray, temperature: float, top_p: float) -> np.ndarray:
    """softmax(logprobs / T) cut to the smallest top set whose mass reaches top_p (the nucleus)."""
    z = row / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    cum = np.cumsum(p[order])
    keep = order[: int(np.searchsorted(cum, top_p)) + 1]
    q = np.zeros_like(p)
    q[keep] = p[keep]
    return q / q.sum()
