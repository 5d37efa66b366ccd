"""Bring-your-own data (trainer/data/tasks/rows.py, loading.py, trainer/data/prompts.py): the file formats and
row forms TRL users have, read through `datasets`; column mapping; splits and held-out rows; bad rows named by
file, row and field. All offline."""

from __future__ import annotations

import json
import re

import pytest

from trainer.config import RunConfig
from trainer.data.prompts import load_examples_for
from trainer.data.tasks import Columns, DataOptions, NoEvalSplit, encode_prompt, load_examples, row_to_example
from trainer.errors import RunError


def chat_rows(n: int) -> list[dict]:
    """Multi-turn conversations with a system turn; the last assistant turn is the reference."""
    return [
        {
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": f"Say {i}."},
                {"role": "assistant", "content": f"{i}."},
                {"role": "user", "content": f"And twice {i}?"},
                {"role": "assistant", "content": f"{2 * i}."},
            ]
        }
        for i in range(n)
    ]


CHAT = chat_rows(6)


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    """`datasets` caches what it reads; keep it out of the home directory."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- row forms --------------------------------------------------------------------------------------------


def test_multi_turn_conversation_keeps_earlier_turns_and_takes_the_last_assistant_turn():
    ex = row_to_example(CHAT[3])
    assert ex.reference == "6."
    assert [t.role for t in ex.messages] == ["system", "user", "assistant", "user"]
    assert ex.prompt == "And twice 3?" and ex.task == "chat"


def test_prompt_completion_plain_and_conversational():
    plain = row_to_example({"prompt": "Capital of France?", "completion": "Paris"})
    assert (plain.prompt, plain.reference, plain.messages) == ("Capital of France?", "Paris", None)
    conv = row_to_example(
        {
            "prompt": [{"role": "user", "content": "Capital of France?"}],
            "completion": [{"role": "assistant", "content": "Paris"}],
        }
    )
    assert (conv.prompt, conv.reference, len(conv.messages)) == ("Capital of France?", "Paris", 1)
    assert row_to_example({"prompt": "Hi"}).reference is None
    assert row_to_example({"prompt": "Hi", "reference": "Hello"}).reference == "Hello"  # our own name


def test_column_mapping_and_task():
    row = {"question": "2+2?", "answer": "4", "prompt": "ignored"}
    ex = row_to_example(row, Columns(prompt="question", reference="answer", task="arithmetic"))
    assert (ex.prompt, ex.reference, ex.task) == ("2+2?", "4", "arithmetic")
    assert row_to_example({"prompt": "p", "task": "summarization"}, Columns(task="arithmetic")).task == (
        "summarization"
    )


@pytest.mark.parametrize(
    ("row", "columns", "problem"),
    [
        ({"text": "x"}, Columns(), "field 'prompt' or 'messages': missing"),
        ({"q": "x"}, Columns(prompt="question"), "field 'question': missing"),
        ({"prompt": "x"}, Columns(reference="answer"), "field 'answer': missing"),
        ({"prompt": 3}, Columns(), "field 'prompt'"),
        ({"messages": [{"role": "bot", "content": "x"}]}, Columns(), "field 'messages.0.role'"),
        ({"messages": [{"role": "user", "content": 3}]}, Columns(), "field 'messages.0.content'"),
        ({"messages": [{"role": "user"}]}, Columns(), "field 'messages.0.content'"),
        ({"messages": []}, Columns(), "field 'messages': expected a non-empty list"),
        ({"messages": [{"role": "assistant", "content": "a"}]}, Columns(), "no prompt before it"),
        ({"messages": [{"role": "system", "content": "s"}]}, Columns(), "no user turn"),
        ({"prompt": "p", "completion": 5}, Columns(), "field 'completion'"),
        ({"prompt": "p", "completion": [{"role": "user", "content": "c"}]}, Columns(), "completion.0.role"),
        ({"prompt": "p", "task": "poetry"}, Columns(), "field 'task'"),
    ],
)
def test_bad_rows_name_the_field(row, columns, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        row_to_example(row, columns)


# --- file formats -----------------------------------------------------------------------------------------


def _write_all_formats(tmp_path, rows):
    import datasets

    ds = datasets.Dataset.from_list(rows)
    paths = {"jsonl": _jsonl(tmp_path / "d.jsonl", rows)}
    paths["json"] = tmp_path / "d.json"
    paths["json"].write_text(json.dumps(rows))
    paths["parquet"] = tmp_path / "d.parquet"
    ds.to_parquet(str(paths["parquet"]))
    ds.save_to_disk(str(tmp_path / "saved"))
    paths["save_to_disk"] = tmp_path / "saved"
    return paths


def test_every_local_format_gives_the_same_examples(tmp_path):
    paths = _write_all_formats(tmp_path, CHAT)
    expected = [row_to_example(r).model_dump() for r in CHAT]
    for fmt, path in paths.items():
        got = [e.model_dump() for e in load_examples(str(path))]
        assert got == expected, fmt
    csv = tmp_path / "d.csv"
    csv.write_text('question,answer\nWhat is 7 times 1?,007\n"Say ""hi"", twice",hi hi\n')
    examples = load_examples(str(csv), options=DataOptions(columns=Columns("question", "answer")))
    assert [(e.prompt, e.reference) for e in examples] == [
        ("What is 7 times 1?", "007"),  # kept a string, not the number 7
        ('Say "hi", twice', "hi hi"),
    ]


def test_saved_dataset_dict_splits(tmp_path):
    import datasets

    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(5)]
    dd = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows[:3]), "validation": datasets.Dataset.from_list(rows[3:])}
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    spec = str(tmp_path / "dd")
    assert [e.prompt for e in load_examples(spec)] == ["p0", "p1", "p2"]
    with pytest.raises(NoEvalSplit, match="validation"):
        load_examples(spec, split="eval")  # default eval_split "test" is not there
    options = DataOptions(eval_split="validation")
    assert [e.reference for e in load_examples(spec, split="eval", options=options)] == ["c3", "c4"]
    with pytest.raises(ValueError, match=r"no split 'dev'.*train_split"):
        load_examples(spec, options=DataOptions(train_split="dev"))


@pytest.mark.parametrize(
    ("fmt", "where"),
    [("jsonl", r"d\.jsonl:3"), ("json", r"d\.json row 2"), ("parquet", r"d\.parquet row 2"),
     ("save_to_disk", r"saved row 2")],
)  # fmt: skip
def test_bad_row_names_file_row_and_field(tmp_path, fmt, where):
    rows = [*CHAT[:2], {"messages": [{"role": "narrator", "content": "x"}]}]
    path = _write_all_formats(tmp_path, rows)[fmt]
    with pytest.raises(ValueError, match=where + r".*field 'messages\.0\.role'"):
        load_examples(str(path))


def test_bad_csv_row_names_its_line(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("prompt,completion\nfine,yes\n,missing prompt\n")
    with pytest.raises(ValueError, match=re.escape(f"{csv}:3") + ".*field 'prompt'"):
        load_examples(str(csv))


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_examples(str(tmp_path / "missing.parquet"))
    (tmp_path / "d.txt").write_text("hello")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_examples(str(tmp_path / "d.txt"))
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match=r"broken.parquet: could not read it as parquet"):
        load_examples(str(tmp_path / "broken.parquet"))
    (tmp_path / "not_a_dataset").mkdir()
    with pytest.raises(ValueError, match=r"not a directory written by Dataset.save_to_disk"):
        load_examples(str(tmp_path / "not_a_dataset"))


def test_task_rows_from_parquet(tmp_path):
    import datasets

    from trainer.data.tasks import SAMPLES

    rows = [json.loads(line) for line in (SAMPLES / "dialogsum.jsonl").read_text().splitlines()]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "ds.parquet"))
    from_parquet = load_examples(f"dialogsum:{tmp_path / 'ds.parquet'}")
    from_jsonl = load_examples(f"dialogsum:{SAMPLES / 'dialogsum.jsonl'}")
    assert [e.model_dump() for e in from_parquet] == [e.model_dump() for e in from_jsonl]


def test_hub_dataset_offline_is_a_clear_error(monkeypatch, hub):
    import datasets
    import huggingface_hub

    # read from the environment when first imported (maybe by an earlier test): set them where they live
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    counted = hub("reset")  # where a call would go: none may
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", counted.url)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", counted.url)
    with pytest.raises(RuntimeError, match=r"trl-lib/Capybara.*save_to_disk"):
        load_examples("trl-lib/Capybara:default")
    assert counted.connections == 0
    with pytest.raises(ValueError, match="accepted forms"):
        load_examples("not a/valid/spec")


# --- encoding conversational prompts ----------------------------------------------------------------------


def test_conversation_renders_every_turn_with_the_chat_template(tmp_path):
    from transformers import AutoTokenizer

    from devtools.tiny_models import build_tokenizer

    build_tokenizer(tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    ex = row_to_example(CHAT[2])
    text = tok.decode(encode_prompt(ex, tok, max_prompt_len=512, system_prompt="ignored: has its own"))
    assert text == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nSay 2.<|im_end|>\n"
        "<|im_start|>assistant\n2.<|im_end|>\n<|im_start|>user\nAnd twice 2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_system = row_to_example({"messages": CHAT[2]["messages"][1:]})
    with_default = tok.decode(encode_prompt(no_system, tok, max_prompt_len=512, system_prompt="Be kind."))
    assert with_default.startswith("<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nSay 2.")


# --- which rows are held out ------------------------------------------------------------------------------


def _cfg(**kw) -> RunConfig:
    return RunConfig(**kw)


def test_eval_comes_from_the_sources_own_split_or_held_out_rows(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(20)]
    data = str(_jsonl(tmp_path / "d.jsonl", rows))
    # one file, eval_data unset: num_eval_prompts rows held out, disjoint from training, seeded
    train, evals, origin = load_examples_for(_cfg(train_data=data, num_eval_prompts=5), seed=0)
    assert (len(train), len(evals)) == (15, 5) and "held out" in origin
    assert not {e.prompt for e in train} & {e.prompt for e in evals}
    again = load_examples_for(_cfg(train_data=data, num_eval_prompts=5), seed=0)
    assert [e.prompt for e in again[1]] == [e.prompt for e in evals]
    # eval_fraction
    train, evals, _ = load_examples_for(_cfg(train_data=data, eval_fraction=0.25), seed=0)
    assert (len(train), len(evals)) == (15, 5)
    # eval_data named: all of it (up to num_eval_prompts), train untouched
    train, evals, _ = load_examples_for(_cfg(train_data=data, eval_data=data, num_eval_prompts=4), seed=0)
    assert (len(train), len(evals)) == (20, 4)
    # a source with its own eval split keeps it
    train, evals, _ = load_examples_for(_cfg(), seed=0)
    assert (len(train), len(evals)) == (600, 16)


def test_impossible_held_out_split_is_a_clear_error(tmp_path):
    data = str(_jsonl(tmp_path / "d.jsonl", [{"prompt": f"q{i}"} for i in range(3)]))
    with pytest.raises(RunError, match=r"cannot hold out 16 of 3.*set eval_data"):
        load_examples_for(_cfg(train_data=data), seed=0)
    with pytest.raises(ValueError, match="eval_fraction"):
        _cfg(train_data=data, eval_data=data, eval_fraction=0.5)
