"""How weights travel from the learner to the actors: numpy buckets through the Ray object store.

The one interface: the learner yields the weights as a stream of packed buckets (`buckets`), the driver puts
each into the object store as it comes (`RolloutGroup.push_weights`), and an actor awaits them (its event
loop keeps running meanwhile) and streams them into its engine in one `reload_weights` pass (`iter_tensors`).
An actor's buckets are views of the object store's shared memory, not copies, so neither side ever holds a
second full copy in process memory, however large the student, and the same path works on one node and
across nodes (the object store moves the buckets).

- Ray hands numpy arrays to every reader as zero-copy views of shared memory, while torch tensors are
  unpickled (copied) by each actor. bfloat16, which numpy lacks, travels as its raw 16-bit pattern.
- FSDP-sharded weights are gathered one tensor at a time (`full_tensors`, a collective on every rank).
- LoRA: the engines run plain HF weights, so adapters are merged into their base weights on the way out
  (`merged`), and only the modules that carry adapters are sent (the base is frozen and the engines
  started from it), with their fused siblings (vLLM loads q/k/v and gate/up as one tensor); such a push
  says so (`partial` in its buckets). Or, with `lora_transport=adapter`, only the adapter travels
  (`adapter_bucket`) into engines running vLLM's LoRA.
- A tied head (`tie_word_embeddings`) is not sent: it is the input embedding, which is.

The same buckets can also travel by broadcast (gloo on CPU, NCCL on GPUs) instead of the object store:
trainer.weights.collective (`weight_transport=collective`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import torch

_RAW = {torch.bfloat16: np.uint16}
FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # loaded as one tensor by vLLM


def _to_numpy(t: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    t = t.detach().to("cpu", dtype).contiguous()
    return t.view(torch.int16).numpy().view(_RAW[dtype]) if dtype in _RAW else t.numpy()


def pack(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict:
    """CPU numpy copies of the weights in the engine's dtype: one bucket."""
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "arrays": {k: _to_numpy(t, dtype) for k, t in state_dict.items()},
    }


def buckets(
    named: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype, bucket_bytes: float, partial: bool = False
) -> Iterator[dict]:
    """Packed buckets of about `bucket_bytes`, made as the tensors arrive. `partial`: the push carries only
    some of the model's weights (the others stay as the engines have them)."""
    arrays, size = {}, 0
    for name, t in named:
        arrays[name] = _to_numpy(t, dtype)
        size += arrays[name].nbytes
        if size >= bucket_bytes:
            yield {"dtype": str(dtype).removeprefix("torch."), "arrays": arrays, "partial": partial}
            arrays, size = {}, 0
    if arrays:
        yield {"dtype": str(dtype).removeprefix("torch."), "arrays": arrays, "partial": partial}


def unpack(packed: dict) -> dict[str, torch.Tensor]:
    """Tensors viewing the (read-only, shared) arrays; the engine copies them into its own parameters."""
    dtype = getattr(torch, packed["dtype"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # non-writable arrays: only ever read
        tensors = {k: torch.from_numpy(a) for k, a in packed["arrays"].items()}
    return {k: t.view(dtype) if dtype in _RAW else t for k, t in tensors.items()}


def iter_tensors(parts: list[dict]) -> Iterator[tuple[str, torch.Tensor]]:
    """An actor's view of a push: (name, tensor) over its buckets (packed dicts, already fetched: an async
    actor awaits object refs rather than blocking its event loop in `ray.get`; or received tensors,
    `tensors`, from the collective transport)."""
    for part in parts:
        yield from (part["tensors"] if "tensors" in part else unpack(part)).items()


def adapter_bucket(
    lm: torch.nn.Module, named: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype
) -> dict:
    """`lora_transport=adapter`: the peft adapter (what `save_pretrained` writes) as one bucket, its config
    beside the arrays; `named` are the full tensors of the training module (only LoRA ones are kept)."""
    from peft import get_peft_model_state_dict

    lora = {k.removeprefix("lm."): t for k, t in named if "lora_" in k}
    tensors = get_peft_model_state_dict(lm, state_dict=lora)
    config = lm.peft_config["default"].to_dict()
    config = {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}
    return {**pack(tensors, dtype), "adapter_config": config}


# --- the learner's side ----------------------------------------------------------------------------------


def full_tensors(module: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, full tensor) for the module's state dict; FSDP shards are gathered one tensor at a time (every
    rank must iterate, in the same order)."""
    from torch.distributed.tensor import DTensor

    for name, t in module.state_dict().items():
        yield name, (t.full_tensor() if isinstance(t, DTensor) else t)


def hf_name(name: str) -> str:
    """A training-side parameter name as the HF model (and vLLM) spells it."""
    for prefix in ("lm.", "base_model.model."):
        name = name.removeprefix(prefix)
    return name.replace(".base_layer.", ".")


def lora_scalings(module: torch.nn.Module) -> dict[str, float]:
    """HF module name -> LoRA scale (alpha / r) for every module carrying an adapter."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return {}
    return {
        hf_name(name + "."): float(m.scaling["default"])
        for name, m in module.named_modules()
        if isinstance(m, LoraLayer) and "default" in m.scaling
    }


def _changed(scalings: dict[str, float]) -> set[str]:
    """Modules to send after the first LoRA push: those with adapters and their fused siblings."""
    out = set()
    for prefix in scalings:
        parent, _, leaf = prefix.rstrip(".").rpartition(".")
        out.add(prefix)
        for group in FUSED:
            if leaf in group:
                out.update(f"{parent}.{g}." for g in group)
    return out


def merged(
    named: Iterable[tuple[str, torch.Tensor]], scalings: dict[str, float], only_changed: bool = False
) -> Iterator[tuple[str, torch.Tensor]]:
    """HF-named weights with LoRA adapters merged (W + scale * B @ A, in fp32); adapters themselves are not
    sent. `only_changed`: just the modules whose weights adapters change (see `_changed`)."""
    keep = _changed(scalings) if only_changed else None
    held: dict[str, torch.Tensor] = {}
    for raw, t in named:
        name = hf_name(raw)
        prefix = name[: name.rfind(".") + 1]
        if ".lora_A." in name:
            held[name.split("lora_A.")[0] + "A"] = t
        elif ".lora_B." in name:
            module = name.split("lora_B.")[0]
            base, a = held.pop(module + "weight"), held.pop(module + "A")
            yield module + "weight", torch.addmm(base.float(), t.float(), a.float(), alpha=scalings[module])
        elif prefix in scalings and name.endswith(".weight"):
            held[name] = t  # until its adapter arrives
        elif keep is None or prefix in keep:
            yield name, t
