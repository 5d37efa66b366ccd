"""push_to_hub: check hub access before a run spends hours, then upload a checkpoint with a model card.

Everything goes through huggingface_hub, so its environment applies: HF_TOKEN (or the token `hf auth login`
saved), HF_ENDPOINT, HF_HUB_OFFLINE. The low-level calls (`check_hub_access`, `push_checkpoint`) raise
RuntimeError with one line saying what failed and how to fix it; a run's `check_push` / `push` turn that
into a RunError.
"""

from __future__ import annotations

import logging
from pathlib import Path

from shared.errors import first_line
from trainer.config import OutputConfig, RunConfig
from trainer.errors import RunError

logger = logging.getLogger(__name__)

# Written into a checkpoint dir for resuming only (trainer/learner/local.py `save`: optimizer, scheduler,
# RNG state in `trainer_state.pt`), and the like from other trainers; the model, tokenizer and `adapter/`
# go up.
TRAINING_ONLY = [
    "trainer_state.pt",
    "*.pt",
    "*.pth",
    "optimizer*",
    "scheduler*",
    "rng_state*",
    "training_args.bin",
    ".*",  # hidden files, e.g. a `.step_*.partial` staging dir
    "**/.*",
]
# The run config values a model card shows (only these: the config may hold secrets such as an API key).
CARD_CONFIG_KEYS = (
    "method",
    "task",
    "loss",
    "top_k",
    "gamma",
    "num_logprobs",
    "student_temperature",
    "teacher_temperature",
    "steps",
    "batch_size",
    "grad_accum",
    "lr",
    "lr_schedule",
    "warmup_steps",
    "lora_rank",
    "learner_dtype",
    "train_data",
    "seed",
)
_FIX_TOKEN = "set HF_TOKEN to a token with write access or run `hf auth login`"


def check_hub_access(repo_id: str, token: str | None, *, timeout_s: float = 5.0) -> None:
    """Fail before any work if the checkpoint could not be pushed to `repo_id` (the run's hub_model_id):
    offline mode, no token, a malformed repo id, a hub that does not answer within `timeout_s`, a token the
    hub refuses or that is read-only or outside the repo's namespace. RuntimeError says how to fix it."""
    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if constants.HF_HUB_OFFLINE:
        raise RuntimeError(
            "push_to_hub: HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it where the hub is "
            "reachable, or turn push_to_hub off"
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise RuntimeError(
            f"push_to_hub: hub_model_id {repo_id!r} is not a repo id 'org/name' ({e})"
        ) from None
    token = token or get_token()
    if not token:
        raise RuntimeError(f"push_to_hub: no Hugging Face token found; {_FIX_TOKEN}")
    api = HfApi(token=token)
    # whoami has no timeout: probe with a call that takes one (any HTTP answer, 404 too, means reachable).
    try:
        api.repo_info(repo_id, timeout=timeout_s)
    except HfHubHTTPError:
        pass
    except Exception as e:  # connection refused, DNS, timeout, proxy (httpx errors)
        raise RuntimeError(
            f"push_to_hub: the hub {constants.ENDPOINT} is not reachable "
            f"({type(e).__name__}: {first_line(e)}); check the network / HF_ENDPOINT, "
            "or turn push_to_hub off"
        ) from None
    try:
        who = api.whoami()
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status == 401:
            raise RuntimeError(
                f"push_to_hub: the hub refused the token ({first_line(e)}); {_FIX_TOKEN}"
            ) from None
        logger.warning("push_to_hub: could not check the token (%s); going on", first_line(e))
        return
    except Exception as e:
        raise RuntimeError(f"push_to_hub: the hub {constants.ENDPOINT}: {first_line(e)}") from None
    role = who.get("auth", {}).get("accessToken", {}).get("role")
    if role == "read":
        raise RuntimeError(f"push_to_hub: the token of {who.get('name')} is read-only; {_FIX_TOKEN}")
    namespaces = {who.get("name")} | {org.get("name") for org in who.get("orgs", [])}
    if "/" in repo_id and repo_id.split("/")[0] not in namespaces:
        raise RuntimeError(
            f"push_to_hub: hub_model_id {repo_id!r}: the token's user {who.get('name')!r} cannot write to "
            f"{repo_id.split('/')[0]!r} (theirs: {', '.join(sorted(n for n in namespaces if n))}); "
            "choose a hub_model_id in one of those, or use a token of a member"
        )


def model_card(
    repo_id: str,
    base_model: str,
    teacher_model: str,
    method: str,
    metrics: dict[str, float],
    config: dict,
) -> str:
    """README.md for the pushed model: hub metadata (library, base model, tags) and how it was trained, its
    final held-out metrics, key config values and how to load it."""
    from huggingface_hub import ModelCardData

    base_id = _hub_id(base_model)  # the hub rejects a README whose base_model is not a hub id (a local path)
    data = ModelCardData(
        library_name="transformers",
        base_model=base_id,
        pipeline_tag="text-generation",
        tags=["skd", "knowledge-distillation"],
    )
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"`{base_model}` distilled from the teacher `{teacher_model}` with Speculative Knowledge "
        f"Distillation (SKD, method `{method}`): the student drafts tokens, the teacher keeps those in "
        "its top-K and replaces the first it rejects, and the student is trained on the teacher's "
        "log-probs along these interleaved sequences.",
        "",
        "## Held-out metrics (final evaluation)",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {_cell(k)} | {_number(v)} |" for k, v in sorted(metrics.items())),
        "",
        "## Training configuration",
        "",
        "| setting | value |",
        "|---|---|",
        f"| teacher | `{_cell(teacher_model)}` |",
        f"| student (base) | `{_cell(base_model)}` |",
        *(f"| {k} | {_cell(_number(config[k]))} |" for k in CARD_CONFIG_KEYS if k in config),
        "",
        *_usage(repo_id, lora=bool(config.get("lora_rank"))),
    ]
    return "\n".join(lines) + "\n"


def _usage(repo_id: str, lora: bool) -> list[str]:
    """The model card's "Usage" section: loading with transformers (and the adapter of a LoRA run)."""
    lines = [
        "## Usage",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
        f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
        'messages = [{"role": "user", "content": "Hello!"}]',
        'inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")',
        "print(tokenizer.decode(model.generate(inputs, max_new_tokens=64)[0], skip_special_tokens=True))",
        "```",
    ]
    if lora:
        lines += [
            "",
            "The weights above have the LoRA adapter merged in; the adapter alone is in `adapter/` "
            f'(`PeftModel.from_pretrained(base, "{repo_id}", subfolder="adapter")`).',
        ]
    return lines


def push_checkpoint(
    checkpoint_dir: Path, repo_id: str, token: str | None, card: str, private: bool = False
) -> str:
    """Upload a checkpoint dir (model, tokenizer, `adapter/` of a LoRA run; not the training state) to
    `repo_id` with `card` as its README.md; the repo's URL. RuntimeError with the cause on failure."""
    from huggingface_hub import HfApi

    checkpoint_dir = Path(checkpoint_dir)
    if not (checkpoint_dir / "config.json").is_file():
        raise RuntimeError(f"push_to_hub: {checkpoint_dir} is not a model checkpoint (no config.json)")
    (checkpoint_dir / "README.md").write_text(card)
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=checkpoint_dir,
            ignore_patterns=TRAINING_ONLY,
            commit_message=f"SKD checkpoint {checkpoint_dir.name}",
        )
    except Exception as e:
        raise RuntimeError(
            f"push_to_hub: uploading {checkpoint_dir} to {repo_id} failed: {first_line(e)}"
        ) from e
    logger.info("pushed %s to %s (%s)", checkpoint_dir, url, getattr(commit, "oid", "?"))
    return str(url)


def _hub_id(name: str) -> str | None:
    """`name` as a hub repo id ('org/name', revision dropped), or None for a local path / anything else."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(name).expanduser().exists():
        return None
    repo = name.split("@", 1)[0]
    try:
        validate_repo_id(repo)
    except HFValidationError:
        return None
    return repo if repo.count("/") == 1 else None


def _number(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def hub_repo(cfg: OutputConfig) -> str:
    """The repo a run pushes to: hub_model_id, else the output dir's name (resolved: `--output_dir=.`
    names the current dir)."""
    return cfg.hub_model_id or Path(cfg.output_dir).resolve().name


def check_push(cfg: RunConfig) -> None:
    """push_to_hub fails here, before any work, when the hub, a token or the repo is not usable."""
    try:
        check_hub_access(hub_repo(cfg.part(OutputConfig)), None)
    except RuntimeError as e:
        raise RunError(str(e)) from None


def push(cfg: RunConfig, checkpoint: Path, records: list[dict]) -> None:
    """The final student and a model card with the last held-out metrics, to hub_model_id."""
    from trainer.outputs.metrics import last_evaluation

    metrics = last_evaluation(records)
    config = cfg.model_dump(mode="json")
    embedded = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the embedded defaults are made from
    student = embedded if cfg.student_model == "default" else cfg.student_model
    teacher = embedded if cfg.teacher_model == "default" else cfg.teacher_model
    repo = hub_repo(cfg.part(OutputConfig))
    card = model_card(repo, student, teacher, cfg.method, metrics, config)
    try:
        url = push_checkpoint(checkpoint, repo, None, card, private=cfg.hub_private)
    except RuntimeError as e:
        raise RunError(f"{e} (the checkpoint is kept at {checkpoint}; upload it by hand)") from None
    logger.info("pushed the student to %s", url)
