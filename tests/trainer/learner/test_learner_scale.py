"""The learner at scale, on tiny models: the chunked loss against the unchunked one, LoRA export and
checkpoints against peft's own merge, bf16/checkpointing/8-bit settings, and a real 2-worker group
(Ray actors + torch.distributed gloo, FSDP2 and DDP) against one worker on the same batches."""

from __future__ import annotations

import contextlib
import random
import re

import pytest
import ray
import torch

from tests.reference import NATIVE_BF16, assert_equal_but_for_rounding
from trainer.config import RunConfig
from trainer.learner.group import LearnerGroup, check_resources
from trainer.learner.local import LocalLearner
from trainer.learner.loss import ResponseLoss, collate
from trainer.learner.model import decoder_layers
from trainer.records import Sample


def _samples(n: int = 8, seed: int = 0, vocab: int = 512, k: int = 6) -> list[Sample]:
    """Random KD samples (and one SFT sample) of uneven lengths, teacher targets as the server sends them."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        length, kind = r.randint(3, 14), "sft" if i == 3 else "kd"
        ids = [r.sample(range(vocab), k) for _ in range(length)]
        lps = [sorted((-r.random() * 6 for _ in range(k)), reverse=True) for _ in range(length)]
        out.append(
            Sample(
                index=i,
                method="test",
                kind=kind,
                prompt_ids=[r.randrange(vocab) for _ in range(r.randint(2, 9))],
                response_ids=[r.randrange(vocab) for _ in range(length)],
                teacher_topk_ids=ids if kind == "kd" else [],
                teacher_topk_logprobs=lps if kind == "kd" else [],
                weight_version=0,
            )
        )
    return out


def _cfg(**kw) -> RunConfig:
    return RunConfig(batch_size=4, grad_accum=2, trainer_device="cpu", lr=1e-3, warmup_steps=0, **kw)


# --- the chunked loss ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["forward_kl", "jsd"])
def test_chunked_loss_gives_the_unchunked_losses_and_gradients(tiny_models, kind):
    learner = LocalLearner(_cfg(), tiny_models["student"])
    batch = collate(_samples(), learner.pad_id)
    results = []
    for chunk in (0, 7):  # 7 does not divide the token count: a short last chunk
        learner.lm.zero_grad()
        losses = ResponseLoss(learner.lm, chunk_tokens=chunk, beta=0.3)(batch, kind)
        losses.sum().backward()
        results.append((losses.detach(), {n: p.grad.clone() for n, p in learner.lm.named_parameters()}))
    (plain, plain_grads), (chunked, chunked_grads) = results
    # fp32 rounding of other summation orders only (a wrong chunk boundary or target is off by O(1))
    assert_equal_but_for_rounding(chunked, plain)
    for name, grad in plain_grads.items():
        assert_equal_but_for_rounding(chunked_grads[name], grad, msg=name)


def test_loss_chunk_tokens_keeps_whole_batch_logits_out_of_the_learners_step(tiny_models):
    """`loss_chunk_tokens` set in the config takes effect in the learner's own train step: no tensor of
    [tokens, vocab] is kept for backward; unset, the whole batch's logits are."""
    samples = _samples()
    vocab = LocalLearner(_cfg(), tiny_models["student"]).lm.config.vocab_size

    def largest(chunk: int) -> tuple[int, int]:
        """Most rows of any [rows, vocab] tensor saved for backward in one train step; the step's tokens."""
        learner = LocalLearner(_cfg(loss_chunk_tokens=chunk), tiny_models["student"])
        rows = [0]
        weights = {p.untyped_storage().data_ptr() for p in learner.lm.parameters()}

        def pack(t):
            if t.dim() == 2 and t.shape[-1] == vocab and t.untyped_storage().data_ptr() not in weights:
                rows.append(t.shape[0])
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            stats = learner.train_step(samples)
        return max(rows), int(stats["tokens"])

    unchunked, tokens = largest(0)
    assert unchunked >= tokens // 2 > 16  # a micro-batch's (grad_accum=2) whole logits
    chunked, _ = largest(16)
    assert chunked <= 16  # (0: checkpointed chunks keep no logits at all; recomputed in backward)


# --- precision, checkpointing, optimizers -----------------------------------------------------------------


needs_bf16 = pytest.mark.skipif(
    not NATIVE_BF16, reason="no bf16 arithmetic on this CPU: the learner refuses bf16 here (tested below)"
)


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"learner_dtype": "bf16"}, marks=needs_bf16),
        {"gradient_checkpointing": True, "loss_chunk_tokens": 5},
        {"optimizer": "adamw_8bit"},
        pytest.param(
            {"lora_rank": 4, "learner_dtype": "bf16", "gradient_checkpointing": True, "loss_chunk_tokens": 5},
            marks=needs_bf16,
        ),
    ],
    ids=["bf16", "checkpointing+chunked", "adamw_8bit", "lora+all"],
)
def test_memory_settings_train_like_the_baseline_and_resume(tiny_models, tmp_path, settings):
    base, other = (
        LocalLearner(_cfg(), tiny_models["student"]),
        LocalLearner(_cfg(**settings), tiny_models["student"]),
    )
    for seed in range(3):
        with _watch(base.lm) as plain, _watch(other.lm) as seen:
            want, got = base.train_step(_samples(seed=seed)), other.train_step(_samples(seed=seed))
        tol = 0.02 if settings.get("learner_dtype") == "bf16" or "lora_rank" in settings else 1e-4
        assert got["loss"] == pytest.approx(want["loss"], rel=tol)
        _assert_settings_took_effect(settings, plain, seen, base, other)
    kl = other.kl_to_teacher(_samples(seed=9))
    assert kl < base.kl_to_teacher(_samples(seed=9)) * 1.5
    path = other.save(tmp_path, {"extra": 1})
    resumed = LocalLearner(_cfg(**settings), tiny_models["student"], checkpoint=path)
    assert resumed.load_state(path)["extra"] == 1 and resumed.step == 3
    # a checkpoint carries weights and optimizer state bit for bit (saved and loaded, never recomputed)
    assert resumed.kl_to_teacher(_samples(seed=9)) == kl
    for a, b in zip(_states(other.optimizer), _states(resumed.optimizer), strict=True):
        assert a.keys() == b.keys()
        for key, x in a.items():
            y = b[key]
            assert x.dtype == y.dtype and torch.equal(x, y) if torch.is_tensor(x) else x == y, key
    # ... and the next step uses that state: the resumed learner steps as the original one does, a learner
    # with the checkpoint's weights and a fresh optimizer does not
    fresh = LocalLearner(_cfg(**settings), tiny_models["student"], checkpoint=path)
    for learner in (other, resumed, fresh):
        learner.train_step(_samples(seed=5))
    after = [learner.kl_to_teacher(_samples(seed=9)) for learner in (other, resumed, fresh)]
    assert after[1] == after[0] and after[2] != pytest.approx(after[0], rel=1e-4)


@contextlib.contextmanager
def _watch(lm: torch.nn.Module):
    """What the student's forward and backward really run: the dtypes its Linear layers output, and how
    often its first decoder layer runs forward (recomputing it in backward runs it a second time)."""
    seen = {"dtypes": set(), "layer_runs": 0}

    def on_linear(module, args, out):
        seen["dtypes"].add(out.dtype)

    def on_layer(module, args):
        seen["layer_runs"] += 1

    hooks = [m.register_forward_hook(on_linear) for m in lm.modules() if isinstance(m, torch.nn.Linear)]
    # a pre-hook: a recompute may stop early, once it has what backward needs, and never return
    hooks.append(decoder_layers(lm)[0].register_forward_pre_hook(on_layer))
    try:
        yield seen
    finally:
        for hook in hooks:
            hook.remove()


def _states(optimizer: torch.optim.Optimizer) -> list[dict]:
    """The optimizer's per-parameter state, in parameter order."""
    return [optimizer.state[p] for group in optimizer.param_groups for p in group["params"]]


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of optimizer state (a tensor shared by several parameters counted once)."""
    tensors = {t.data_ptr(): t.nbytes for s in _states(optimizer) for t in s.values() if torch.is_tensor(t)}
    return sum(tensors.values())


def _assert_settings_took_effect(
    settings: dict, plain: dict, seen: dict, base: LocalLearner, other: LocalLearner
):
    """Each memory setting changed what the learner computes, not only how close its loss came out."""
    steps_per_batch = 2  # 8 samples in micro-batches of batch_size 4
    assert plain == {"dtypes": {torch.float32}, "layer_runs": steps_per_batch}  # the fp32 baseline
    # bf16: autocast runs every matmul (the LoRA adapters', the head's) in bf16
    assert seen["dtypes"] == {torch.bfloat16 if settings.get("learner_dtype") == "bf16" else torch.float32}
    # gradient checkpointing: backward runs each decoder layer's forward again
    recompute = 2 if settings.get("gradient_checkpointing") else 1
    assert seen["layer_runs"] == steps_per_batch * recompute
    # LoRA: only the adapters train; the optimizer holds them and nothing else
    trainable = {n: p for n, p in other.lm.named_parameters() if p.requires_grad}
    optimized = {id(p) for group in other.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in trainable.values()}
    if "lora_rank" in settings:
        assert trainable and all("lora_" in n for n in trainable)
    else:
        assert len(trainable) == len(list(other.lm.parameters()))
    # adamw_8bit: bitsandbytes' AdamW whose moments are uint8 (but for tensors under its min_8bit_size,
    # 4096), about 2 bytes a weight against fp32 AdamW's 8
    if settings.get("optimizer") == "adamw_8bit":
        import bitsandbytes as bnb

        assert isinstance(other.optimizer, bnb.optim.AdamW8bit)
        big = [s for p, s in other.optimizer.state.items() if p.numel() >= 4096]
        assert big and all(s["state1"].dtype == s["state2"].dtype == torch.uint8 for s in big)
        assert _state_bytes(other.optimizer) < 0.3 * _state_bytes(base.optimizer)
    else:
        assert type(other.optimizer) is torch.optim.AdamW


@pytest.mark.skipif(NATIVE_BF16, reason="this CPU has bf16 arithmetic: bf16 is tested above")
def test_bf16_on_a_cpu_without_bf16_arithmetic_is_refused_in_one_line(tiny_models):
    with pytest.raises(ValueError, match="device cpu has no native bf16 arithmetic; use fp32"):
        LocalLearner(_cfg(learner_dtype="bf16"), tiny_models["student"])


@needs_bf16
def test_bf16_keeps_fp32_master_weights_and_lora_freezes_a_bf16_base(tiny_models):
    full = LocalLearner(_cfg(learner_dtype="bf16"), tiny_models["student"])
    assert {p.dtype for p in full.lm.parameters()} == {torch.float32}
    lora = LocalLearner(_cfg(learner_dtype="bf16", lora_rank=4), tiny_models["student"])
    trainable = {n: p for n, p in lora.lm.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n and p.dtype == torch.float32 for n, p in trainable.items())
    frozen = [p for p in lora.lm.parameters() if not p.requires_grad]
    assert {p.dtype for p in frozen} == {torch.bfloat16}
    state = lora.optimizer.state_dict()["param_groups"]
    assert sum(len(g["params"]) for g in state) == len(trainable)


# --- LoRA: what the actors get, what a checkpoint holds -----------------------------------------------------


def _lora_learner(tiny_models, **kw) -> LocalLearner:
    learner = LocalLearner(_cfg(lora_rank=4, lora_alpha=8, **kw), tiny_models["student"])
    for _ in range(2):
        learner.train_step(_samples(seed=_))
    with torch.no_grad():  # B starts at zero: make every adapter visibly non-trivial
        for n, p in learner.lm.named_parameters():
            if "lora_B" in n:
                p.add_(torch.randn_like(p) * 0.05)
    return learner


def test_lora_export_sends_peft_merged_weights_of_changed_modules_only(tiny_models):
    learner = _lora_learner(tiny_models, lora_target_modules=["q_proj", "v_proj", "down_proj"])
    sent = {k: v for b in learner.export_weights(torch.float32) for k, v in b["arrays"].items()}
    import copy

    reference = copy.deepcopy(learner.lm).merge_and_unload().state_dict()  # peft's own merge
    # q and v carry adapters, k travels with them (vLLM loads q/k/v as one tensor); down_proj alone
    layers = learner.lm.config.num_hidden_layers
    expected = {
        f"model.layers.{i}.{m}.weight"
        for i in range(layers)
        for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj")
    }
    assert set(sent) == expected
    for name, array in sent.items():
        assert_equal_but_for_rounding(torch.from_numpy(array), reference[name], msg=name)


def test_lora_checkpoint_is_a_merged_hf_model_plus_the_adapter(tiny_models, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    learner = _lora_learner(tiny_models)
    path = learner.save(tmp_path, {})
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        want = learner.lm(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(path)  # loads unchanged, as vLLM does
        assert_equal_but_for_rounding(merged(ids).logits, want)  # (W + BA)x against Wx + B(Ax)
        base = AutoModelForCausalLM.from_pretrained(tiny_models["student"])
        adapter = PeftModel.from_pretrained(base, path / "adapter")
        assert_equal_but_for_rounding(adapter(ids).logits, want)


# --- bad input --------------------------------------------------------------------------------------------


def test_impossible_learner_settings_fail_naming_the_fields():
    with pytest.raises(ValueError, match=r"batch_size \(2\) < num_learner_workers \(4\)"):
        RunConfig(num_learner_workers=4, batch_size=2)
    with pytest.raises(ValueError, match="adamw_8bit with learner_backend=fsdp"):
        RunConfig(num_learner_workers=2, optimizer="adamw_8bit")
    RunConfig(num_learner_workers=2, optimizer="adamw_8bit", learner_backend="ddp")  # fine
    with pytest.raises(ValueError, match="lora_transport=adapter needs 0 < lora_rank"):
        RunConfig(lora_transport="adapter")
    cfg = RunConfig(num_learner_workers=3, learner_num_cpus=1, num_rollout_actors=1)
    with pytest.raises(
        ValueError, match=r"num_learner_workers \(3\) x learner_num_cpus .* more than the Ray"
    ) as refused:
        check_resources(cfg, {"CPU": 2.0})
    share = float(
        re.search(r"--learner_num_cpus=S --actor_num_cpus=S with S <= ([0-9.]+)", str(refused.value))[1]
    )
    check_resources(cfg.model_copy(update={"learner_num_cpus": share, "actor_num_cpus": share}), {"CPU": 2.0})
    check_resources(cfg, {"CPU": 4.0})
    with pytest.raises(ValueError, match="learner_num_gpus"):
        check_resources(RunConfig(num_learner_workers=2, learner_num_gpus=1), {"CPU": 8.0})


# --- the distributed group --------------------------------------------------------------------------------


def _weights(buckets) -> dict[str, torch.Tensor]:
    parts = [ray.get(b) if isinstance(b, ray.ObjectRef) else b for b in buckets]
    return {k: torch.from_numpy(v.copy()) for p in parts for k, v in p["arrays"].items()}


@pytest.mark.parametrize(
    "backend, settings",
    [("fsdp", {}), ("ddp", {}), ("fsdp", {"lora_rank": 4})],
    ids=["fsdp", "ddp", "fsdp+lora"],
)
def test_two_workers_match_one_worker_on_the_same_batches(
    ray_cluster, tiny_models, tmp_path, backend, settings
):
    """Same batches, fp32: the same parameters after 3 steps, the same losses, KL and exported weights;
    a checkpoint written by the group resumes in a one-worker learner."""
    cfg = _cfg(num_learner_workers=2, learner_backend=backend, **settings)
    one, group = (
        LocalLearner(_cfg(**settings), tiny_models["student"]),
        LearnerGroup(cfg, tiny_models["student"]),
    )
    try:
        for seed in range(3):
            want, got = one.train_step(_samples(seed=seed)), group.train_step(_samples(seed=seed))
            assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
            assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-4)
        assert group.step == 3
        assert group.kl_to_teacher(_samples(seed=9)) == pytest.approx(
            one.kl_to_teacher(_samples(seed=9)), rel=1e-5
        )
        theirs, ours = (
            _weights(group.weight_buckets(torch.float32)),
            _weights(one.weight_buckets(torch.float32)),
        )
        assert theirs.keys() == ours.keys()
        # AdamW turns float-rounding differences of near-zero gradients into updates of up to ~1e-5
        # (it normalises them); the 3 steps themselves moved the weights by ~3e-3 (lr 1e-3)
        for name in ours:
            torch.testing.assert_close(theirs[name], ours[name], rtol=0, atol=5e-5, msg=name)
        path = group.save(tmp_path, {"data": "x"})
    finally:
        group.shutdown()
    resumed = LocalLearner(_cfg(**settings), tiny_models["student"], checkpoint=path)
    assert resumed.load_state(path)["step"] == 3
    loss_one, loss_resumed = (x.train_step(_samples(seed=4))["loss"] for x in (one, resumed))
    assert loss_resumed == pytest.approx(loss_one, rel=1e-4)


def test_more_learner_workers_than_the_machine_has_stop_the_job_before_any_work(tmp_path):
    from trainer.cli import main

    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"invalid configuration: num_learner_workers \(64\)"):
        main(["--num_learner_workers=64", "--batch_size=64", f"--output_dir={out}"])
    assert not out.exists()  # nothing started, nothing written


def test_resuming_with_another_lora_setting_is_refused(tiny_models, tmp_path):
    from trainer.cli import main

    learner = LocalLearner(_cfg(lora_rank=4), tiny_models["student"])
    learner.train_step(_samples())
    learner.save(tmp_path / "run" / "checkpoints", {})
    with pytest.raises(SystemExit, match="was trained with LoRA; resume with its lora_rank"):
        main([f"--output_dir={tmp_path / 'run'}", "--resume", f"--student_model={tiny_models['student']}"])
