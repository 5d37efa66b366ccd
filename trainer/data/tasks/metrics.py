"""Task metrics on decoded responses, and how a held-out set is summarised.

A task names two kinds of metric in the registry:

- `metric(example, response, **options)`: one response (exact match, ROUGE, HumanEval `pass`); a set
  reports its mean over the responses that have it (`summarize_scores`).
- `corpus_metric(examples, responses, **options)`: the whole set of the task's responses at once, for
  metrics defined on a test set rather than as a mean of sentence scores (BLEU, chrF++; COMET on request).

`score_set` gives both for a held-out set that may mix tasks; `score_response` is one response's metric.

Names and scales (as `score_set` reports them):

- `exact_match`, `answer_match`, `pass@1`: share of responses, 0-1.
- `rouge1`, `rouge2`, `rougeL`: ROUGE-1/2/L F-measure (`rouge-score`, Porter stemming), 0-1, mean over the
  responses. Its tokenizer keeps only ASCII letters and digits: meant for English text.
- `facts` (varied_summaries): share of the item's fact slots whose value the response states, 0-1;
  its `rouge1`, `rouge2`, `rougeL` are each the best over the item's references.
- `chrf++`, `bleu`: sacrebleu's corpus chrF++ (`CHRF(word_order=2)`) and BLEU (`BLEU()`: 13a tokens,
  exponential smoothing), on sacrebleu's customary 0-100 scale, the numbers its CLI and papers report.
- `comet`: COMET system score (the mean of its segment scores; about 0-1 for the wmt22 models), only when
  `comet_model` is given (`pip install 'skd[comet]'`).
"""

from __future__ import annotations

import functools
import inspect
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.data.tasks.registry import TASKS, Example

_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")
_ANSWER_IS = re.compile(r"answer is\s*:?\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE)
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n")


def _to_float(text: str | None) -> float | None:
    try:
        return float(text.replace(",", "")) if text is not None else None
    except ValueError:
        return None


def numbers_equal(a: str | None, b: str | None) -> bool:
    x, y = _to_float(a), _to_float(b)
    return x is not None and y is not None and abs(x - y) < 1e-6


def normalize(text: str) -> str:
    """Lowercase, punctuation and symbols removed, whitespace collapsed."""
    kept = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text.lower())
    return " ".join(kept.split())


# --- per-response metrics ---------------------------------------------------------------------------------


@functools.cache
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge(example: Example, response: str) -> dict[str, float]:
    """`rouge1`, `rouge2`, `rougeL`: ROUGE-1/2/L F-measure against the reference, 0-1.

    rouge-score lowercases and keeps only [a-z0-9] tokens, so a reference with none (e.g. Chinese text)
    cannot be compared: {} then rather than a meaningless 0 (chrF++ suits such text)."""
    if example.reference is None:
        return {}
    from rouge_score.tokenize import tokenize

    if not tokenize(example.reference, None):
        return {}
    scores = _rouge_scorer().score(example.reference, response)  # (target, prediction)
    return {name: scores[name].fmeasure for name in ROUGE_TYPES}


def mentions(value: str, text: str) -> bool:
    """`value` stated in `text` as whole words after `normalize` (case, punctuation and spacing aside):
    "7 pm" is in "They come at 7 PM.", "2" is not in "12 people"."""
    wanted = normalize(value)
    return bool(wanted) and f" {wanted} " in f" {normalize(text)} "


def summary_facts(example: Example, response: str) -> dict[str, float]:
    """`rouge1`, `rouge2`, `rougeL`: for each, the best ROUGE F-measure over meta["references"] (else the
    reference; rouge-score's `score_multi`), since several phrasings of one summary are all right; `facts`:
    the share of meta["facts"] ({slot: value}) whose value, or one of meta["fact_variants"][slot] ("four"
    for "4"), the response `mentions`, 0-1. Either is left out when the example has nothing to compare."""
    from rouge_score.tokenize import tokenize

    references = example.meta.get("references") or ([example.reference] if example.reference else [])
    references = [r for r in references if tokenize(r, None)]
    scores: dict[str, float] = {}
    if references:
        best = _rouge_scorer().score_multi(references, response)
        scores.update({name: best[name].fmeasure for name in ROUGE_TYPES})
    facts: dict[str, str] = example.meta.get("facts") or {}
    accepted: dict[str, list[str]] = example.meta.get("fact_variants") or {}
    if facts:
        stated = [
            any(mentions(v, response) for v in (value, *accepted.get(slot, ())))
            for slot, value in facts.items()
        ]
        scores["facts"] = sum(stated) / len(stated)
    return scores


def no_metric(example: Example, response: str) -> dict[str, float]:
    """Nothing per response: for tasks scored by their corpus metric alone (translation)."""
    return {}


def text_match(example: Example, response: str) -> dict[str, float]:
    """`exact_match` of normalised text, and ROUGE-1/2/L (`rouge`) against the reference."""
    if example.reference is None:
        return {}
    exact = float(normalize(response) == normalize(example.reference))
    return {"exact_match": exact, **rouge(example, response)}


def first_number_match(example: Example, response: str) -> dict[str, float]:
    """`exact_match` of the response's first number against the reference (short arithmetic answers)."""
    if example.reference is None:
        return {}
    first = _NUMBER.search(response)
    return {"exact_match": float(first is not None and numbers_equal(first.group(), example.reference))}


def first_sentence(text: str) -> str:
    """Up to the first sentence end (., ! or ? before a space or the end) or line break."""
    text = text.strip()
    end = _SENTENCE_END.search(text)
    return text[: end.start()] if end else text


def answer_match(example: Example, response: str) -> dict[str, float]:
    """`answer_match`: meta["answer"] stated in the response's first sentence, as whole words after
    `normalize` ("The capital of France is Paris." matches "Paris"; "Parisian" and an answer given only after
    a first sentence of preamble do not). For short questions that models answer in a sentence."""
    gold = example.meta.get("answer")
    if not isinstance(gold, str) or not normalize(gold):
        return {}
    said = f" {normalize(first_sentence(response))} "
    return {"answer_match": float(f" {normalize(gold)} " in said)}


def final_answer_match(example: Example, response: str) -> dict[str, float]:
    """`exact_match` of the number after the last "answer is" (else the last number) against
    meta["answer"] (else the reference's last number, e.g. a generic JSONL row "... #### 42")."""
    gold = example.meta.get("answer")
    if gold is None and example.reference is not None:
        gold = (_NUMBER.findall(example.reference) or [None])[-1]
    if gold is None:
        return {}
    numbers = _ANSWER_IS.findall(response) or _NUMBER.findall(response)
    return {"exact_match": float(bool(numbers) and numbers_equal(numbers[-1], gold))}


# --- corpus metrics ---------------------------------------------------------------------------------------


def _referenced(examples: list[Example], responses: list[str]) -> tuple[list[Example], list[str]]:
    if len(examples) != len(responses):
        raise ValueError(f"{len(examples)} examples but {len(responses)} responses")
    kept = [(e, r) for e, r in zip(examples, responses) if e.reference is not None]
    return [e for e, _ in kept], [r for _, r in kept]


@functools.cache
def _sacrebleu_metrics():
    from sacrebleu.metrics import BLEU, CHRF

    return CHRF(word_order=2), BLEU()


def chrf_bleu(examples: list[Example], responses: list[str]) -> dict[str, float]:
    """`chrf++` and `bleu`: sacrebleu's corpus scores (0-100) of the responses against the references
    (one reference each): n-gram statistics summed over the corpus, then the score - not a mean of
    sentence scores. {} when no example has a reference."""
    examples, responses = _referenced(examples, responses)
    if not examples:
        return {}
    chrf, bleu = _sacrebleu_metrics()
    references = [[e.reference for e in examples]]
    return {
        "chrf++": chrf.corpus_score(responses, references).score,
        "bleu": bleu.corpus_score(responses, references).score,
    }


_COMET_MODELS: dict[str, Any] = {}


def load_comet(model: str) -> Any:
    """A COMET model (cached): `model` is a local checkpoint (the `.ckpt` file, or the directory that
    `comet.download_model` made, holding `checkpoints/model.ckpt`) or else a hub name such as
    "Unbabel/wmt22-comet-da", downloaded into COMET's cache.

    Raises ImportError without `unbabel-comet`, RuntimeError when the model cannot be loaded (offline and
    not cached, a gated model without a login, a bad path). Call it at start-up to fail early."""
    if model in _COMET_MODELS:
        return _COMET_MODELS[model]
    try:
        from comet import download_model, load_from_checkpoint
    except ImportError as e:
        raise ImportError(
            f"comet_model={model!r}: COMET scoring needs the unbabel-comet package, which is not installed "
            f"({e}); install it with: pip install 'skd[comet]'"
        ) from e
    path = Path(model).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "model.ckpt"
    try:
        checkpoint = str(path) if path.is_file() else download_model(model)
        loaded = load_from_checkpoint(checkpoint)
    except Exception as e:
        raise RuntimeError(
            f"comet_model={model!r}: the COMET model could not be loaded ({type(e).__name__}: {e}). It is "
            "neither a local checkpoint (a .ckpt file, or a directory with checkpoints/model.ckpt) nor a "
            "model that could be downloaded from the Hugging Face hub; without network access, download it "
            "elsewhere (comet.download_model) and set comet_model to its path"
        ) from e
    _COMET_MODELS[model] = loaded
    return loaded


def comet(
    examples: list[Example], responses: list[str], model: str, batch_size: int = 16
) -> dict[str, float]:
    """`comet`: COMET system score of the responses (translations) with `model` (see `load_comet`), on GPU
    when there is one. The source is meta["source"] (flores rows have it), else the prompt."""
    examples, responses = _referenced(examples, responses)
    if not examples:
        return {}
    scorer = load_comet(model)
    import torch

    data = [
        {"src": e.meta.get("source", e.prompt), "mt": r, "ref": e.reference}
        for e, r in zip(examples, responses)
    ]
    gpus = 1 if torch.cuda.is_available() else 0
    prediction = scorer.predict(data, batch_size=batch_size, gpus=gpus, progress_bar=False)
    return {"comet": float(prediction.system_score)}


def translation(
    examples: list[Example], responses: list[str], *, comet_model: str | None = None
) -> dict[str, float]:
    """The translation tasks' corpus metric: `chrf++` and `bleu` (`chrf_bleu`), and `comet` when
    `comet_model` names a COMET model (opt-in: it needs `unbabel-comet` and the model)."""
    scores = chrf_bleu(examples, responses)
    if comet_model and scores:
        scores.update(comet(examples, responses, comet_model))
    return scores


# --- scoring a set ----------------------------------------------------------------------------------------


def score_response(example: Example, response: str, **options) -> dict[str, float]:
    """The example's task metric on one response; {} when there is nothing to compare it with.
    `options` go to the metric (humaneval: `timeout_s`)."""
    return TASKS[example.task].metric(example, response, **options)


def summarize_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the responses that have it; the HumanEval `pass` mean is `pass@1`."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for score in scores:
        for key, value in score.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    return {("pass@1" if k == "pass" else k): sums[k] / counts[k] for k in sums}


@functools.cache
def _keywords(fn: Callable) -> frozenset[str] | None:
    """The options `fn` (a metric: two data arguments first) takes; None when it takes any (**kwargs)."""
    params = list(inspect.signature(fn).parameters.values())[2:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


def _options_for(fn: Callable, options: dict[str, Any]) -> dict[str, Any]:
    accepted = _keywords(fn)
    return options if accepted is None else {k: v for k, v in options.items() if k in accepted}


def score_set(examples: list[Example], responses: list[str], **options) -> dict[str, float]:
    """The task metrics of a set of responses: each per-response metric's mean (`summarize_scores`), and
    each task's corpus metric over that task's examples (a set may mix tasks; the examples are grouped by
    `example.task`). Names and scales: see the module docstring.

    `options` go to the metrics that take them (humaneval: `timeout_s`; translation: `comet_model`); one
    that no registered task's metric takes is a TypeError. When two tasks of the set report the same
    corpus metric, each is reported as `NAME/TASK` (e.g. `bleu/flores`, `bleu/translation`)."""
    return score_set_items(examples, responses, **options)[0]


def score_set_items(
    examples: list[Example], responses: list[str], **options
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """`score_set`'s summary and each response's own scores (in order), each metric computed once."""
    if len(examples) != len(responses):
        raise ValueError(f"{len(examples)} examples but {len(responses)} responses")
    _check_options(options)
    items = [
        TASKS[e.task].metric(e, r, **_options_for(TASKS[e.task].metric, options))
        for e, r in zip(examples, responses)
    ]
    summary = summarize_scores(items)
    groups: dict[str, tuple[list[Example], list[str]]] = {}
    for e, r in zip(examples, responses):
        group = groups.setdefault(e.task, ([], []))
        group[0].append(e)
        group[1].append(r)
    corpus: dict[str, dict[str, float]] = {}
    for task, (task_examples, task_responses) in groups.items():
        fn = TASKS[task].corpus_metric
        if fn is not None:
            corpus[task] = fn(task_examples, task_responses, **_options_for(fn, options))
    reported = Counter(name for scores in corpus.values() for name in scores)
    for task, scores in corpus.items():
        for name, value in scores.items():
            summary[name if reported[name] == 1 else f"{name}/{task}"] = value
    return summary, items


def _check_options(options: dict[str, Any]) -> None:
    known: set[str] = set()
    for task in TASKS.values():
        for fn in (task.metric, task.corpus_metric):
            if fn is not None:
                accepted = _keywords(fn)
                if accepted is None:
                    return
                known |= accepted
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"score_set: no task metric takes the option(s) {unknown}; known: {sorted(known)}")
