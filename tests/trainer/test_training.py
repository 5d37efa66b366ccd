"""The SKD job end to end on tiny models: real Ray actors with vLLM student engines, the real teacher
server over HTTP, the real trainer. One Ray cluster for the module."""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from pathlib import Path

import pytest
import ray
import torch

from devtools.tiny_models import build_tiny_llama, build_tokenizer
from tests.reference import NATIVE_BF16, dense_greedy
from trainer.cli import main, parse_args
from trainer.config import RunConfig
from trainer.methods import METHODS
from trainer.methods.builtin import TeacherSampling
from trainer.outputs.responses import read_responses
from trainer.records import Prompt, Sample

LOW_PRECISION = "bf16" if NATIVE_BF16 else "fp32"  # elsewhere the learner refuses bf16 (test_learner_scale)


def _base(tiny_models, teacher_server, out: Path, **kw) -> list[str]:
    cfg = {
        "teacher_model": tiny_models["teacher"],
        "student_model": tiny_models["student"],
        "teacher_urls": f"[{teacher_server.url}]",
        "student_dtype": "float32",
        "student_kv_cache_gib": 0.25,
        "max_new_tokens": 16,
        "max_prompt_len": 96,
        "batch_size": 4,
        "num_eval_prompts": 8,
        "lr": 3e-3,
        "warmup_steps": 0,
        "lr_schedule": "constant",
        "max_inflight_per_actor": 8,
        "output_dir": out,
        **kw,
    }
    return [f"--{k}={v}" for k, v in cfg.items()]


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_skd_learns_end_to_end(ray_cluster, tiny_models, teacher_server, tmp_path, trained_batches):
    """Loss falls and the held-out acceptance rate rises over a few dozen steps; the batches mix accepted
    student tokens and teacher replacements; outputs are complete. Every push goes by broadcast (gloo here:
    the GPU path's code, weight_transport=collective), so the learning shows it lands."""
    out = tmp_path / "run"
    main(_base(tiny_models, teacher_server, out, steps=24, eval_every=12, checkpoint_every=12,
               max_staleness=4, weight_transport="collective"))  # fmt: skip
    assert len(trained_batches) == 24
    report = (out / "report.md").read_text()
    assert "weight_transport: collective" in report and "pushes_failed_over: 0" in report
    assert int(report.split("pushes_broadcast: ")[1].split()[0]) >= 20  # (the first one or two: the store)
    _check_skd_samples([s for b in trained_batches for s in b])
    records = _records(out)
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    evals = [r for r in records if "eval/acceptance" in r]
    assert len(losses) == 24 and [e["step"] for e in evals] == [0, 12, 24]  # eval_async: in order, once each
    assert all(e["perf/held_out_rollouts_s"] > 0 for e in evals)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert evals[-1]["eval/acceptance"] > evals[0]["eval/acceptance"]
    assert evals[-1]["eval/kl"] < evals[0]["eval/kl"]
    assert all(r["perf/mean_staleness"] <= 4 for r in records if "perf/mean_staleness" in r)
    # the batches are the prompt stream in order (none dropped), whatever order the sequences finished in
    steps = [r for r in records if "train/loss" in r]
    assert [p for r in steps for p in r["data/trained_positions"]] == list(range(24 * 4))
    assert steps[-1]["perf/dropped_stale_total"] == 0
    # the student's held-out response length is read against the teacher's (its greedy responses, once)
    assert len({e["eval/teacher_response_tokens"] for e in evals}) == 1
    assert 0 < evals[0]["eval/teacher_response_tokens"] <= 16
    assert all(math.isfinite(e["eval/kl_on_teacher_responses"]) for e in evals)
    assert all(0 <= e["eval/repeated_4grams"] <= 1 for e in evals)
    for name in ("report.md", "loss.png", "acceptance.png", "kl.png", "throughput.png", "staleness.png"):
        assert (out / name).exists(), name
    # checkpoints are plain HF model dirs
    from transformers import AutoModelForCausalLM

    final = out / "checkpoints" / "step_000024"
    model = AutoModelForCausalLM.from_pretrained(final)
    assert model.config.vocab_size == 512 and (final / "trainer_state.pt").exists()


def test_a_new_users_first_run_on_low_memory_settings(
    ray_cluster, tiny_models, teacher_server, tmp_path, monkeypatch
):
    """A JSONL of chat messages, models named by hub id (an offline HF cache), the run in TensorBoard and
    MLflow, ROUGE-L in the report, checkpoints rotated; and LoRA + bf16 (where the CPU has it) + gradient
    checkpointing + chunked loss: actors get merged weights, eval runs, and the checkpoint is a merged HF
    model plus the adapter (the adapter transport: the LoRA test below)."""
    import huggingface_hub
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    from tests.hub_cache import make_hub_cache
    from tests.trainer.test_bring_your_own import chat_jsonl

    for role in ("teacher", "student"):
        make_hub_cache(tiny_models[role], tmp_path / "hub", f"skd-test/{role}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "run"
    main(_base(tiny_models, teacher_server, out, teacher_model="skd-test/teacher",
               student_model="skd-test/student@main", train_data=chat_jsonl(tmp_path / "chat.jsonl"), steps=3,
               eval_every=3, eval_at_start=False, checkpoint_every=1, save_total_limit=1, num_eval_prompts=4,
               report_to="[tensorboard,mlflow]", run_name="first-run", lora_rank=8,
               learner_dtype=LOW_PRECISION, gradient_checkpointing=True, loss_chunk_tokens=16))  # fmt: skip
    records = _records(out)
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3]
    last_eval = [r for r in records if "eval/kl" in r][-1]
    assert last_eval["eval/weight_version"] == 3  # the actor ran the pushed (merged) weights
    final = out / "checkpoints" / "step_000003"
    assert (final / "model.safetensors").exists() and (final / "adapter" / "adapter_config.json").exists()
    assert 0 <= last_eval["eval/rougeL"] <= 1 and "eval/rouge1" in last_eval  # chat references -> ROUGE
    assert "rougeL" in (out / "report.md").read_text()
    # the held-out responses behind those figures, per item, in eval-set order
    items = read_responses(out, 3)
    assert [i["index"] for i in items] == [0, 1, 2, 3]
    assert statistics.fmean(i["scores"]["rougeL"] for i in items) == pytest.approx(last_eval["eval/rougeL"])
    assert statistics.fmean(i["tokens"] for i in items) == pytest.approx(last_eval["eval/response_tokens"])
    # every value in metrics.jsonl is in TensorBoard's event files, at its step
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    for key in ("train/loss", "eval/rougeL", "eval/acceptance"):
        want = {r["step"]: r[key] for r in records if key in r}
        got = {e.step: e.tensor_proto.double_val[0] for e in acc.Tensors(key)}
        assert got == want, key
    # and in the MLflow file store, under the run name and the project
    client = MlflowClient(tracking_uri=f"file:{out / 'mlruns'}")
    (run,) = client.search_runs([client.get_experiment_by_name("skd").experiment_id])
    assert run.info.run_name == "first-run" and run.data.params["train_data"].endswith("chat.jsonl")
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train/loss")}
    assert history == {r["step"]: r["train/loss"] for r in records if "train/loss" in r}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000003"]  # save_total_limit=1


@pytest.fixture()
def trained_batches(monkeypatch) -> list[list[Sample]]:
    """The batches the in-driver learner trains on, recorded as they pass (the learner runs unchanged)."""
    from trainer.learner.local import LocalLearner

    batches, train_step = [], LocalLearner.train_step

    def recording(self, batch):
        batches.append(list(batch))
        return train_step(self, batch)

    monkeypatch.setattr(LocalLearner, "train_step", recording)
    return batches


def _check_skd_samples(samples: list[Sample]) -> None:
    """Student drafts kept up to the first token outside the teacher's top-K, which the teacher replaced:
    every committed token is an accepted draft token or one replacement per rejecting round."""
    for s in samples:
        assert s.kind == "kd" and len(s.teacher_topk_ids) == len(s.response_ids) > 0
        assert 0 <= s.num_accepted <= s.num_drafted and s.num_accepted <= len(s.response_ids)
    accepted = sum(s.num_accepted for s in samples)
    replaced = sum(len(s.response_ids) - s.num_accepted for s in samples)
    assert accepted > 0 and replaced > 0, (accepted, replaced)  # the batch mixes both


def _check_method(method: str, samples: list[Sample], reference_of) -> None:
    """What each method is for, on the samples the learner trained on."""
    kd = [s for s in samples if s.kind == "kd"]
    assert all(len(s.teacher_topk_ids) == len(s.teacher_topk_logprobs) == len(s.response_ids) for s in kd)
    if method == "on_policy":  # K = vocab: the student's whole response, nothing replaced
        assert all(s.num_accepted == s.num_drafted == len(s.response_ids) > 0 for s in samples)
    elif method == "teacher_sampling":  # K = 0: every token sampled by the teacher, none drafted
        assert all(s.num_drafted == s.num_accepted == 0 and s.response_ids for s in samples)
    elif method in ("supervised_kd", "sft"):  # the reference response of the sample's own prompt
        assert all(s.response_ids == reference_of(s.prompt_ids) for s in samples)
        assert all(s.num_drafted == 0 for s in samples)
        assert {s.kind for s in samples} == {"kd" if method == "supervised_kd" else "sft"}
        assert all(not s.teacher_topk_ids for s in samples if s.kind == "sft")
    elif method == "mixed_on_policy":  # supervised KD with probability mixed_lambda, else on-policy KD
        by_method = {m: [s for s in samples if s.method == m] for m in ("supervised_kd", "on_policy")}
        assert by_method["supervised_kd"] and by_method["on_policy"], [s.method for s in samples]
        _check_method("supervised_kd", by_method["supervised_kd"], reference_of)
        _check_method("on_policy", by_method["on_policy"], reference_of)
    assert {s.method for s in samples} <= {method, "supervised_kd", "on_policy"}


# supervised_kd runs (and is checked) as half of mixed_on_policy (mixed_skd routes the same way: test_methods)
@pytest.mark.parametrize("method", ["on_policy", "teacher_sampling", "sft", "mixed_on_policy"])
def test_each_method_trains_on_what_it_is_for(
    ray_cluster, tiny_models, teacher_server, tmp_path, trained_batches, method
):
    from transformers import AutoTokenizer

    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": f"What is {i} + {i}?", "reference": str(2 * i)}) + "\n" for i in range(40)
        )
    )
    out = tmp_path / "run"
    args = _base(tiny_models, teacher_server, out, method=method, steps=2, train_data=data, eval_every=2,
                 eval_at_start=False, checkpoint_every=2)  # fmt: skip
    main(args)
    records = _records(out)
    steps = [r for r in records if "train/loss" in r]
    assert len(steps) == 2 and all(r["train/loss"] == r["train/loss"] and r["train/loss"] >= 0 for r in steps)
    assert any("eval/kl" in r for r in records)
    assert len(trained_batches) == 2 and all(len(b) == 4 for b in trained_batches)
    for record, batch in zip(steps, trained_batches):  # the step's metrics describe the batch trained
        assert sum(v for k, v in record.items() if k.startswith("train/samples_")) == len(batch)
        assert record["train/tokens"] == sum(len(s.response_ids) for s in batch)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["student"])

    def reference_of(prompt_ids: list[int]) -> list[int]:
        """The row's reference, found from the prompt's own text (not by the loader under test)."""
        i = int(re.search(r"What is (\d+) \+ \1\?", tokenizer.decode(prompt_ids))[1])
        return [*tokenizer(str(2 * i), add_special_tokens=False).input_ids, tokenizer.eos_token_id]

    _check_method(method, [s for b in trained_batches for s in b], reference_of)


def test_target_acceptance_steers_k_and_the_actors_draft_under_it(
    ray_cluster, tiny_models, teacher_server, tmp_path, trained_batches
):
    """From K = 1, far below the target acceptance, K rises step by step as the rule says (from each
    batch's own acceptance), the actors verify under the new K (later batches accept more), and the
    checkpoint keeps K for a resume."""
    from trainer.rollout.acceptance_target import GAIN, MAX_FACTOR

    def rule(k: float, acceptance: float, target: float, k_max: int) -> float:
        """target_acceptance's rule as documented (config.py), restated here: log2(K'/K) = GAIN x (target -
        acceptance), at most MAX_FACTOR either way, K within [1, k_max]."""
        step = min(max(GAIN * (target - acceptance), -math.log2(MAX_FACTOR)), math.log2(MAX_FACTOR))
        return min(max(k * 2.0**step, 1.0), k_max)

    out = tmp_path / "run"
    main(_base(tiny_models, teacher_server, out, steps=5, top_k=1, target_acceptance=0.95, max_staleness=0,
               eval_every=5, eval_at_start=False, num_eval_prompts=4, checkpoint_every=5))  # fmt: skip
    steps = [r for r in _records(out) if "train/loss" in r]
    k, ks = 1.0, []
    for record, batch in zip(steps, trained_batches):
        accepted = sum(s.num_accepted for s in batch) / sum(s.num_drafted for s in batch)
        assert record["train/batch_acceptance"] == pytest.approx(accepted)
        k = rule(k, accepted, 0.95, 64)  # the test server's max_logprobs
        ks.append(record["train/top_k"])
        assert record["train/top_k"] == round(k)
    assert ks == sorted(ks) and ks[-1] > 4, ks
    acceptance = [r["train/batch_acceptance"] for r in steps]
    assert acceptance[-1] > 2 * acceptance[0], acceptance  # drafted under a K 16x larger or more
    state = torch.load(out / "checkpoints" / "step_000005" / "trainer_state.pt", weights_only=False)
    assert state["top_k"]["k"] == pytest.approx(k)


def test_adaptive_gamma_and_overlap_groups_commit_the_same_text(ray_cluster, tiny_models, teacher_server):
    """Greedy student and teacher make SKD deterministic, and with no bonus token the committed text does
    not depend on how it is cut into rounds: fixed gamma in one lane and adaptive gamma in two overlapping
    groups give the same responses; adaptive gamma changes only how much is drafted."""
    from ray.util.queue import Queue

    from trainer.rollout.worker import rollout_actor

    prompts = [Prompt(index=i, prompt_ids=[5 + i, 60 + 3 * i, 7, 200 - i]) for i in range(6)]
    settings = {
        "fixed": {"adaptive_gamma": False},
        "adaptive, 2 groups": {"adaptive_gamma": True, "gamma_max": 9, "overlap_groups": 2},
    }
    runs = {}
    for name, kw in settings.items():  # both actors start (and run) at once
        cfg = RunConfig(student_dtype="float32", student_kv_cache_gib=0.25, max_new_tokens=24,
                        max_prompt_len=32, student_temperature=0, teacher_temperature=0, top_k=100,
                        max_inflight_per_actor=6, **kw)  # fmt: skip
        prompt_q, sample_q = Queue(), Queue()
        prompt_q.put_nowait_batch(prompts)
        actor = rollout_actor(cfg).remote(
            cfg, str(tiny_models["student"]), [teacher_server.url], (prompt_q, sample_q), 0, []
        )
        runs[name] = (actor, actor.run.remote(), sample_q)
    responses, drafted = {}, {}
    for name, (actor, run, sample_q) in runs.items():
        samples = sorted((sample_q.get(timeout=120) for _ in prompts), key=lambda s: s.index)
        ray.get(actor.stop.remote())
        stats = ray.get(run)
        responses[name] = [s.response_ids for s in samples]
        drafted[name] = sum(s.num_drafted for s in samples)
        assert stats["samples"] == len(prompts) and all(len(r) == 24 for r in responses[name])
        assert 0 < sum(s.num_accepted for s in samples) < drafted[name]  # accepted and replaced tokens
        ray.kill(actor)
    assert responses["adaptive, 2 groups"] == responses["fixed"]
    assert drafted["adaptive, 2 groups"] != drafted["fixed"]


# Pushes of the full student and of LoRA-merged weights (the adapted modules only):
# tests/trainer/weights/test_weight_push.py
@pytest.mark.parametrize("transport", ["adapter"])
def test_a_lora_student_reaches_the_actors(ray_cluster, tiny_models, teacher_server, transport):
    """The adapter into vLLM's LoRA (lora_transport=adapter): the engine generates what the learner's LoRA
    model predicts."""
    from ray.util.queue import Queue

    from trainer.learner.local import LocalLearner
    from trainer.rollout.worker import rollout_actor

    cfg = RunConfig(student_dtype="float32", student_kv_cache_gib=0.25, max_new_tokens=12, max_prompt_len=32,
                    lora_rank=8, lora_transport=transport)  # fmt: skip
    actor = rollout_actor(cfg).remote(
        cfg, str(tiny_models["student"]), [teacher_server.url], (Queue(), Queue()), 0, [2]
    )
    learner = LocalLearner(cfg, tiny_models["student"])
    with torch.no_grad():  # lora_B starts at zero: make the adapters change the model visibly
        for name, p in learner.lm.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.5)
    prompts = [[5, 6, 7, 8], [9, 10, 11], [40, 41, 42, 43, 44]]
    _, before = ray.get(actor.generate_greedy.remote(prompts, 4))
    ray.get(actor.update_weights.remote(1, learner.export_weights(torch.float32), apply_now=True))
    version, after = ray.get(actor.generate_greedy.remote(prompts, 4))
    assert version == 1 and after == dense_greedy(learner.lm, prompts, 4) and after != before
    ray.kill(actor)


def test_held_out_rollouts_keep_the_weights_they_evaluate(ray_cluster, tiny_models, teacher_server):
    """eval_async: while an evaluation's acceptance rollouts run, a push arrives but is not loaded (the
    rollouts measure one model, the one they report); it loads as soon as they end. The teacher's answers
    are held at a proxy while the push arrives, so the rollouts are running then on any machine."""
    from ray.util.queue import Queue

    from tests.jobs import wait_for
    from tests.proxy import FaultyProxy
    from trainer.evaluate import PendingEvaluation
    from trainer.learner.local import LocalLearner
    from trainer.rollout.worker import rollout_actor

    cfg = RunConfig(student_dtype="float32", student_kv_cache_gib=0.25, max_new_tokens=24, max_prompt_len=32)
    proxy = FaultyProxy(teacher_server.port)
    actor = rollout_actor(cfg).remote(
        cfg, str(tiny_models["student"]), [proxy.url], (Queue(), Queue()), 0, [2]
    )
    learner = LocalLearner(cfg, tiny_models["student"])
    prompts = [[5, 6, 7, 8], [9, 10, 11], [40, 41, 42, 43, 44], [300, 7, 18]]
    ray.get(actor.update_weights.remote(1, learner.export_weights(torch.float32), apply_now=True))
    proxy.pause()  # the rollouts' first verification waits at the proxy
    rollouts = actor.skd_acceptance.remote(prompts, min_version=1)
    wait_for(lambda: ray.get(actor.get_stats.remote())["pinned"], timeout_s=120)
    with torch.no_grad():  # another model, visibly
        for p in learner.lm.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    loaded = ray.get(actor.update_weights.remote(2, learner.export_weights(torch.float32), apply_now=True))
    assert not ray.wait([rollouts], timeout=0)[0]  # (held: they cannot have ended)
    assert loaded == 0.0 and ray.get(actor.get_stats.remote())["version"] == 1  # received, not loaded
    proxy.resume()
    version, acceptance = ray.get(rollouts)
    assert version == 1 and 0 <= acceptance <= 1
    version, after = ray.get(actor.generate_greedy.remote(prompts, 4, min_version=2))
    assert version == 2 and after == dense_greedy(learner.lm, prompts, 4)
    assert ray.get(actor.get_stats.remote())["pinned"] == 0
    # the actor dies before an evaluation's rollouts end: the record keeps the rest, acceptance NaN
    pending = PendingEvaluation(2, {"eval/kl": 0.5}, actor.skd_acceptance.remote(prompts, 2), time.time())
    ray.kill(actor)
    record = pending.finish()
    assert math.isnan(record["eval/acceptance"]) and record["eval/kl"] == 0.5
    proxy.close()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--steps=0"], "steps"),
        (["--method=nope"], "method"),
        (["--top_k=-1"], "top_k"),
        (["--target_acceptance=1.5"], "target_acceptance"),
        (["--method=on_policy", "--target_acceptance=0.9"], "target_acceptance"),
        (["--top_k=0", "--target_acceptance=0.9"], "top_k"),
        (["--no_such_field=3"], "no_such_field"),
        (["--student_top_p=1.5"], "student_top_p"),
        (["--teacher_temperature=0.005"], "at least 0.01"),  # what the teacher server accepts
        (["--teacher_temperature=3"], "teacher_temperature"),
        (["--config", "/nonexistent.yaml"], "config file not found"),
    ],
)
def test_bad_config_values_give_clear_errors(args, message, tmp_path):
    """Each stops the command line in one line before any work (a method name is checked against the
    registry once parsed: one registered by the user's code counts)."""
    with pytest.raises(SystemExit, match=message):
        main([*args, f"--output_dir={tmp_path / 'o'}"])
    assert not (tmp_path / "o").exists()


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("method: on_policy\nsteps: 7\nteacher_urls: [http://a:1, http://b:2]\n")
    cfg = parse_args(["--config", str(path), "--steps=9", "--lr", "0.01", "--resume"])
    assert (cfg.method, cfg.steps, cfg.lr, cfg.resume) == ("on_policy", 9, 0.01, True)
    assert cfg.teacher_urls == ["http://a:1", "http://b:2"]


def test_missing_model_dir_fails_before_any_work(tiny_models, tmp_path):
    with pytest.raises(SystemExit, match="not a Hugging Face model directory"):
        main([f"--teacher_model={tmp_path}", f"--student_model={tmp_path}", f"--output_dir={tmp_path / 'o'}"])
    with pytest.raises(SystemExit, match="student_model /nonexistent/model is not a Hugging Face model dir"):
        main([f"--teacher_model={tiny_models['teacher']}", "--student_model=/nonexistent/model",
              f"--output_dir={tmp_path / 'o2'}"])  # fmt: skip
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()


def test_unreachable_teacher_fails_fast(ray_cluster, tiny_models, tmp_path):
    args = [f"--teacher_model={tiny_models['teacher']}", f"--student_model={tiny_models['student']}"]
    with pytest.raises(SystemExit, match="no teacher reachable"):
        main([*args, "--teacher_urls=[http://127.0.0.1:9]", f"--output_dir={tmp_path / 'o'}"])


def test_student_with_another_vocabulary_is_rejected(ray_cluster, tiny_models, teacher_server, tmp_path):
    """SKD compares token ids directly: a student with another tokenizer stops the job before training."""
    build_tokenizer(tmp_path / "tok", vocab_size=300)
    other = build_tiny_llama(tmp_path / "other", hidden_size=64, tokenizer_dir=tmp_path / "tok")
    out = tmp_path / "o"
    args = _base(tiny_models, teacher_server, out, student_model=other)
    with pytest.raises(SystemExit, match=r"student vocabulary \(\d+\) != teacher vocabulary \(512\)"):
        main(args)
    assert not (out / "metrics.jsonl").exists()


class TeacherGreedy(TeacherSampling):
    """A method added the way the README shows: one class (here: teacher sampling at temperature 0)..."""

    name = "teacher_greedy"

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg.model_copy(update={"teacher_temperature": 0.0}))


def test_a_method_added_outside_the_trainer_runs_end_to_end_within_the_staleness_bound(
    ray_cluster, tiny_models, teacher_server, tmp_path, monkeypatch
):
    """The added method trains; with max_staleness=0 and more sequences in flight than a batch, prompts
    are handed out a batch at a time and each starts on the weights that train on it: every batch is
    fresh, none is dropped, and the batches are the prompt stream in order."""
    monkeypatch.setitem(METHODS, TeacherGreedy.name, TeacherGreedy)  # ...and one registry line
    out = tmp_path / "run"
    main(_base(tiny_models, teacher_server, out, method="teacher_greedy", steps=6, eval_at_start=False,
               eval_every=6, checkpoint_every=6, max_staleness=0, max_inflight_per_actor=16))  # fmt: skip
    steps = [r for r in _records(out) if "train/loss" in r]
    assert [r.get("train/samples_teacher_greedy") for r in steps] == [4] * 6
    assert all(r["perf/mean_staleness"] == 0 for r in steps)
    assert steps[-1]["perf/dropped_stale_total"] == 0
    assert [p for r in steps for p in r["data/trained_positions"]] == list(range(24))


def test_sample_buffer_drops_stale_samples_and_releases_their_prompts(ray_cluster):
    from ray.util.queue import Queue

    from trainer.rollout.buffer import SampleBuffer

    def sample(position: int, version: int) -> Sample:
        return Sample(index=position % 3, position=position, method="skd", kind="kd", prompt_ids=[1],
                      response_ids=[5] * (position + 1), weight_version=version)  # fmt: skip

    q, released, outstanding = Queue(), [], list(range(8))

    def release(s: Sample) -> None:
        released.append(s.position)
        outstanding.remove(s.position)

    q.put_nowait_batch([sample(0, 0), sample(2, 4), sample(3, 1), sample(1, 3)])
    buffer = SampleBuffer(q, 2, release, due=lambda n: outstanding[:n], dropped=5)
    arriving, waits = [sample(5, 5), sample(4, 5)], []

    def actors_produce():
        waits.append(1)
        q.put_nowait_batch([arriving.pop(0)])

    batch = buffer.take(3, version=5, while_waiting=actors_produce)
    # versions 0 and 1 are more than 2 behind step 5: dropped, counted on top of the resumed count; the
    # batch is the positions due next (1, 2, 4), in stream order, whatever order they arrived in
    assert [s.position for s in batch] == [1, 2, 4] and released == [0, 3] and buffer.dropped == 7
    assert len(waits) == 2  # asked the actors for more until position 4 was here (5 came first)
    assert [s.position for s in buffer.samples] == [5]  # kept for the next batch
    assert buffer.received_tokens == 1 + 3 + 4 + 2 + 6 + 5
    assert buffer.lengths() == ([1, 3, 4, 2, 6, 5], [1, 4]) and buffer.lengths() == ([], [])


def test_feeder_sends_stream_positions_and_keeps_dataset_indices(ray_cluster):
    from ray.util.queue import Queue

    from trainer.rollout.feeder import PromptFeeder

    prompts = [Prompt(index=i, prompt_ids=[10 + i]) for i in range(3)]
    feeder, q = PromptFeeder(prompts, seed=0), Queue()
    assert feeder.fill(q, 7) == 7
    sent = q.get_nowait_batch(7)
    assert [p.position for p in sent] == list(range(7))
    assert all(p.prompt_ids == [10 + p.index] for p in sent)  # the row index is untouched
    assert sorted(p.index for p in sent[:3]) == [0, 1, 2]  # one epoch = every row once
    for p in sent[:5]:
        feeder.done(p.position)
    resumed = PromptFeeder(prompts, seed=0, state=feeder.state())
    resumed.fill(q, 3)
    got = q.get_nowait_batch(3)  # the two in flight first, then the stream goes on
    assert [(p.position, p.index) for p in got[:2]] == [(5, sent[5].index), (6, sent[6].index)]
    assert got[2].position == 7


def test_a_teacher_outage_beyond_the_limit_stops_the_run_with_a_checkpoint(
    ray_cluster, tiny_models, teacher_server, tmp_path
):
    """The teacher goes away for longer than `teacher_outage_s`: actors wait, then the run stops with a
    message saying what to do, and a checkpoint to resume from."""
    import threading

    from tests.jobs import wait_for
    from tests.proxy import FaultyProxy

    proxy, out = FaultyProxy(teacher_server.port), tmp_path / "run"
    args = _base(tiny_models, teacher_server, out, teacher_urls=f"[{proxy.url}]", teacher_outage_s=3,
                 steps=1000, eval_at_start=False, eval_every=1000, checkpoint_every=1000)  # fmt: skip

    def cut_when_training() -> None:
        wait_for(lambda: (out / "metrics.jsonl").exists(), timeout_s=300)
        proxy.set("down")

    threading.Thread(target=cut_when_training, daemon=True).start()
    try:
        with pytest.raises(SystemExit, match=r"no teacher reachable for \d+ s.*Saved .*step_\d+; restart"):
            main(args)
    finally:
        proxy.close()
    assert list((out / "checkpoints").glob("step_*"))
