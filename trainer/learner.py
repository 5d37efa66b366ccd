"""The learner: the student in transformers, its optimiser, and the loss over response positions.

A batch of samples becomes one right-padded forward pass; logits are computed only at response positions
(the lm head over a 49k vocabulary is a large share of the cost). KD samples use the sparse top-k divergence
against the teacher's targets, SFT samples cross-entropy on their tokens; the loss is the mean over all
response tokens of the optimiser step (gradient accumulation divides by the step's token count).
"""

from __future__ import annotations

import math
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

from trainer.config import RunConfig
from trainer.losses import sparse_kd_loss, token_nll
from trainer.types import LossKind, Sample
from trainer.weights import pack

STATE_FILE = "trainer_state.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Learner:
    def __init__(self, cfg: RunConfig, model_path: str | Path):
        self.cfg = cfg
        self.device = resolve_device(cfg.trainer_device)
        if cfg.trainer_threads:
            torch.set_num_threads(cfg.trainer_threads)
        torch.manual_seed(cfg.seed)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(self.device)
        self.model.train()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
            betas=(0.9, 0.95),
        )
        self.scheduler = get_scheduler(
            cfg.lr_schedule if cfg.lr_schedule != "constant" else "constant_with_warmup",
            self.optimizer,
            num_warmup_steps=cfg.warmup_steps,
            num_training_steps=cfg.steps,
        )
        self.step = 0

    # --- loss ---------------------------------------------------------------------------------------

    def _response_logits(self, samples: list[Sample]) -> torch.Tensor:
        """Student logits [total response tokens, V], row r predicting the r-th response token."""
        seqs = [s.prompt_ids + s.response_ids for s in samples]
        width = max(len(x) for x in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        rows, cols = [], []
        for b, (s, x) in enumerate(zip(samples, seqs)):
            ids[b, : len(x)] = torch.tensor(x)
            mask[b, : len(x)] = 1
            start = len(s.prompt_ids) - 1  # the position whose logits predict the first response token
            rows += [b] * len(s.response_ids)
            cols += range(start, start + len(s.response_ids))
        hidden = self.model.get_decoder()(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
        ).last_hidden_state
        picked = hidden[torch.tensor(rows, device=self.device), torch.tensor(cols, device=self.device)]
        return self.model.get_output_embeddings()(picked)

    def token_losses(self, samples: list[Sample], kind: LossKind | None = None) -> torch.Tensor:
        """Per-token loss [total response tokens] in sample order (`kind` overrides the KD divergence)."""
        logits = self._response_logits(samples)
        out, offset = [], 0
        for s in samples:
            n = len(s.response_ids)
            part = logits[offset : offset + n]
            offset += n
            if s.kind == "sft":
                out.append(token_nll(part, torch.tensor(s.response_ids, device=self.device)))
            else:
                k = max((len(r) for r in s.teacher_topk_ids), default=0)
                ids = torch.tensor([r + [-1] * (k - len(r)) for r in s.teacher_topk_ids], device=self.device)
                lps = torch.tensor(
                    [r + [0.0] * (k - len(r)) for r in s.teacher_topk_logprobs], device=self.device
                )
                out.append(sparse_kd_loss(part, ids, lps, kind or self.cfg.loss, self.cfg.jsd_beta))
        return torch.cat(out) if out else torch.zeros(0, device=self.device)

    def train_step(self, batch: list[Sample]) -> dict[str, float]:
        """One optimiser step over the batch, in micro-batches of `batch_size` (gradient accumulation)."""
        size = self.cfg.batch_size
        micro_batches = [batch[i : i + size] for i in range(0, len(batch), size)]
        total_tokens = sum(len(s.response_ids) for mb in micro_batches for s in mb)
        if total_tokens == 0:
            raise ValueError("a training step needs at least one response token")
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for mb in micro_batches:
            losses = self.token_losses([s for s in mb if s.response_ids])
            (losses.sum() / total_tokens).backward()
            loss_sum += float(losses.detach().sum())
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"non-finite loss at step {self.step}")
        return {
            "loss": loss_sum / total_tokens,
            "grad_norm": grad_norm,
            "lr": self.scheduler.get_last_lr()[0],
            "tokens": total_tokens,
        }

    @torch.no_grad()
    def kl_to_teacher(self, samples: list[Sample]) -> float:
        """Mean per-token forward KL(teacher || student) over the samples' responses (evaluation)."""
        self.model.eval()
        try:
            losses = self.token_losses([s for s in samples if s.response_ids], kind="forward_kl")
            return float(losses.mean()) if losses.numel() else float("nan")
        finally:
            self.model.train()

    # --- weights out --------------------------------------------------------------------------------

    def export_weights(self, dtype: torch.dtype) -> dict:
        """The weights in the engine's dtype, packed for the Ray object store (`trainer.weights`)."""
        return pack(self.model.state_dict(), dtype)

    # --- checkpoints --------------------------------------------------------------------------------

    def save(self, directory: Path, extra: dict) -> Path:
        """An HF model dir loadable by vLLM/transformers as is, plus optimiser/trainer state. Written to a
        temporary dir and renamed, so a crash never leaves a half-written checkpoint behind."""
        final = directory / f"step_{self.step:06d}"
        staging = directory / f".step_{self.step:06d}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        self.model.save_pretrained(staging, safe_serialization=True)
        self.tokenizer.save_pretrained(staging)
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
            **extra,
        }
        torch.save(state, staging / STATE_FILE)
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        return final

    def load_state(self, checkpoint: Path) -> dict:
        """Optimiser, scheduler, step and RNG from a checkpoint (the weights were loaded in __init__)."""
        state = torch.load(checkpoint / STATE_FILE, weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        return state


def latest_checkpoint(directory: Path) -> Path | None:
    found = sorted(p for p in directory.glob("step_*") if (p / STATE_FILE).exists())
    return found[-1] if found else None
