"""Prompt encoding: the token ids the student and the teacher condition on."""

from __future__ import annotations

from typing import Any

from trainer.data.tasks.registry import Example


def encode_prompt(
    example: Example, tokenizer: Any, *, max_prompt_len: int, system_prompt: str | None = None
) -> list[int]:
    """Prompt token ids ending in the assistant generation prompt, so a response follows directly.

    Truncated from the left: the end of a long prompt (the question, the generation prompt) matters most.
    A conversational example renders all its turns; `system_prompt` is added unless it has a system turn.
    A tokenizer without a chat template (a base model) gets the raw text (turns separated by blank lines),
    the system prompt before it.
    """
    if max_prompt_len < 1:
        raise ValueError(f"max_prompt_len must be >= 1, got {max_prompt_len}")
    turns = [t.model_dump() for t in example.messages or []] or [{"role": "user", "content": example.prompt}]
    if system_prompt and turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": system_prompt})
    if getattr(tokenizer, "chat_template", None):
        out = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=True)
        ids = out["input_ids"] if not isinstance(out, list) else out  # transformers 5: a BatchEncoding
    else:
        ids = tokenizer("\n\n".join(t["content"] for t in turns))["input_ids"]
    return [int(t) for t in ids][-max_prompt_len:]
