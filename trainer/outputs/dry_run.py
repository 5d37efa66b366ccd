"""`--dry_run`: what a run would do, printed before anything starts (no teacher, no Ray, no training).

The resolved config (every field, secrets masked), the models (resolved path, parameters, layers,
vocabulary, read from config.json and the safetensors headers, no weights loaded), the data (rows, where the
held-out rows come from, references, prompt lengths in tokens, truncated prompts) and the plan (steps,
sequences and tokens per step, epochs, evaluations, checkpoints, actors, learner, trackers, push).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from trainer.config import DataConfig, OutputConfig, RolloutConfig, RunConfig, TeacherConfig
from trainer.outputs.hub import hub_repo


def model_summary(path: Path) -> str:
    """Parameters (from the safetensors headers), layers and vocabulary, without loading weights."""
    from safetensors import safe_open

    config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    params = 0
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(file, "pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                shape = f.get_slice(name).get_shape()
                params += math.prod(shape)
    parts = [f"{params / 1e6:.1f}M parameters" if params else "parameters unknown (no safetensors)"]
    if "num_hidden_layers" in config:
        parts.append(f"{config['num_hidden_layers']} layers")
    if "vocab_size" in config:
        parts.append(f"vocabulary {config['vocab_size']:,}")
    return ", ".join(parts)


def describe(cfg: RunConfig, teacher: Path, student: Path, teacher_name: str, student_name: str) -> str:
    """The dry-run report (see the module docstring)."""
    from trainer.data.prompts import load_examples_for

    train, evals, origin = load_examples_for(cfg.part(DataConfig), seed=cfg.seed)
    config = json.dumps(cfg.model_dump(mode="json"), indent=2, default=str)
    lines = ["# SKD dry run (nothing started)", "", "## Config", "", config, ""]
    lines += _models(cfg.part(TeacherConfig), teacher, student, teacher_name, student_name)
    lines += _data(cfg, student, train, evals, origin)
    lines += _plan(cfg, len(train), len(evals))
    return "\n".join(lines) + "\n"


def _models(
    cfg: TeacherConfig, teacher: Path, student: Path, teacher_name: str, student_name: str
) -> list[str]:
    teacher_line = f"- teacher: {teacher_name} -> {teacher}"
    if cfg.teacher_urls:
        teacher_line = f"- teacher: served at {', '.join(cfg.teacher_urls)} (model {teacher_name})"
    if (teacher / "config.json").is_file():
        teacher_line += f" ({model_summary(teacher)})"
    return [
        "## Models",
        "",
        teacher_line,
        f"- student: {student_name} -> {student} ({model_summary(student)})",
        "",
    ]


def _data(cfg: RunConfig, student: Path, train: list, evals: list, origin: str) -> list[str]:
    """Rows, references, prompt lengths in the student's tokens (untruncated) and the held-out source."""
    from transformers import AutoTokenizer

    from trainer.data.prompts import encode, missing_references

    tokenizer = AutoTokenizer.from_pretrained(student)
    whole = cfg.model_copy(update={"max_prompt_len": 10**9})
    data = whole.part(DataConfig)
    lengths = [len(encode(i, ex, tokenizer, data).prompt_ids) for i, ex in enumerate(train)]
    truncated = sum(n > cfg.max_prompt_len for n in lengths)
    with_ref = sum(ex.reference is not None for ex in train)
    tasks = sorted({ex.task for ex in train})
    lines = [
        "## Data",
        "",
        f"- train: {len(train):,} rows from {cfg.train_data} (tasks: {', '.join(tasks)}; "
        f"{with_ref:,} with a reference)",
        f"- prompt tokens: mean {sum(lengths) / max(len(lengths), 1):.0f}, max {max(lengths, default=0)}; "
        f"{truncated:,} longer than max_prompt_len={cfg.max_prompt_len} (cut from the left)",
        f"- held out: {len(evals):,} rows from {origin}",
    ]
    if why := missing_references(cfg.part(RolloutConfig), train):
        lines.append(f"- WARNING: {why}")
    return [*lines, ""]


def _plan(cfg: RunConfig, num_train: int, num_eval: int) -> list[str]:
    per_step = cfg.batch_size * cfg.grad_accum
    evaluations = (cfg.steps // cfg.eval_every) + int(cfg.eval_at_start) + int(cfg.steps % cfg.eval_every > 0)
    checkpoints = -(-cfg.steps // cfg.checkpoint_every)
    kept = min(checkpoints, cfg.save_total_limit or checkpoints)
    learner = f"{cfg.num_learner_workers} x {cfg.learner_backend}" if cfg.num_learner_workers > 1 else "1"
    lora = f", LoRA r={cfg.lora_rank} ({cfg.lora_transport})" if cfg.lora_rank else ""
    teacher = "at " + ", ".join(cfg.teacher_urls) if cfg.teacher_urls else "started by the job"
    lines = [
        "## Plan",
        "",
        f"- method {cfg.method}: K={cfg.top_k}, gamma={cfg.gamma}, loss {cfg.loss}",
        f"- {cfg.steps} optimizer steps x {per_step} sequences = {cfg.steps * per_step:,} sequences "
        f"({cfg.steps * per_step / max(num_train, 1):.2f} epochs), up to {per_step * cfg.max_new_tokens:,} "
        "response tokens per step",
        f"- rollout: {cfg.num_rollout_actors} actor(s) x {cfg.max_inflight_per_actor} sequences in flight; "
        f"teacher {teacher}",
        f"- learner: {learner} worker(s), {cfg.learner_dtype}, {cfg.optimizer}, lr {cfg.lr:g}{lora}",
        f"- {evaluations} evaluations on {num_eval} held-out prompts; {checkpoints} checkpoints, "
        f"{kept} kept (save_total_limit={cfg.save_total_limit})",
        f"- outputs: {cfg.output_dir}; trackers: {', '.join(cfg.report_to) or 'none'}",
    ]
    if cfg.push_to_hub:
        lines.append(f"- push_to_hub: the final checkpoint to {hub_repo(cfg.part(OutputConfig))}")
    return lines
