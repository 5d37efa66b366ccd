"""SKD training job: `python trainer/main.py [--config run.yaml] [--key=value ...]`.

With no arguments it runs the embedded default (SmolLM2-135M-Instruct teacher, a layer-pruned student, the
shipped prompt set) end to end on this machine. Under `ray job submit ... -- python trainer/main.py` it joins
that cluster. The parts, each in its own module:

- config.RunConfig            what to run (validated before any work starts)
- models                      the embedded default teacher and the pruned student
- teacher_service             the teacher: given URLs, or a `python -m rollout_server` it starts and stops
- data / feeder.PromptFeeder  prompts, tokenised with the chat template, streamed to a Ray queue
- rollout.RolloutWorker       Ray actors with vLLM student engines producing samples onto a Ray queue
- learner.Learner             the student in transformers: loss, AdamW, checkpoints
- evaluate                    held-out acceptance rate, KL and task metric
- report                      metrics.jsonl, plots, report.md

This file wires them together and drives the loop.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python trainer/main.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.config import RunConfig, parse_args


def resolve_models(cfg: RunConfig) -> tuple[Path, Path]:
    from trainer.models import ensure_default_teacher, ensure_pruned_student

    teacher = (
        ensure_default_teacher(cfg.cache_dir) if cfg.teacher_model == "default" else Path(cfg.teacher_model)
    )
    if cfg.student_model == "default":
        student = ensure_pruned_student(teacher, cfg.prune_keep_every, cfg.cache_dir)
    else:
        student = Path(cfg.student_model)
    for role, path in (("teacher", teacher), ("student", student)):
        if not (path / "config.json").exists() and not (role == "teacher" and cfg.teacher_urls):
            raise SystemExit(f"{role}_model {path} is not a Hugging Face model directory (no config.json)")
    return teacher, student


def check_compatible(teacher: Path, student: Path, info, cfg: RunConfig) -> None:
    """Teacher and student must share the vocabulary: SKD compares their token ids directly."""
    from transformers import AutoConfig, AutoTokenizer

    student_vocab = AutoConfig.from_pretrained(student).vocab_size
    if student_vocab != info.vocab_size:
        raise SystemExit(f"student vocabulary ({student_vocab}) != teacher vocabulary ({info.vocab_size})")
    if (teacher / "config.json").exists():
        vocab = AutoTokenizer.from_pretrained(teacher).get_vocab()
        if vocab != AutoTokenizer.from_pretrained(student).get_vocab():
            raise SystemExit("teacher and student tokenizers differ; SKD needs one shared tokenizer")
    if 0 < cfg.top_k < info.vocab_size and cfg.top_k > info.max_logprobs:
        raise SystemExit(f"top_k {cfg.top_k} exceeds the teacher's max_logprobs {info.max_logprobs}")
    if cfg.num_logprobs > info.max_logprobs:
        raise SystemExit(
            f"num_logprobs {cfg.num_logprobs} exceeds the teacher's max_logprobs {info.max_logprobs}"
        )


def _probe(address: str, timeout_s: float = 10.0) -> None:
    """Fail in seconds, not minutes, when a Ray head is unreachable (ray.init retries for a long time)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        return  # "auto" and the like: let Ray resolve them
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise SystemExit(f"Ray head not reachable at {address}: {e}") from None


def connect_ray(cfg: RunConfig) -> None:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():  # a caller (tests, notebooks) already connected
        return
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS")  # set inside `ray job submit`
    if address:
        _probe(address)
        ray.init(address=address)
    else:
        ray.init(address="local", include_dashboard=False, num_cpus=max(os.cpu_count() or 1, 2))


def load_prompts(cfg: RunConfig, tokenizer):
    from trainer.data import encode_prompt, load_examples
    from trainer.rollout import Prompt

    train = load_examples(cfg.train_data, split="train")
    evals = load_examples(cfg.eval_data, split="eval", limit=cfg.num_eval_prompts)
    needs_ref = cfg.method in ("supervised_kd", "sft", "mixed")
    missing = [i for i, ex in enumerate(train) if needs_ref and not ex.reference]
    if missing:
        raise SystemExit(f"method {cfg.method} needs references; {len(missing)} train prompts have none")

    def encode(i, ex):
        ids = encode_prompt(ex, tokenizer, max_prompt_len=cfg.max_prompt_len, system_prompt=cfg.system_prompt)
        ref = tokenizer(ex.reference, add_special_tokens=False)["input_ids"] if ex.reference else None
        if ref is not None and tokenizer.eos_token_id is not None:
            ref = [*ref[: cfg.max_new_tokens - 1], tokenizer.eos_token_id]
        return Prompt(index=i, prompt_ids=ids, reference_ids=ref)

    return (
        [encode(i, ex) for i, ex in enumerate(train)],
        evals,
        [encode(i, ex).prompt_ids for i, ex in enumerate(evals)],
    )


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    from trainer.learner import latest_checkpoint
    from trainer.report import MetricsLog, write_report
    from trainer.teacher_service import TeacherError, teacher_service

    out = Path(cfg.output_dir)
    checkpoint = latest_checkpoint(out / "checkpoints") if cfg.resume else None
    if cfg.resume and checkpoint is None:
        raise SystemExit(f"--resume: no checkpoint in {out / 'checkpoints'}")
    if not cfg.resume and (out / "metrics.jsonl").exists():
        raise SystemExit(
            f"{out} already holds a run; pass --resume to continue it or choose another output_dir"
        )
    teacher_path, student_path = resolve_models(cfg)
    out.mkdir(parents=True, exist_ok=True)
    connect_ray(cfg)
    try:
        with teacher_service(cfg, teacher_path, out / "teacher_server.log") as (urls, info):
            check_compatible(teacher_path, student_path, info, cfg)
            summary = train(cfg, out, student_path, checkpoint, urls, info)
    except TeacherError as e:
        raise SystemExit(f"teacher: {e}") from None
    report = write_report(out, cfg.model_dump(mode="json"), MetricsLog(out / "metrics.jsonl").read(), summary)
    print(f"done: {report}")


def train(
    cfg: RunConfig, out: Path, student_path: Path, checkpoint: Path | None, urls: list[str], info
) -> dict:
    """The loop: gather fresh samples, step, push weights, evaluate, checkpoint. Returns a run summary."""
    import ray
    import torch
    from ray.util.queue import Queue
    from tqdm import tqdm

    from trainer.evaluate import evaluate
    from trainer.feeder import PromptFeeder
    from trainer.learner import Learner, latest_checkpoint
    from trainer.report import MetricsLog
    from trainer.rollout import rollout_actor

    learner = Learner(cfg, checkpoint or student_path)
    state = learner.load_state(checkpoint) if checkpoint else {}
    train_prompts, eval_examples, eval_prompts = load_prompts(cfg, learner.tokenizer)
    feeder = PromptFeeder(train_prompts, cfg.seed, state.get("data"))
    prompt_q, sample_q = Queue(), Queue()
    engine_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        cfg.student_dtype, torch.float32
    )
    # Actors start from the base student (a path every node has); a resumed run's weights are pushed to
    # them before their first round, like any other update.
    actors = [
        rollout_actor(cfg).remote(cfg, str(student_path), urls, (prompt_q, sample_q), i, info.eos_token_ids)
        for i in range(cfg.num_rollout_actors)
    ]
    log = MetricsLog(out / "metrics.jsonl")
    capacity = cfg.num_rollout_actors * cfg.max_inflight_per_actor
    buffer, dropped, busy_s, idle_s, push_s = [], state.get("dropped", 0), 0.0, 0.0, []
    rollout_tokens_prev, t_prev = 0, time.perf_counter()

    def push_weights() -> float:
        """One `ray.put`, shared zero-copy by every actor; they load it between rounds (not awaited here,
        so the trainer never waits for an actor's engine call in progress)."""
        start = time.perf_counter()
        ref = ray.put(learner.export_weights(engine_dtype))
        for a in actors:
            a.update_weights.remote(learner.step, ref)
        return time.perf_counter() - start

    def run_eval() -> None:
        push_weights()
        metrics = evaluate(
            actors[0], urls, learner, eval_examples, eval_prompts, cfg, info.vocab_size, info.max_logprobs
        )
        log.write(learner.step, metrics)
        bar.write(f"step {learner.step}: " + ", ".join(f"{k[5:]} {v:.4f}" for k, v in metrics.items()))

    if checkpoint:
        push_weights()
    runs = [a.run.remote() for a in actors]
    bar = tqdm(total=cfg.steps, initial=learner.step, desc="train", unit="step")
    if cfg.eval_at_start and learner.step == 0:
        run_eval()
    while learner.step < cfg.steps:
        # 1. gather a batch of fresh samples (dropping stale ones), keeping the actors fed
        wait_start = time.perf_counter()
        need = cfg.batch_size * cfg.grad_accum
        while True:
            buffer += sample_q.get_nowait_batch(sample_q.qsize()) if sample_q.qsize() else []
            fresh = [s for s in buffer if learner.step - s.weight_version <= cfg.max_staleness]
            for s in buffer:
                if learner.step - s.weight_version > cfg.max_staleness:
                    dropped += 1
                    feeder.done(s.index)
            buffer = fresh
            if len(buffer) >= need:
                break
            feeder.fill(prompt_q, 2 * capacity)
            failed = ray.wait(runs, timeout=0)[0]
            if failed:
                ray.get(failed)  # an actor's loop ended: raise its error here
                raise RuntimeError("a rollout actor stopped unexpectedly")
            time.sleep(0.02)
        batch, buffer = buffer[:need], buffer[need:]
        idle_s += time.perf_counter() - wait_start
        # 2. one optimiser step
        step_start = time.perf_counter()
        stats = learner.train_step([batch[i : i + cfg.batch_size] for i in range(0, need, cfg.batch_size)])
        for s in batch:
            feeder.done(s.index)
        if learner.step % cfg.sync_every == 0:
            push_s.append(push_weights())
        step_busy = time.perf_counter() - step_start
        busy_s += step_busy
        # 3. bookkeeping
        now = time.perf_counter()
        actor_stats = ray.get([a.get_stats.remote() for a in actors])
        rollout_tokens = sum(a["tokens"] for a in actor_stats)
        drafted = sum(s.num_drafted for s in batch)
        log.write(learner.step, {
            **{f"train/{k}": v for k, v in stats.items()},
            "train/batch_acceptance": sum(s.num_accepted for s in batch) / drafted if drafted else None,
            "perf/rollout_tokens_per_s": (rollout_tokens - rollout_tokens_prev) / (now - t_prev),
            "perf/train_tokens_per_s": stats["tokens"] / step_busy,
            "perf/busy_fraction": busy_s / max(busy_s + idle_s, 1e-9),
            "perf/step_busy_s": step_busy,
            "perf/step_idle_s": step_start - wait_start,
            "perf/mean_staleness": sum(learner.step - 1 - s.weight_version for s in batch) / len(batch),
            "perf/dropped_stale_total": dropped,
            "perf/weight_push_s": push_s[-1] if push_s else None,
            "data/position": feeder.position,
        })  # fmt: skip
        rollout_tokens_prev, t_prev = rollout_tokens, now
        bar.update(1)
        bar.set_postfix(loss=f"{stats['loss']:.3f}", busy=f"{busy_s / max(busy_s + idle_s, 1e-9):.2f}")
        # 4. evaluation and checkpoints
        if learner.step % cfg.eval_every == 0 or learner.step == cfg.steps:
            run_eval()
        if learner.step % cfg.checkpoint_every == 0 or learner.step == cfg.steps:
            learner.save(out / "checkpoints", {"data": feeder.state(), "dropped": dropped})
    bar.close()
    ray.get([a.stop.remote() for a in actors])
    ray.get(runs)
    for a in actors:
        ray.kill(a)
    return {
        "steps": learner.step,
        "dropped_stale_samples": dropped,
        "trainer_busy_fraction": round(busy_s / max(busy_s + idle_s, 1e-9), 3),
        "mean_weight_push_s": round(sum(push_s) / len(push_s), 3) if push_s else None,
        "final_checkpoint": str(latest_checkpoint(out / "checkpoints")),
    }


if __name__ == "__main__":
    main()
