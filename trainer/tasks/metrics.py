"""Task metrics on decoded responses, and how they are averaged over a set.

Each function here is a `Metric` a task can name in the registry. `score_response` dispatches on the
example's task; `summarize_scores` averages each metric over the responses that have it.
"""

from __future__ import annotations

import re
import unicodedata

from trainer.tasks.registry import TASKS, Example

_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")
_ANSWER_IS = re.compile(r"answer is\s*:?\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE)


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


def token_f1(response: str, reference: str) -> float:
    """Unigram F1 on normalised words: a graded signal where exact match is ~0 (summaries, translations)."""
    pred, gold = normalize(response).split(), normalize(reference).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum(min(pred.count(w), gold.count(w)) for w in set(pred))
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def text_match(example: Example, response: str) -> dict[str, float]:
    """`exact_match` of normalised text and `token_f1` against the reference."""
    if example.reference is None:
        return {}
    return {
        "exact_match": float(normalize(response) == normalize(example.reference)),
        "token_f1": token_f1(response, example.reference),
    }


def first_number_match(example: Example, response: str) -> dict[str, float]:
    """`exact_match` of the response's first number against the reference (short arithmetic answers)."""
    if example.reference is None:
        return {}
    first = _NUMBER.search(response)
    return {"exact_match": float(first is not None and numbers_equal(first.group(), example.reference))}


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
