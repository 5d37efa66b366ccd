"""The trainable student: loaded, adapted (LoRA), checkpointed, wrapped for distribution, and its optimizer.

Each memory saving is one setting (`RunConfig`), applied here in the order the libraries need:
- `learner_dtype=bf16`: autocast to bf16 in forward/backward; trainable weights and AdamW state stay fp32
  (their updates are below bf16's resolution), frozen LoRA base weights are stored in bf16.
- `lora_rank > 0`: peft adapters on `lora_target_modules`; only they train (no gradients or optimizer state
  for the base).
- `gradient_checkpointing`: transformers recomputes each decoder layer in backward.
- `num_learner_workers > 1`: FSDP2 `fully_shard` per decoder layer and at the root (parameters, gradients and
  optimizer state sharded; NCCL on GPUs, gloo on CPU) or DDP (replicated).
- `optimizer=adamw_8bit`: bitsandbytes' AdamW with 8-bit moments (it has CPU and CUDA kernels).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from trainer.config import LearnerConfig
from trainer.learner.loss import ResponseLoss

ADAPTER_DIR = "adapter"  # a checkpoint's peft adapter, beside the merged HF model


def has_native_bf16(device: torch.device) -> bool:
    """bf16 arithmetic in hardware on the device (CUDA: Ampere+; CPU: AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return True


def check_dtype_supported(cfg: LearnerConfig, device: torch.device) -> None:
    """`learner_dtype=bf16` needs bf16 arithmetic on the device."""
    if cfg.learner_dtype == "bf16" and not has_native_bf16(device):
        raise ValueError(f"learner_dtype=bf16: device {device} has no native bf16 arithmetic; use fp32")


def load_student(cfg: LearnerConfig, model_path: str | Path, adapter: Path | None = None) -> torch.nn.Module:
    """The causal LM (with peft adapters when `lora_rank`), on the CPU, in training mode."""
    base_dtype = torch.bfloat16 if cfg.lora_rank and cfg.learner_dtype == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=base_dtype)
    if cfg.gradient_checkpointing:
        model.config.use_cache = False
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora_rank:
        from peft import LoraConfig, PeftModel, get_peft_model

        if adapter is not None:
            model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
        else:
            targets = cfg.lora_target_modules
            lora = LoraConfig(
                r=cfg.lora_rank,
                lora_alpha=cfg.lora_alpha,
                target_modules=targets[0] if targets == ["all-linear"] else targets,
                lora_dropout=0.0,
            )
            model = get_peft_model(model, lora)  # adapters are fp32 (peft's autocast_adapter_dtype)
    model.train()
    return model


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder().layers


def wrap(
    module: ResponseLoss,
    cfg: LearnerConfig,
    device: torch.device,
    world_size: int,
    sharded: bool | None = None,
) -> torch.nn.Module:
    """The module to run forward/backward on: itself (1 worker), FSDP2-sharded or DDP-wrapped. `sharded`
    (default: more than one worker) wraps a single rank too, in a process group of one (scripts/gpu_check.sh
    runs the FSDP2 path on one GPU that way)."""
    if not (world_size > 1 if sharded is None else sharded):
        return module.to(device)
    if cfg.learner_backend == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module.to(device), device_ids=ids)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    for layer in decoder_layers(module.lm):
        fully_shard(layer, mesh=mesh)
    fully_shard(module, mesh=mesh)  # the root: embeddings, final norm and (tied) head
    return module


def make_optimizer(cfg: LearnerConfig, module: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW over the trainable weights, no weight decay on biases and norms."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw_8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ValueError("optimizer=adamw_8bit needs bitsandbytes: pip install 'skd[lowmem]'") from None
        return bnb.optim.AdamW8bit(groups, lr=cfg.lr, betas=(0.9, 0.95))
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))
