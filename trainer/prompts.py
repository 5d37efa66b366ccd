"""The run's prompts: train and eval examples loaded from their specs and tokenised with the chat template."""

from __future__ import annotations

from trainer.config import RunConfig
from trainer.tasks import Example, encode_prompt, load_examples
from trainer.types import Prompt


def encode(index: int, example: Example, tokenizer, cfg: RunConfig) -> Prompt:
    """A prompt with its reference (if any) tokenised and cut to `max_new_tokens`, ending in EOS."""
    ids = encode_prompt(
        example, tokenizer, max_prompt_len=cfg.max_prompt_len, system_prompt=cfg.system_prompt
    )
    if not ids:  # vLLM would fail mid-run on it ("The decoder prompt cannot be empty")
        raise ValueError(f"{example.source or f'prompt {index}'}: the prompt encodes to zero tokens")
    ref = tokenizer(example.reference, add_special_tokens=False)["input_ids"] if example.reference else None
    if ref is not None and tokenizer.eos_token_id is not None:
        ref = [*ref[: cfg.max_new_tokens - 1], tokenizer.eos_token_id]
    return Prompt(index=index, prompt_ids=ids, reference_ids=ref)


def load_prompts(
    cfg: RunConfig, tokenizer, needs_reference: bool
) -> tuple[list[Prompt], list[Example], list[list[int]]]:
    """(training prompts, held-out examples, their prompt ids)."""
    train = load_examples(cfg.train_data, split="train")
    evals = load_examples(cfg.eval_data, split="eval", limit=cfg.num_eval_prompts)
    missing = [i for i, ex in enumerate(train) if needs_reference and not ex.reference]
    if missing:
        raise SystemExit(f"method {cfg.method} needs references; {len(missing)} train prompts have none")
    try:
        return (
            [encode(i, ex, tokenizer, cfg) for i, ex in enumerate(train)],
            evals,
            [encode(i, ex, tokenizer, cfg).prompt_ids for i, ex in enumerate(evals)],
        )
    except ValueError as e:
        raise SystemExit(f"bad prompt: {e}") from None
