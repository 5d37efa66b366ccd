"""The generated task sets (devtools/prompt_sets/make_word_problems.py, make_dialogue_summaries.py): row
counts, determinism, train/test disjointness, every row read by its task's parser, word-problem answers
re-computed from their calculator annotations, dialogue summaries carrying the slot values, and the shipped
files equal to what the generators write now. No models."""

from __future__ import annotations

import ast
import json
import operator
import re
from fractions import Fraction
from pathlib import Path

import pytest

from devtools.prompt_sets import make_dialogue_summaries, make_word_problems
from trainer.data.tasks.builtin import dialogsum_row, gsm8k_row

GENERATORS = {
    "word_problems": (make_word_problems, {"train": 2000, "test": 200}),
    "dialogue_summaries": (make_dialogue_summaries, {"train": 1500, "test": 150}),
}
BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
ANNOTATION = re.compile(r"(\d+) ([-+*/]) (\d+) = <<([^<>=]+)=([^<>]+)>>(\d+)\b")


def evaluate(expr: str) -> Fraction:
    """Whole numbers combined with + - * / (exact), nothing else."""

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
            return BINOPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError(f"not plain arithmetic: {expr!r}")

    return walk(ast.parse(expr, mode="eval"))


def test_evaluate_is_plain_arithmetic():
    assert evaluate("48/6") == 8 and evaluate("3*4+2") == 14 and evaluate("7/2") == Fraction(7, 2)
    for bad in ("__import__('os')", "2**8", "x+1", "1.5*2"):
        with pytest.raises(ValueError):
            evaluate(bad)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    """Each generator written twice into fresh directories: {name: dir} for the first run, checked equal to
    the second."""
    out = {}
    for name, (module, counts) in GENERATORS.items():
        first, second = tmp_path_factory.mktemp(f"{name}_a"), tmp_path_factory.mktemp(f"{name}_b")
        assert module.write(first) == counts
        assert module.write(second) == counts
        for split in counts:
            assert (first / f"{split}.jsonl").read_bytes() == (second / f"{split}.jsonl").read_bytes()
        out[name] = first
    return out


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("name", GENERATORS)
def test_counts_and_size(generated, name):
    counts = GENERATORS[name][1]
    total = 0
    for split, n in counts.items():
        path = generated[name] / f"{split}.jsonl"
        assert len(read(path)) == n
        total += path.stat().st_size
    assert total < 1_500_000


@pytest.mark.parametrize("name", GENERATORS)
def test_shipped_files_match_the_generator(generated, name):
    """The committed data is what the generator writes now (regenerate with `python -m
    devtools.prompt_sets.make_<name>` after editing it)."""
    module, counts = GENERATORS[name]
    for split in counts:
        shipped = module.OUT_DIR / f"{split}.jsonl"
        assert shipped.read_bytes() == (generated[name] / f"{split}.jsonl").read_bytes(), shipped


def test_word_problem_splits_are_disjoint():
    built = make_word_problems.build()
    train = {(key, numbers) for _, key, numbers in built["train"]}
    test = {(key, numbers) for _, key, numbers in built["test"]}
    assert len(train) == len(built["train"]) and len(test) == len(built["test"])
    assert not train & test
    assert not {r["question"] for r, _, _ in built["train"]} & {r["question"] for r, _, _ in built["test"]}
    assert {key for key, _ in test} == {t.key for t in make_word_problems.TEMPLATES}


def test_word_problem_answers_recompute(generated):
    for split in ("train", "test"):
        for raw in read(generated["word_problems"] / f"{split}.jsonl"):
            assert set(raw) == {"question", "answer"}
            parsed = gsm8k_row(raw)
            final = parsed.meta["answer"]
            lines = raw["answer"].split("\n")
            assert lines[-1] == f"#### {final}" and 2 <= len(lines) - 1 <= 3, raw
            question_numbers = {int(n) for n in re.findall(r"\d+", raw["question"])}
            results: list[int] = []
            for line in lines[:-1]:
                matches = ANNOTATION.findall(line)
                assert len(matches) == 1 and line.count("<<") == 1, line  # one equation a step
                left, op, right, expr, value, shown = matches[0]
                assert expr == f"{left}{op}{right}" and value == shown, line
                result = evaluate(expr)
                assert result.denominator == 1 and result == int(value) and 1 <= result <= 999, line
                for operand in (int(left), int(right)):  # stated, computed before, or a unit constant
                    assert (
                        operand in question_numbers
                        or operand in results
                        or operand in make_word_problems.CONSTANTS
                    )
                results.append(int(value))
            assert str(results[-1]) == final, raw
            assert "<<" not in parsed.reference and parsed.reference.endswith(f"The answer is {final}.")


def test_dialogue_splits_are_disjoint():
    built = make_dialogue_summaries.build()
    combos = {
        split: {(d.row["topic"], tuple(sorted(d.slots.items()))) for d in records}
        for split, records in built.items()
    }
    assert len(combos["train"]) == 1500 and len(combos["test"]) == 150
    assert not combos["train"] & combos["test"]
    assert not {d.row["dialogue"] for d in built["train"]} & {d.row["dialogue"] for d in built["test"]}
    assert {d.row["topic"] for d in built["test"]} == {s.topic for s in make_dialogue_summaries.SCENARIOS}


def test_dialogue_rows_parse_and_summaries_carry_the_slots(generated):
    built = make_dialogue_summaries.build()
    for split, records in built.items():
        shipped = read(generated["dialogue_summaries"] / f"{split}.jsonl")
        assert [d.row for d in records] == shipped
        for d in records:
            row = d.row
            assert set(row) == {"id", "dialogue", "summary", "topic"} and row["id"].startswith(f"{split}_")
            parsed = dialogsum_row(row)
            assert parsed.reference == row["summary"] and parsed.meta == {
                "id": row["id"],
                "topic": row["topic"],
            }
            lines = row["dialogue"].split("\n")
            assert 3 <= len(lines) <= 6
            assert all(re.match(r"#Person[12]#: \S", line) for line in lines), row["dialogue"]
            assert row["summary"].startswith("#Person") and row["summary"].endswith(".")
            for slot, value in d.slots.items():
                assert value in row["summary"] and value in row["dialogue"], (slot, value, row)
            assert d.distractor in row["dialogue"] and d.distractor not in row["summary"]
