"""Weight pushes as a user sees them, on a real rollout actor (Ray, its vLLM student engine): the engine runs
the pushed weights (its own weights pushed back change nothing; a LoRA-merged push; a changed model); a full
push of a tied-head student and a LoRA-merged partial push print none of vLLM's "not loaded" warnings nor
Ray's blocking-get warning, and a push that really misses a weight still warns."""

from __future__ import annotations

import logging

import pytest
import ray
import torch

from devtools.tiny_models import build_tiny_llama
from tests.reference import dense_greedy
from trainer.config import RunConfig
from trainer.rollout.worker import RolloutWorker, rollout_actor

# Messages a correct push must not print (the first two are vLLM's, the last Ray's).
NOISE = ("Failed to load weights", "were not loaded from checkpoint", "blocking ray.get")
PROMPTS = [[5, 6, 7, 8], [9, 10, 11], [40, 41, 42, 43, 44], [300, 7, 18]]
NO_TEACHER = "http://127.0.0.1:9"  # never called: these tests only push weights and generate greedily


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


class RecordedWorker(RolloutWorker):
    """The rollout actor, unchanged, plus the warnings its process logs once its engine is up (vLLM sets
    its loggers' handlers while the engine starts; vLLM's and Ray's loggers do not propagate to the root:
    each gets the recording handler)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.recorded = _Lines()
        for name in ("", "vllm", "ray"):
            logging.getLogger(name).addHandler(self.recorded)

    def warnings(self) -> list[str]:
        return self.recorded.lines


@pytest.fixture(scope="module")
def tied_student(tiny_models, tmp_path_factory):
    """A tiny student whose head is its input embedding (as in SmolLM2, the default student)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tied"), seed=5, hidden_size=64, logit_scale=4.0,
                            tokenizer_dir=tiny_models["student"], tie_word_embeddings=True)  # fmt: skip


def _push(actor, version: int, buckets: list[dict], apply_now: bool = False):
    """As the driver pushes: each bucket into the object store, the actor given the references."""
    return actor.update_weights.remote(version, [ray.put(b) for b in buckets], apply_now)


def test_pushes_take_effect_quietly_and_a_missing_weight_still_warns(ray_cluster, tied_student):
    from ray.util.queue import Queue

    from trainer.learner.local import LocalLearner

    cfg = RunConfig(student_dtype="float32", student_kv_cache_gib=0.25, max_new_tokens=4, max_prompt_len=32)
    actor = rollout_actor(cfg, RecordedWorker).remote(
        cfg, str(tied_student), [NO_TEACHER], (Queue(), Queue()), 0, [2]
    )
    version, before = ray.get(actor.generate_greedy.remote(PROMPTS, 4))
    assert version == 0

    # 0. the student's own weights pushed back change nothing (the rotary cache, which no push carries, and
    # the tied head are intact)
    same = LocalLearner(cfg, tied_student)
    ray.get(_push(actor, 1, list(same.weight_buckets(torch.float32)), apply_now=True))
    assert ray.get(actor.generate_greedy.remote(PROMPTS, 4)) == (1, before)

    # 1. LoRA merged: only the adapted modules travel (a partial push), loaded now
    lora = LocalLearner(cfg.model_copy(update={"lora_rank": 8}), tied_student)
    torch.manual_seed(0)
    with torch.no_grad():  # lora_B starts at zero: make the adapters change the model visibly
        for name, p in lora.lm.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.5)
    buckets = list(lora.weight_buckets(torch.float32))
    sent = {name for b in buckets for name in b["arrays"]}
    assert all(b["partial"] for b in buckets) and "model.norm.weight" not in sent
    assert ray.get(_push(actor, 2, buckets, apply_now=True)) > 0
    version, after = ray.get(actor.generate_greedy.remote(PROMPTS, 4))
    assert version == 2 and after == dense_greedy(lora.lm, PROMPTS, 4) and after != before

    # 2. the full student with its tied embedding negated (the head is not sent: it is the embedding), loaded
    # before the next greedy call. The logits are then those of the base model (both signs flip), while a
    # head still computing with the old embedding (vLLM-CPU's GEMM kernel packed from it) gives the most
    # dissimilar tokens instead.
    full = LocalLearner(cfg, tied_student)
    assert full.lm.lm_head.weight is full.lm.get_input_embeddings().weight
    with torch.no_grad():
        full.lm.get_input_embeddings().weight.neg_()
    buckets = list(full.weight_buckets(torch.float32))
    sent = {name for b in buckets for name in b["arrays"]}
    assert not any(b["partial"] for b in buckets) and "lm_head.weight" not in sent
    _push(actor, 3, buckets)
    version, pushed = ray.get(actor.generate_greedy.remote(PROMPTS, 4))
    assert version == 3 and pushed == dense_greedy(full.lm, PROMPTS, 4)
    assert not [line for line in ray.get(actor.warnings.remote()) if any(n in line for n in NOISE)]

    # 3. a full push that lacks a weight is a real failure: it still warns (the engine keeps that weight)
    for b in buckets:
        b["arrays"].pop("model.norm.weight", None)
    ray.get(_push(actor, 4, buckets, apply_now=True))
    lines = ray.get(actor.warnings.remote())
    assert any(line.endswith("RMSNorm: Failed to load weights") for line in lines), lines
    assert any("were not loaded from checkpoint: {'model.norm.weight'}" in line for line in lines), lines
    assert ray.get(actor.generate_greedy.remote(PROMPTS, 4)) == (4, pushed)  # norm unchanged by push 3
    ray.kill(actor)
