"""How weights travel from the learner to the actors: numpy arrays through the Ray object store.

Ray hands numpy arrays to every reader as zero-copy views of shared memory, while torch tensors are
unpickled (copied) by each actor. bfloat16, which numpy lacks, travels as its raw 16-bit pattern and is
viewed back as bfloat16 on arrival: no conversion, no copy, until the engine loads it.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

_RAW = {torch.bfloat16: np.uint16}


def pack(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict:
    """CPU numpy copies of the weights in the engine's dtype."""
    arrays = {}
    for name, t in state_dict.items():
        t = t.detach().to("cpu", dtype).contiguous()
        arrays[name] = t.view(torch.int16).numpy().view(_RAW[dtype]) if dtype in _RAW else t.numpy()
    return {"dtype": str(dtype).removeprefix("torch."), "arrays": arrays}


def unpack(packed: dict) -> dict[str, torch.Tensor]:
    """Tensors viewing the (read-only, shared) arrays; the engine copies them into its own parameters."""
    dtype = getattr(torch, packed["dtype"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # non-writable arrays: only ever read
        tensors = {k: torch.from_numpy(a) for k, a in packed["arrays"].items()}
    return {k: t.view(dtype) if dtype in _RAW else t for k, t in tensors.items()}
