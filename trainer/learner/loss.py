"""The student's per-token training loss at response positions, as one `nn.Module`.

One module, from token ids to per-token losses, because it is the unit FSDP shards and DDP wraps: its
forward runs the decoder, picks the hidden states of the response positions and turns them into losses.
The lm head and log-softmax over the vocabulary (49k-152k) are the memory peak of KD: [tokens, vocab] fp32
logits, several GB at 4k tokens. With `chunk_tokens` they are computed a chunk at a time under activation
checkpointing, so only one chunk's logits exist at once, in forward and in backward (recomputed there).
The gradients are the unchunked ones (only the order of a sum changes).

`collate` turns samples into the module's tensors; KD rows (teacher top-k targets) and SFT rows
(cross-entropy on their own tokens) may share a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from trainer.config import LossKind
from trainer.learner.divergences import sparse_kd_from_logprobs
from trainer.records import Sample


@dataclass
class Batch:
    """Right-padded sequences and, per response token (row), where it is and what it is trained on."""

    ids: torch.Tensor  # [B, W]
    mask: torch.Tensor  # [B, W]
    rows: torch.Tensor  # [T] sequence of each response token
    cols: torch.Tensor  # [T] position whose hidden state predicts it
    sft: torch.Tensor  # [T] bool: cross-entropy on `tokens` instead of KD
    tokens: torch.Tensor  # [T] the response tokens
    topk_ids: torch.Tensor  # [T, k] teacher targets (-1 pads)
    topk_logprobs: torch.Tensor  # [T, k]

    @property
    def num_tokens(self) -> int:
        return int(self.rows.numel())

    def to(self, device: torch.device) -> Batch:
        return Batch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def collate(samples: list[Sample], pad_id: int) -> Batch:
    """Samples -> one `Batch` (samples without response tokens still take part in the forward pass)."""
    seqs = [s.prompt_ids + s.response_ids for s in samples] or [[pad_id]]
    width = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    rows, cols, sft, tokens, topk_ids, topk_lps = [], [], [], [], [], []
    k = max((len(r) for s in samples for r in s.teacher_topk_ids), default=1)
    for b, x in enumerate(seqs):
        ids[b, : len(x)] = torch.tensor(x)
        mask[b, : len(x)] = 1
    for b, s in enumerate(samples):
        n = len(s.response_ids)
        start = len(s.prompt_ids) - 1  # the position whose logits predict the first response token
        rows += [b] * n
        cols += range(start, start + n)
        sft += [s.kind == "sft"] * n
        tokens += s.response_ids
        if s.kind == "sft":
            topk_ids += [[-1] * k] * n
            topk_lps += [[0.0] * k] * n
        else:
            topk_ids += [r + [-1] * (k - len(r)) for r in s.teacher_topk_ids]
            topk_lps += [r + [0.0] * (k - len(r)) for r in s.teacher_topk_logprobs]
    return Batch(
        ids,
        mask,
        torch.tensor(rows, dtype=torch.long),
        torch.tensor(cols, dtype=torch.long),
        torch.tensor(sft, dtype=torch.bool),
        torch.tensor(tokens, dtype=torch.long),
        torch.tensor(topk_ids, dtype=torch.long).reshape(-1, k),
        torch.tensor(topk_lps, dtype=torch.float32).reshape(-1, k),
    )


def _chunk_losses(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    sft: torch.Tensor,
    tokens: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_lps: torch.Tensor,
    kind: LossKind,
    beta: float,
) -> torch.Tensor:
    logprobs = torch.log_softmax(head(hidden).float(), dim=-1)
    kd = sparse_kd_from_logprobs(logprobs, topk_ids, topk_lps, kind, beta)
    if not bool(sft.any()):
        return kd
    nll = -logprobs.gather(-1, tokens[:, None]).squeeze(-1)
    return torch.where(sft, nll, kd)


class ResponseLoss(torch.nn.Module):
    """causal LM + batch -> per-token losses [T] (KD divergence or cross-entropy), in row order."""

    def __init__(self, lm: torch.nn.Module, chunk_tokens: int = 0, beta: float = 0.5):
        super().__init__()
        self.lm, self.chunk_tokens, self.beta = lm, chunk_tokens, beta

    def forward(self, batch: Batch, kind: LossKind = "forward_kl") -> torch.Tensor:
        hidden = self.lm.get_decoder()(input_ids=batch.ids, attention_mask=batch.mask).last_hidden_state
        picked = hidden[batch.rows, batch.cols]
        head = self.lm.get_output_embeddings()
        targets = (batch.sft, batch.tokens, batch.topk_ids, batch.topk_logprobs)
        size = self.chunk_tokens
        if not size or picked.shape[0] <= size:
            return _chunk_losses(head, picked, *targets, kind, self.beta)
        out = []
        for i in range(0, picked.shape[0], size):
            part = (picked[i : i + size], *(t[i : i + size] for t in targets))
            out.append(checkpoint(_chunk_losses, head, *part, kind, self.beta, use_reentrant=False))
        return torch.cat(out)
