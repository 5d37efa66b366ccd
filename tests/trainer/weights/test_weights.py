"""Weight transfer format: exact round trip, bfloat16 carried bit for bit, zero-copy on arrival."""

from __future__ import annotations

import numpy as np
import torch

from trainer.weights.buckets import buckets, iter_tensors, pack, unpack


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


def test_a_push_says_whether_it_is_partial():
    named = [("a", torch.randn(4)), ("b", torch.randn(300))]
    for partial in (False, True):
        out = list(buckets(named, torch.float32, bucket_bytes=16, partial=partial))  # a | b
        assert len(out) == 2 and all(b["partial"] is partial for b in out)
        assert dict(iter_tensors(out)).keys() == {"a", "b"}


def test_a_tied_head_is_loaded_from_the_embedding_sent():
    """What the student engine hands vLLM's reload: the tied head after everything else, viewing the
    embedding sent; nothing added when the embedding is not sent (a partial push) or the head is."""
    from trainer.rollout.engine import _tied_aliases, _with_tied

    lm = torch.nn.ModuleDict({"embed": torch.nn.Embedding(8, 4), "head": torch.nn.Linear(4, 8, bias=False)})
    lm["head"].weight = lm["embed"].weight
    aliases = _tied_aliases(lm)
    assert aliases == {"head.weight": "embed.weight"}
    embed, other = torch.randn(8, 4), torch.randn(3)
    out = list(_with_tied([("embed.weight", embed), ("other", other)], aliases))
    assert [name for name, _ in out] == ["embed.weight", "other", "head.weight"] and out[-1][1] is embed
    assert list(_with_tied([("other", other)], aliases)) == [("other", other)]
    sent = [("embed.weight", embed), ("head.weight", embed)]
    assert list(_with_tied(sent, aliases)) == sent
