"""The learner: the student in transformers, its optimiser, and the loss over response positions.

A batch of samples becomes right-padded forward passes (`trainer.learner.loss`); KD samples use the
sparse top-k divergence against the teacher's targets, SFT samples cross-entropy on their tokens; the loss is
the mean over all response tokens of the optimiser step (gradient accumulation divides by the step's token
count, summed over every worker). One `LocalLearner` is one worker: the whole learner when
`num_learner_workers == 1`, else one rank of `trainer.learner.group.LearnerGroup`, which calls the same
methods on every rank (the collectives of FSDP/DDP need all of them). How the student is loaded, adapted and
wrapped is `trainer.learner.model`; how its weights travel, `trainer.weights.buckets`.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, get_scheduler

from trainer.config import LearnerConfig, LossKind, RunConfig
from trainer.learner.loss import ResponseLoss, collate
from trainer.learner.model import ADAPTER_DIR, check_dtype_supported, load_student, make_optimizer, wrap
from trainer.outputs.checkpoints import STATE_FILE, checkpoint_dir
from trainer.records import Sample
from trainer.staging import staged_dir
from trainer.weights.buckets import adapter_bucket, buckets, full_tensors, lora_scalings, merged


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def micro_batches(batch: list[Sample], size: int) -> list[list[Sample]]:
    return [batch[i : i + size] for i in range(0, len(batch), size)]


class LocalLearner:
    """The learner in this process (a `trainer.learner.interface.Learner`), or one rank of a group."""

    def __init__(
        self,
        cfg: RunConfig,
        model_path: str | Path,
        checkpoint: Path | None = None,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | None = None,
        sharded: bool | None = None,
    ):
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        self.device = device or resolve_device(cfg.trainer_device)
        mine = cfg.part(LearnerConfig)  # what the model, its wrapping and its optimizer are built from
        check_dtype_supported(mine, self.device)
        if cfg.trainer_threads:
            torch.set_num_threads(cfg.trainer_threads)
        torch.manual_seed(cfg.seed)
        # A LoRA checkpoint holds the adapter (the base is the frozen student); otherwise the whole model.
        lora_resume = checkpoint is not None and cfg.lora_rank > 0
        weights = model_path if cfg.lora_rank or checkpoint is None else checkpoint
        lm = load_student(mine, weights, checkpoint / ADAPTER_DIR if lora_resume else None)
        self.lora_scalings = lora_scalings(lm)
        self.loss_module = ResponseLoss(lm, cfg.loss_chunk_tokens, cfg.jsd_beta)
        self.model = wrap(self.loss_module, mine, self.device, world_size, sharded)
        self.optimizer = make_optimizer(mine, self.model)
        self.scheduler = get_scheduler(
            cfg.lr_schedule if cfg.lr_schedule != "constant" else "constant_with_warmup",
            self.optimizer,
            num_warmup_steps=cfg.warmup_steps,
            num_training_steps=cfg.steps,
        )
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint or model_path)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.step = 0

    @property
    def lm(self) -> torch.nn.Module:
        """The causal LM being trained (a peft model under LoRA)."""
        return self.loss_module.lm

    # --- loss ---------------------------------------------------------------------------------------

    def _autocast(self):
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.cfg.learner_dtype == "bf16")

    def token_losses(self, samples: list[Sample], kind: LossKind | None = None) -> torch.Tensor:
        """Per-token loss [total response tokens] in sample order (`kind` overrides the KD divergence)."""
        batch = collate(samples, self.pad_id).to(self.device)
        with self._autocast():
            return self.model(batch, kind or self.cfg.loss)

    def _sync_grads(self, now: bool):
        """Gradient accumulation: reduce gradients across workers on the step's last micro-batch only."""
        if self.world_size == 1:
            return contextlib.nullcontext()
        if hasattr(self.model, "no_sync"):  # DDP
            return contextlib.nullcontext() if now else self.model.no_sync()
        self.model.set_requires_gradient_sync(now)  # FSDP2
        return contextlib.nullcontext()

    def _sum(self, value: float) -> float:
        """The sum of `value` over all workers."""
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return float(t.item())

    def train_step(self, batch: list[Sample]) -> dict[str, float]:
        """One optimiser step over the batch, in micro-batches of `batch_size` (gradient accumulation)."""
        total_tokens = sum(len(s.response_ids) for s in batch)
        return self.train_shard(micro_batches(batch, self.cfg.batch_size), total_tokens)

    def train_shard(self, shard: list[list[Sample]], total_tokens: int) -> dict[str, float]:
        """This worker's micro-batches of one optimiser step; `total_tokens`: the step's, all workers."""
        if total_tokens == 0:
            raise ValueError("a training step needs at least one response token")
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for i, mb in enumerate(shard):
            with self._sync_grads(i == len(shard) - 1):
                losses = self.token_losses(mb)
                # DDP and FSDP average gradients over workers; the loss is a sum over all their tokens
                (losses.sum() * self.world_size / total_tokens).backward()
            loss_sum += float(losses.detach().sum())
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        if hasattr(grad_norm, "full_tensor"):  # FSDP: a DTensor
            grad_norm = grad_norm.full_tensor()
        loss_sum = self._sum(loss_sum)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"non-finite loss at step {self.step}")
        return {
            "loss": loss_sum / total_tokens,
            "grad_norm": float(grad_norm),
            "lr": self.scheduler.get_last_lr()[0],
            "tokens": total_tokens,
        }

    @torch.no_grad()
    def kl_sums(self, samples: list[Sample]) -> tuple[float, int]:
        """Sum and count of per-token forward KL(teacher || student) over all workers' samples."""
        self.model.eval()
        try:
            with torch.no_grad():  # evaluation: no graph to keep (it held every activation of the set)
                losses = self.token_losses(samples, kind="forward_kl")
            return self._sum(float(losses.sum())), int(self._sum(losses.numel()))
        finally:
            self.model.train()

    def kl_to_teacher(self, samples: list[Sample]) -> float:
        """Mean per-token forward KL(teacher || student) over the samples' responses (evaluation)."""
        total, count = self.kl_sums(samples)
        return total / count if count else float("nan")

    # --- weights out --------------------------------------------------------------------------------

    def weight_buckets(self, dtype: torch.dtype) -> Iterator[dict]:
        """The weights in the engine's dtype as packed buckets (trainer.weights.buckets), on rank 0 (the
        other ranks take part in gathering FSDP shards and yield nothing). Under LoRA only the modules
        adapters change: the engines' other weights are the frozen base they started from."""
        if self.cfg.lora_transport == "adapter":
            bucket = adapter_bucket(self.lm, full_tensors(self.loss_module), dtype)  # every rank gathers
            yield from [bucket] if self.rank == 0 else []
            return
        named = merged(
            full_tensors(self.loss_module), self.lora_scalings, only_changed=bool(self.lora_scalings)
        )
        if getattr(self.lm.config, "tie_word_embeddings", False):  # the engines load it from embed_tokens
            named = ((n, t) for n, t in named if n != "lm_head.weight")
        if self.rank != 0:
            for _ in named:
                pass
            return
        yield from buckets(named, dtype, self.cfg.weight_bucket_mb * 2**20, partial=bool(self.lora_scalings))

    def export_weights(self, dtype: torch.dtype) -> list[dict]:
        return list(self.weight_buckets(dtype))

    def shutdown(self) -> None:
        pass

    # --- checkpoints --------------------------------------------------------------------------------

    def _optimizer_state(self) -> dict:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        full = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(self.model, self.optimizer, options=full)

    def save(self, directory: Path, extra: dict) -> Path:
        """An HF model dir loadable by vLLM/transformers as is (LoRA merged in; the adapter in `adapter/`),
        plus optimiser/trainer state. Every rank calls it (shards are gathered); rank 0 writes, to a temporary
        dir renamed at the end, so a crash never leaves a half-written checkpoint behind."""
        final = checkpoint_dir(directory, self.step)
        full = {name: t.detach().cpu() for name, t in full_tensors(self.loss_module)}
        optimizer = self._optimizer_state()
        if self.rank != 0:
            return final
        with staged_dir(final) as staging:
            base = self.lm.get_base_model() if self.lora_scalings else self.lm
            hf = dict(merged(full.items(), self.lora_scalings))
            base.save_pretrained(staging, state_dict=hf, safe_serialization=True)
            self.tokenizer.save_pretrained(staging)
            if self.lora_scalings:
                self._save_adapter(staging / ADAPTER_DIR, full)
            state = {
                "step": self.step,
                "optimizer": optimizer,
                "scheduler": self.scheduler.state_dict(),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(),
                    "python": random.getstate(),
                },
                **extra,
            }
            torch.save(state, staging / STATE_FILE)  # last: what makes the checkpoint complete
        return final

    def _save_adapter(self, path: Path, full: dict[str, torch.Tensor]) -> None:
        """The peft adapter as `PeftModel.save_pretrained` writes it (loadable by peft and vLLM's LoRA)."""
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        path.mkdir(parents=True)
        peft_sd = {k.removeprefix("lm."): v for k, v in full.items()}
        adapter = get_peft_model_state_dict(self.lm, state_dict=peft_sd)
        save_file({k: v.contiguous() for k, v in adapter.items()}, str(path / "adapter_model.safetensors"))
        self.lm.peft_config["default"].save_pretrained(str(path))

    def load_state(self, checkpoint: Path) -> dict:
        """Optimiser, scheduler, step and RNG from a checkpoint (the weights were loaded in __init__)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        state = torch.load(checkpoint / STATE_FILE, weights_only=False)
        full = StateDictOptions(full_state_dict=True)
        set_optimizer_state_dict(
            self.model, self.optimizer, optim_state_dict=state["optimizer"], options=full
        )
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        return {k: v for k, v in state.items() if k != "optimizer"}
