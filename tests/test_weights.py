"""Weight transfer format: exact round trip, bfloat16 carried bit for bit, zero-copy on arrival."""

from __future__ import annotations

import numpy as np
import torch

from trainer.weights import pack, unpack


def test_round_trip_is_exact_in_the_engine_dtype():
    sd = {"a": torch.randn(4, 3), "b": torch.randn(7)}
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        packed = pack(sd, dtype)
        assert all(isinstance(a, np.ndarray) for a in packed["arrays"].values())
        out = unpack(packed)
        for k, v in sd.items():
            assert out[k].dtype == dtype and torch.equal(out[k], v.to(dtype))


def test_unpack_views_the_arrays_without_copying():
    packed = pack({"w": torch.randn(16, 16)}, torch.bfloat16)
    arr = packed["arrays"]["w"]
    arr.setflags(write=False)  # as in the Ray object store
    t = unpack(packed)["w"]
    assert t.data_ptr() == arr.__array_interface__["data"][0]
