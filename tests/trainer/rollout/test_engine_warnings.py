"""The student engine's log filter: known-harmless vLLM warnings dropped, real ones kept."""

from __future__ import annotations

import logging


def test_only_the_expected_vllm_load_warnings_are_dropped():
    from trainer.rollout.engine import _ExpectedVllmWarnings

    def kept(message: str, *args) -> bool:
        record = logging.LogRecord("vllm.x", logging.WARNING, __file__, 1, message, args, None)
        return _ExpectedVllmWarnings().filter(record)

    assert not kept("%s: Failed to load weights", "RotaryEmbedding")
    assert kept("%s: Failed to load weights", "QKVParallelLinear")  # a real failure still shows
    narrowing = "Attempted to load weight %s with dtype %s into parameter with dtype %s"
    assert not kept(narrowing, "norm.weight", "torch.float32", "torch.bfloat16")
    assert kept(narrowing, "norm.weight", "torch.bfloat16", "torch.float16")
    assert not kept(
        "CPU backend doesn't allow to use `torch.set_num_threads` after the thread binding, skip it."
    )
    reason = "C++ compile error\n\nCommand:\ng++ ...\n(90 more lines)"
    args = ("[backbone] ", "/cache/model", reason)
    message = "%sCompiling model again due to a load failure from %s, reason: %s"
    record = logging.LogRecord(
        "vllm.compilation.decorators", logging.WARNING, __file__, 1, message, args, None
    )
    assert _ExpectedVllmWarnings().filter(record)  # kept, shortened to its first line
    assert record.getMessage() == (
        "[backbone] Compiling model again due to a load failure from /cache/model, reason: C++ compile error"
        " [compiler output omitted]"
    )
