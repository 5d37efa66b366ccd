"""The varied-summary set (devtools/prompt_sets/make_varied_summaries.py) and its task metric: the shipped
files equal the generator's output, split sizes and disjointness, every fact in every reference, references
that no template of the dialogue gives, and `summary_facts` (best ROUGE over the references, the share of
facts stated) against rouge-score called directly. No models."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from devtools.prompt_sets import make_varied_summaries as gen
from trainer.data.tasks import Example, load_examples, score_response, score_set_items
from trainer.data.tasks.builtin import varied_summaries_row
from trainer.data.tasks.metrics import mentions, normalize

SPLITS = {"train": 1200, "validation": 120, "test": 300}


@pytest.fixture(scope="module")
def built() -> dict[str, list[gen.Item]]:
    return gen.build()


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The generator written twice into fresh directories, byte-identical: the first directory."""
    first, second = tmp_path_factory.mktemp("varied_a"), tmp_path_factory.mktemp("varied_b")
    assert gen.write(first) == SPLITS and gen.write(second) == SPLITS
    for split in SPLITS:
        assert (first / f"{split}.jsonl").read_bytes() == (second / f"{split}.jsonl").read_bytes()
    return first


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_shipped_files_match_the_generator(generated):
    """The committed data is what the generator writes now (regenerate with `python -m
    devtools.prompt_sets.make_varied_summaries` after editing it), small enough for package data."""
    total = 0
    for split, n in SPLITS.items():
        shipped = gen.OUT_DIR / f"{split}.jsonl"
        assert shipped.read_bytes() == (generated / f"{split}.jsonl").read_bytes(), shipped
        assert len(read(shipped)) == n
        total += shipped.stat().st_size
    assert total < 3_000_000


def test_splits_are_disjoint_and_cover_every_scenario(built):
    combos = {
        split: {(i.row["topic"], tuple(sorted(i.row["facts"].items()))) for i in items}
        for split, items in built.items()
    }
    assert {split: len(c) for split, c in combos.items()} == SPLITS
    assert not combos["train"] & combos["test"] and not combos["train"] & combos["validation"]
    assert not combos["validation"] & combos["test"]
    dialogues = {split: {i.row["dialogue"] for i in items} for split, items in built.items()}
    assert not dialogues["train"] & (dialogues["test"] | dialogues["validation"])
    for items in built.values():
        assert {i.row["topic"] for i in items} == {s.topic for s in gen.SCENARIOS}


def test_rows_load_as_the_task_and_carry_their_facts(built):
    """Every shipped row loads through `varied_summaries:PATH`; its references differ and each states every
    fact verbatim; the dialogue states each fact (or a variant) and the wrong value later corrected, which
    no reference repeats."""
    for split, items in built.items():
        examples = load_examples(f"varied_summaries:{gen.OUT_DIR / f'{split}.jsonl'}")
        assert len(examples) == SPLITS[split]
        for item, example in zip(items, examples):
            row = item.row
            assert example.task == "varied_summaries" and example.meta["facts"] == row["facts"]
            assert example.reference == row["summary"] == row["references"][0]
            assert example.prompt.endswith(row["dialogue"]) and row["id"].startswith(f"{split}_")
            assert len(set(row["references"])) == len(row["references"]) == 3
            assert len(row["facts"]) == 5
            for slot, value in row["facts"].items():
                assert all(value.lower() in r.lower() and mentions(value, r) for r in row["references"])
                spellings = [value, *row["fact_variants"].get(slot, [])]
                assert any(mentions(v, row["dialogue"]) for v in spellings), (slot, row["dialogue"])
            wrong_slot, wrong = item.wrong
            assert wrong != row["facts"][wrong_slot] and mentions(wrong, row["dialogue"])
            assert not any(mentions(wrong, r) for r in row["references"])


def slot_order(text: str, facts: dict[str, str], variants: dict[str, list[str]]) -> list[str]:
    """The slots in the order the text states them (a fact's last mention: in a dialogue, after its
    correction)."""
    spaced = f" {normalize(text)} "

    def position(slot: str) -> int:
        return max(spaced.rfind(f" {normalize(v)} ") for v in [facts[slot], *variants.get(slot, [])])

    return sorted(facts, key=position)


def test_references_are_not_a_template_of_the_dialogue(built):
    """Each item's references use different phrasings; across items every phrasing of every fact and lead
    is used, the first references of one scenario take many shapes, and the order of the facts in the
    first reference matches their order in the dialogue no more often than chance would."""
    items = [i for split in built.values() for i in split]
    used = Counter()
    for item in items:
        shapes = item.shapes
        assert len(set(shapes)) == len(shapes) == 3
        for lead, chosen in shapes:
            used[(item.scenario.topic, "lead", lead)] += 1
            used.update((item.scenario.topic, slot, i) for slot, i in chosen)
    expected = {(s.topic, "lead", i) for s in gen.SCENARIOS for i in range(len(s.leads))}
    expected |= {(s.topic, slot, i) for s in gen.SCENARIOS for slot, f in s.facts.items() for i in range(3)}
    assert set(used) == expected and len(expected) == 5 * (3 + 5 * 3)
    for scenario in gen.SCENARIOS:
        firsts = {i.shapes[0] for i in built["train"] if i.scenario is scenario}
        assert len(firsts) >= 200, (scenario.topic, len(firsts))
    same_order = 0
    for item in built["train"]:
        row = item.row
        in_reference = slot_order(row["summary"], row["facts"], {})
        assert in_reference == [slot for slot, _ in item.shapes[0][1]]
        same_order += in_reference == slot_order(row["dialogue"], row["facts"], row["fact_variants"])
    assert same_order / len(built["train"]) < 0.05  # 1/120 for 5 facts in independent orders


def example(row: dict) -> Example:
    meta = {k: row[k] for k in ("references", "facts", "fact_variants")}
    return Example(prompt=row["dialogue"], reference=row["summary"], task="varied_summaries", meta=meta)


def test_each_reference_scores_one_and_unrelated_text_scores_low(built):
    examples = [example(i.row) for i in built["test"]]
    for k in range(3):
        summary, _ = score_set_items(examples, [e.meta["references"][k] for e in examples])
        assert summary == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "facts": 1.0}
    unrelated = "The quarterly report shows that sales rose slightly in the northern region."
    summary, _ = score_set_items(examples, [unrelated] * len(examples))
    assert summary["facts"] == 0.0 and summary["rougeL"] < 0.2
    assert score_response(examples[0], "") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "facts": 0.0}


def test_one_wrong_fact_scores_n_minus_one_over_n(built):
    for item in built["validation"][:40]:
        row = item.row
        n = len(row["facts"])
        for slot, value in row["facts"].items():
            other = next(v for v in item.scenario.facts[slot].values if v != value)
            response = re.sub(rf"\b{re.escape(value)}\b", other, row["references"][1])
            assert response != row["references"][1]
            assert score_response(example(row), response)["facts"] == pytest.approx((n - 1) / n), response


def test_variants_count_and_partial_numbers_do_not():
    row = {
        "dialogue": "#Person1#: A table for four at 7 pm.",
        "summary": "#Person1# books a table for 4 people at 7 pm.",
        "references": ["#Person1# books a table for 4 people at 7 pm.", "The table is for 4 at 7 pm."],
        "facts": {"people": "4", "time": "7 pm"},
        "fact_variants": {"people": gen.variants("4"), "time": gen.variants("7 pm")},
    }
    score = lambda text: score_response(example(row), text)["facts"]  # noqa: E731
    assert score("They booked for FOUR people at 7PM.") == 1.0
    assert score("They booked for four people at 7 p.m.") == 1.0
    assert score("A table for 14 people at 17 pm.") == 0.0
    assert score("Table for 4 people,\n at 7   pm!") == 1.0


def test_rouge_is_the_best_reference_computed_directly(built):
    """rougeL equals the best single reference's ROUGE-L from rouge-score itself; for some responses the
    best is not the first reference, so a first-reference-only score would be lower."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    better_than_first = 0
    for item in built["test"][:60]:
        refs = item.row["references"]
        response = " ".join(refs[2].split(". ")[:4])  # a shortened third phrasing
        direct = [scorer.score(r, response)["rougeL"].fmeasure for r in refs]
        got = score_response(example(item.row), response)["rougeL"]
        assert got == pytest.approx(max(direct)) and got < 1.0
        better_than_first += max(direct) > direct[0] + 1e-9
    assert better_than_first >= 30


def test_generic_rows_and_bad_rows():
    """A generic row naming the task is scored from its meta; without meta only ROUGE against the
    reference; the row parser names the bad field."""
    facts_only = Example(prompt="p", task="varied_summaries", meta={"facts": {"day": "Monday"}})
    assert score_response(facts_only, "See you on monday.") == {"facts": 1.0}
    plain = Example(prompt="p", reference="They meet on Monday.", task="varied_summaries")
    assert score_response(plain, "They meet on Monday.")["rougeL"] == 1.0
    assert varied_summaries_row({"dialogue": "d", "summary": "s"}).meta["references"] == ["s"]
    for bad, field in (
        ({"references": "s"}, "references"),
        ({"references": ["s", ""]}, "references"),
        ({"summary": "s", "facts": {"day": 3}}, "facts"),
        ({"summary": "s", "facts": {"day": "x"}, "fact_variants": {"time": ["y"]}}, "fact_variants"),
    ):
        with pytest.raises(ValueError, match=field):
            varied_summaries_row({"dialogue": "d", **bad})
