"""The run's prompts: train and eval examples loaded from their specs and tokenised with the chat template."""

from __future__ import annotations

from trainer.config import DataConfig, RolloutConfig, RunConfig
from trainer.data.tasks import (
    Columns,
    DataOptions,
    Example,
    NoEvalSplit,
    encode_prompt,
    hold_out,
    load_examples,
)
from trainer.errors import RunError
from trainer.records import Prompt


def encode(index: int, example: Example, tokenizer, cfg: DataConfig) -> Prompt:
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


def data_options(cfg: DataConfig) -> DataOptions:
    columns = Columns(prompt=cfg.prompt_column, reference=cfg.reference_column, task=cfg.task)
    return DataOptions(columns=columns, train_split=cfg.train_split, eval_split=cfg.eval_split)


def load_examples_for(cfg: DataConfig, *, seed: int) -> tuple[list[Example], list[Example], str]:
    """(train examples, held-out examples, where the held-out ones come from); `seed` picks the rows held out.

    eval_data given: its eval split (a single file: all of it). Unset: `eval_fraction` of train_data held
    out, else train_data's own eval split, else (a source without one) num_eval_prompts rows held out.
    """
    options = data_options(cfg)
    train = load_examples(cfg.train_data, split="train", options=options)
    if cfg.eval_data is not None:
        try:
            evals = load_examples(cfg.eval_data, split="eval", options=options)
        except NoEvalSplit:  # one file named as eval data: all of it
            evals = load_examples(cfg.eval_data, split="train", options=options)
        origin = cfg.eval_data
    elif cfg.eval_fraction > 0:
        train, evals = _hold_out(cfg, seed, train, max(1, round(cfg.eval_fraction * len(train))))
        origin = f"{cfg.eval_fraction:.0%} of {cfg.train_data}, held out"
    else:
        try:
            evals = load_examples(cfg.train_data, split="eval", options=options)
            origin = f"{cfg.train_data} (eval split)"
        except NoEvalSplit:
            train, evals = _hold_out(cfg, seed, train, cfg.num_eval_prompts)
            origin = f"{cfg.num_eval_prompts} rows of {cfg.train_data}, held out (set eval_data to choose)"
    return train, evals[: cfg.num_eval_prompts], origin


def _hold_out(
    cfg: DataConfig, seed: int, train: list[Example], n: int
) -> tuple[list[Example], list[Example]]:
    try:
        return hold_out(train, n, seed)
    except ValueError as e:
        raise RunError(
            f"train_data {cfg.train_data}: {e}; set eval_data, or lower num_eval_prompts / eval_fraction"
        ) from None


def missing_references(cfg: RolloutConfig, train: list[Example]) -> str | None:
    """Why cfg.method cannot train on these rows (some lack the reference it needs), or None."""
    from trainer.methods import lookup

    missing = sum(not ex.reference for ex in train) if lookup(cfg.method).needs_reference else 0
    return f"method {cfg.method} needs references; {missing} train prompts have none" if missing else None


def load_prompts(cfg: RunConfig, tokenizer) -> tuple[list[Prompt], list[Example], list[list[int]]]:
    """(training prompts, held-out examples, their prompt ids). A bad row or source stops with one line."""
    try:
        train, evals, _ = load_examples_for(cfg.part(DataConfig), seed=cfg.seed)
    except ValueError as e:  # a bad row, file or spec: the message names it
        raise RunError(f"bad data: {e}") from None
    if why := missing_references(cfg.part(RolloutConfig), train):
        raise RunError(why)
    data = cfg.part(DataConfig)
    try:
        return (
            [encode(i, ex, tokenizer, data) for i, ex in enumerate(train)],
            evals,
            [encode(i, ex, tokenizer, data).prompt_ids for i, ex in enumerate(evals)],
        )
    except ValueError as e:
        raise RunError(f"bad prompt: {e}") from None
