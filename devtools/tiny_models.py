"""Tiny random Hugging Face models (a few MB) for tests, benchmarks and smoke runs.

Real models cannot be downloaded here, so tests build their own: a byte-level BPE tokenizer trained on
a fixed corpus and small Llama models sharing it. A teacher and a student built with different seeds
(and sizes) have the same vocabulary, as SKD requires. Deterministic for a given seed.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus() -> list[str]:
    """A fixed training corpus: the source of a few standard-library modules."""
    import argparse
    import dataclasses
    import json as json_mod
    import textwrap

    return [inspect.getsource(m) for m in (argparse, dataclasses, json_mod, textwrap)]


def build_tokenizer(out_dir: str | Path, vocab_size: int = 512) -> None:
    """Train a byte-level BPE tokenizer and save it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))


def build_tiny_llama(
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 256,
    max_position_embeddings: int = 1024,
    logit_scale: float = 1.0,
    tokenizer_dir: str | Path | None = None,
    tie_word_embeddings: bool = False,
) -> Path:
    """Save a random Llama model (fp32 safetensors) with the shared tiny tokenizer into `out_dir`.

    `logit_scale` multiplies the output embedding so the model's next-token distributions are as
    peaked as a trained model's (random init gives near-uniform ones, useless for top-K tests).
    `tie_word_embeddings`: the head shares the input embedding (as in SmolLM2 and small Qwen models).
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir is None:
        build_tokenizer(out)
    else:
        AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    with torch.no_grad():
        model.lm_head.weight.mul_(logit_scale)
    model.save_pretrained(str(out), safe_serialization=True)
    model.generation_config.save_pretrained(str(out))
    (out / "tiny_model.json").write_text(json.dumps({"seed": seed, "logit_scale": logit_scale}))
    return out


def build_teacher_and_student(root: str | Path) -> dict[str, Path]:
    """The pair the tests and the fault benchmark use: a teacher and a smaller student sharing one
    tokenizer (vocab 512), with trained-like peaked distributions."""
    root = Path(root)
    build_tokenizer(root / "tokenizer")
    return {
        "teacher": build_tiny_llama(
            root / "teacher", seed=1, logit_scale=8.0, tokenizer_dir=root / "tokenizer"
        ),
        "student": build_tiny_llama(
            root / "student", seed=2, hidden_size=64, logit_scale=4.0, tokenizer_dir=root / "tokenizer"
        ),
    }
