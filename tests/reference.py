"""Independent dense reference: the teacher in transformers fp32, full-vocabulary log-softmax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainer.learner.model import has_native_bf16

# vLLM's and transformers' fp32 kernels (and two CPUs' kernels) sum in their own orders, so log-probs differ
# by the rounding of the logits, whose scale is the log-probs' (|log p| up to ~16 for the tiny teacher),
# not that of each value (a top token's log p is near 0). 1e-4 is ~50 units of fp32 precision at that scale;
# measured: 3.6e-6 (2.5 units) on an Intel Xeon; batch shape and the prefix cache change nothing there.
TOL = 1e-4

# bf16 arithmetic on this CPU (AVX512-BF16 / AMX); elsewhere (AVX2 only) the learner refuses bf16
NATIVE_BF16 = has_native_bf16(torch.device("cpu"))


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


def assert_equal_but_for_rounding(got: torch.Tensor, want: torch.Tensor, ulps: int = 64, msg=None) -> None:
    """The same sums taken in another order (other chunks, threads, another CPU's kernels) round differently:
    equal within `ulps` units of the dtype's precision, relative to each value and, for values that are
    near-cancelling sums, to the tensor's largest magnitude (they carry their largest terms' rounding)."""
    tol = ulps * torch.finfo(want.dtype).eps
    scale = float(want.abs().max()) if want.numel() else 0.0
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * scale, msg=msg)


@torch.no_grad()
def dense_greedy(
    lm: torch.nn.Module, prompts: list[list[int]], max_tokens: int, eos: int = 2
) -> list[list[int]]:
    """Each prompt's greedy continuation by a transformers model, token by token, as an engine's greedy
    sampling gives it (the EOS token kept, then nothing): a pushed model must be served whole, every token,
    not only the first."""
    out = []
    for prompt in prompts:
        ids = list(prompt)
        for _ in range(max_tokens):
            ids.append(int(lm(torch.tensor([ids])).logits[0, -1].argmax()))
            if ids[-1] == eos:
                break
        out.append(ids[len(prompt) :])
    return out
