"""Prompt encoding: the token ids the student and the teacher condition on."""

from __future__ import annotations

from typing import Any

from trainer.tasks.registry import Example


def encode_prompt(
    example: Example, tokenizer: Any, *, max_prompt_len: int, system_prompt: str | None = None
) -> list[int]:
    """Prompt token ids ending in the assistant generation prompt, so a response follows directly.

    Truncated from the left: the end of a long prompt (the question, the generation prompt) matters most.
    A tokenizer without a chat template (a base model) gets the raw text, the system prompt before it.
    """
    if max_prompt_len < 1:
        raise ValueError(f"max_prompt_len must be >= 1, got {max_prompt_len}")
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": example.prompt})
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = out["input_ids"] if not isinstance(out, list) else out  # transformers 5: a BatchEncoding
    else:
        text = f"{system_prompt}\n\n{example.prompt}" if system_prompt else example.prompt
        ids = tokenizer(text)["input_ids"]
    return [int(t) for t in ids][-max_prompt_len:]
