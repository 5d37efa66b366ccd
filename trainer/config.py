"""Run configuration: one pydantic model, from YAML (`--config run.yaml`) plus `--key=value` overrides.

Every field is documented below and printed by `python trainer/main.py --help`. The whole config is
validated before any work starts; an unknown key or a bad value is a clear error naming the field.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Method = Literal["skd", "on_policy", "teacher_sampling", "supervised_kd", "sft", "mixed"]


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- what to distil -----------------------------------------------------------------------------
    method: Method = Field(
        "skd",
        description="skd: student drafts, teacher keeps its top-K and replaces the first miss; on_policy: "
        "student samples, teacher only scores (K = vocab); teacher_sampling: teacher samples (K = 0); "
        "supervised_kd: teacher targets on reference responses; sft: cross-entropy on references; "
        "mixed: supervised_kd with probability mixed_lambda, else skd.",
    )
    teacher_model: str = Field(
        "default", description="HF model dir of the teacher; 'default' = SmolLM2-135M-Instruct (offline)."
    )
    student_model: str = Field(
        "default",
        description="HF model dir of the student; 'default' = the teacher pruned to every n-th layer.",
    )
    prune_keep_every: int = Field(
        2, ge=1, description="Default student: keep teacher layers 0, n, 2n, ... + last."
    )
    teacher_urls: list[str] = Field(
        default_factory=list,
        description="Running teacher servers (requests spread over them, dead ones skipped). Empty: the job "
        "starts `python -m rollout_server` on teacher_model itself and stops it at the end.",
    )
    teacher_api_key: str | None = Field(
        default_factory=lambda: os.environ.get("SKD_TEACHER_API_KEY") or None,
        description="Bearer key of the teacher servers (default: $SKD_TEACHER_API_KEY).",
    )
    teacher_dtype: str = Field("bfloat16", description="dtype of a self-started teacher server.")
    teacher_kv_cache_gib: float = Field(1.0, gt=0, description="KV cache of a self-started teacher server.")

    # --- data ---------------------------------------------------------------------------------------
    train_data: str = Field(
        "embedded",
        description="'embedded' (shipped prompt set), a .jsonl file (prompt, optional reference), "
        "'humaneval', or TASK[:PATH] for gsm8k | dialogsum | flores (hub via `datasets`, or a local JSONL "
        "in that format).",
    )
    eval_data: str = Field("embedded", description="Held-out prompts, same forms as train_data.")
    num_eval_prompts: int = Field(16, ge=1)
    max_prompt_len: int = Field(
        256, ge=8, description="Prompts are truncated from the left to this many tokens."
    )
    max_new_tokens: int = Field(64, ge=1, description="Response length limit (also for evaluation).")
    system_prompt: str | None = Field(None, description="Optional system message for the chat template.")

    # --- SKD ----------------------------------------------------------------------------------------
    top_k: int = Field(25, ge=0, description="Teacher acceptance set size K (the paper's 25).")
    gamma: int = Field(5, ge=1, description="Draft tokens proposed per verification round.")
    num_logprobs: int = Field(20, ge=1, description="Teacher top-k log-probs per position used as targets.")
    student_temperature: float = Field(0.5, ge=0, description="Student drafting temperature (paper: 0.5).")
    student_top_p: float = Field(0.5, gt=0, le=1, description="Student drafting top-p (paper: 0.5).")
    teacher_temperature: float = Field(0.2, ge=0, description="Teacher replacement temperature (paper: 0.2).")
    teacher_top_p: float = Field(0.5, gt=0, le=1, description="Teacher replacement top-p (paper: 0.5).")
    mixed_lambda: float = Field(0.5, ge=0, le=1, description="mixed: fraction of supervised_kd samples.")

    # --- rollout actors -------------------------------------------------------------------------------
    num_rollout_actors: int = Field(1, ge=1)
    max_inflight_per_actor: int = Field(16, ge=1, description="Sequences each actor keeps in flight.")
    actor_num_cpus: float = Field(1.0, ge=0, description="Ray CPUs reserved per actor.")
    actor_num_gpus: float = Field(0.0, ge=0, description="Ray GPUs per actor (student engine).")
    student_dtype: str = Field("bfloat16", description="dtype of the actors' vLLM student engines.")
    student_kv_cache_gib: float = Field(1.0, gt=0)

    # --- training -----------------------------------------------------------------------------------
    steps: int = Field(30, ge=1, description="Optimizer steps.")
    batch_size: int = Field(8, ge=1, description="Sequences per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(5, ge=0)
    lr_schedule: Literal["constant", "linear", "cosine"] = "cosine"
    max_grad_norm: float = Field(1.0, gt=0)
    loss: Literal["forward_kl", "reverse_kl", "jsd"] = Field("forward_kl", description="KD divergence.")
    jsd_beta: float = Field(0.5, gt=0, lt=1)
    sync_every: int = Field(1, ge=1, description="Push student weights to the actors every n steps.")
    max_staleness: int = Field(2, ge=0, description="Drop samples made by weights more versions old.")
    trainer_device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', ...")
    trainer_threads: int = Field(0, ge=0, description="torch threads of the trainer (0 = torch default).")
    seed: int = 0

    # --- evaluation, checkpoints, output -------------------------------------------------------------
    eval_every: int = Field(15, ge=1, description="Evaluate every n steps (and at step 0 and the end).")
    eval_at_start: bool = Field(True, description="Evaluate the initial student (the baseline).")
    checkpoint_every: int = Field(50, ge=1)
    output_dir: Path = Field(Path("outputs/skd-default"), description="Checkpoints, metrics, plots, report.")
    resume: bool = Field(False, description="Continue from the last checkpoint in output_dir.")
    cache_dir: Path | None = Field(
        None, description="Where converted/pruned models go (default ~/.cache/skd)."
    )
    ray_address: str | None = Field(
        None, description="Ray cluster address; unset: the cluster of `ray job submit`, else a local one."
    )


def _coerce(value: str) -> Any:
    """CLI values are YAML scalars: 3, 0.5, true, null, [a, b]."""
    return yaml.safe_load(value)


def parse_args(argv: list[str] | None = None) -> RunConfig:
    """`--config run.yaml` then any `--key=value` / `--key value` overrides; errors name the field."""
    ap = argparse.ArgumentParser(
        prog="trainer/main.py",
        description="SKD training job. With no arguments: the embedded default run.",
        epilog="\n".join(
            f"  --{name}: {f.description or ''} (default: {f.default if f.default_factory is None else '[]'})"
            for name, f in RunConfig.model_fields.items()
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--config", type=Path, help="YAML file with RunConfig fields")
    args, rest = ap.parse_known_args(argv)
    data: dict[str, Any] = {}
    if args.config:
        if not args.config.exists():
            raise SystemExit(f"config file not found: {args.config}")
        data = yaml.safe_load(args.config.read_text()) or {}
        if not isinstance(data, dict):
            raise SystemExit(f"{args.config}: expected a mapping of RunConfig fields")
    i = 0
    while i < len(rest):
        token = rest[i]
        if not token.startswith("--"):
            raise SystemExit(f"unexpected argument {token!r} (overrides look like --key=value)")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 < len(rest) and not rest[i + 1].startswith("--"):
                value, i = rest[i + 1], i + 1
            else:
                value = "true"  # a bare flag: --resume
        data[key.replace("-", "_")] = _coerce(value)
        i += 1
    try:
        return RunConfig(**data)
    except ValidationError as e:
        raise SystemExit(f"invalid configuration:\n{e}") from None
