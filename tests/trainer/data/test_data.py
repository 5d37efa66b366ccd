"""Data loading, prompt encoding and task metrics (trainer/data/tasks/), all offline."""

from __future__ import annotations

import json
import re
import time

import psutil
import pytest

from trainer.data.tasks import (
    PROMPT_SETS,
    SAMPLES,
    Example,
    encode_prompt,
    humaneval_program,
    load_examples,
    score_response,
    summarize_scores,
)


@pytest.mark.parametrize("spec", ["gsm8k", "dialogsum", "flores:eng_Latn-deu_Latn"])
def test_hub_without_network_is_a_clear_error(spec, monkeypatch, hub):
    import datasets
    import huggingface_hub

    # read from the environment when first imported (maybe by an earlier test): set them where they live
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    counted = hub("reset")  # where a call would go: none may
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", counted.url)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", counted.url)
    with pytest.raises(RuntimeError, match=r"(datasets|hub).*:PATH"):
        load_examples(spec, split="eval")
    assert counted.connections == 0


# --- embedded set -----------------------------------------------------------------------------------------


def _recompute(prompt: str) -> int:
    a, op, b = re.search(r"(\d+) ([-+*]) (\d+)", prompt).groups()
    return {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]


def test_embedded_sets():
    train, evals = load_examples("embedded"), load_examples("embedded", split="eval")
    assert (len(train), len(evals)) == (600, 64)
    assert not {e.prompt for e in train} & {e.prompt for e in evals}
    assert len({e.prompt for e in train}) == 600 and len({e.prompt for e in evals}) == 64
    for examples in (train, evals):
        arith = [e for e in examples if e.task == "arithmetic"]
        chat = [e for e in examples if e.task == "chat"]
        assert len(arith) == len(chat) == len(examples) // 2
        assert all(e.reference is None for e in chat)
        for e in arith:
            assert e.reference == str(_recompute(e.prompt)), e.prompt
            assert score_response(e, e.reference) == {"exact_match": 1.0}
    assert load_examples("embedded", limit=7) == train[:7]
    total = sum(p.stat().st_size for p in PROMPT_SETS.glob("embedded_*.jsonl"))
    assert total < 200_000


def test_bad_spec_and_split():
    with pytest.raises(ValueError, match="accepted forms"):
        load_examples("nonsense")
    with pytest.raises(ValueError, match="split"):
        load_examples("embedded", split="test")
    with pytest.raises(ValueError, match="SRC-TGT"):
        load_examples("flores")


# --- generic JSONL ----------------------------------------------------------------------------------------


def test_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"prompt": "Hi"}, {"prompt": "2+2?", "reference": "4", "task": "arithmetic"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    examples = load_examples(str(path))
    expected = [Example(prompt="Hi"), Example(prompt="2+2?", reference="4", task="arithmetic")]
    assert [e.model_dump() for e in examples] == [e.model_dump() for e in expected]
    assert examples[0].task == "chat" and examples[1].source == f"{path}:2"  # where, for error messages
    assert load_examples(str(path), limit=1) == examples[:1]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"reference": "x"}', "field 'prompt'"),
        ('{"prompt": 3}', "field 'prompt'"),
        ('{"prompt": "p", "task": "poetry"}', "field 'task'"),
        ('{"prompt": "p"', "invalid JSON"),
        ('["p"]', "JSON object"),
    ],
)
def test_jsonl_bad_line(tmp_path, line, expected):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2") + ".*" + re.escape(expected)):
        load_examples(str(path))


# --- TASK:PATH samples ------------------------------------------------------------------------------------


def test_gsm8k_sample():
    examples = load_examples(f"gsm8k:{SAMPLES / 'gsm8k.jsonl'}")
    assert len(examples) == 5 and all(e.task == "gsm8k" for e in examples)
    e = examples[0]
    assert e.prompt.startswith("Solve the problem.") and "Mira buys 3 notebooks" in e.prompt
    assert e.meta == {"answer": "14"}
    assert "<<" not in e.reference and e.reference.endswith("The answer is 14.")
    assert examples[4].meta["answer"] == "1000"  # "#### 1,000"
    assert all(score_response(x, x.reference)["exact_match"] == 1.0 for x in examples)


def test_dialogsum_sample():
    examples = load_examples(f"dialogsum:{SAMPLES / 'dialogsum.jsonl'}")
    assert len(examples) == 5 and all(e.task == "dialogsum" for e in examples)
    e = examples[1]
    assert e.prompt.startswith("Summarize the dialogue") and "flickers" in e.prompt
    assert e.reference.startswith("#Person1# returns a flickering lamp")
    assert score_response(e, e.reference) == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}


def test_a_task_file_holds_out_rows_instead_of_evaluating_on_its_training_rows():
    """TASK:PATH is one file: no eval split of its own, so num_eval_prompts rows are held out of training."""
    from trainer.config import RunConfig
    from trainer.data.prompts import load_examples_for
    from trainer.data.tasks import NoEvalSplit

    spec = f"gsm8k:{SAMPLES / 'gsm8k.jsonl'}"
    with pytest.raises(NoEvalSplit):
        load_examples(spec, split="eval")
    train, evals, origin = load_examples_for(RunConfig(train_data=spec, num_eval_prompts=2), seed=0)
    assert (len(train), len(evals)) == (3, 2) and "held out" in origin
    assert not {e.source for e in train} & {e.source for e in evals}


def test_flores_sample(tmp_path):
    examples = load_examples(f"flores:{SAMPLES / 'flores_eng-deu.jsonl'}")
    assert len(examples) == 5 and all(e.task == "flores" for e in examples)
    e = examples[0]
    assert e.prompt == "Translate from English to German.\n\nThe library opens at nine o'clock every morning."
    assert e.reference == "Die Bibliothek öffnet jeden Morgen um neun Uhr."
    assert e.meta == {
        "source_lang": "eng_Latn",
        "target_lang": "deu_Latn",
        "source": e.prompt.split("\n\n")[1],
    }
    assert score_response(e, e.reference) == {}  # scored as a corpus (test_task_metrics.py)
    # explicit direction keys override the key order
    path = tmp_path / "rev.jsonl"
    row = {"sentence_eng_Latn": "Hello.", "sentence_deu_Latn": "Hallo.", "source_lang": "deu_Latn"}
    path.write_text(json.dumps({**row, "target_lang": "eng_Latn"}) + "\n")
    (rev,) = load_examples(f"flores:{path}")
    assert rev.prompt.startswith("Translate from German to English.") and rev.reference == "Hello."
    path.write_text(json.dumps({"sentence_eng_Latn": "Hello."}) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:1") + ".*two sentence_"):
        load_examples(f"flores:{path}")


def test_task_file_bad_row(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "no final line"}) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:1") + ".*####"):
        load_examples(f"gsm8k:{path}")
    path.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:1") + ".*'answer'"):
        load_examples(f"gsm8k:{path}")


# --- HumanEval --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def humaneval() -> dict[str, list[Example]]:
    return {split: load_examples("humaneval", split=split) for split in ("train", "eval")}


def test_humaneval_split(humaneval):
    train, evals = humaneval["train"], humaneval["eval"]
    assert (len(train), len(evals)) == (131, 33)
    assert evals[0].meta["task_id"] == "HumanEval/0" and evals[1].meta["task_id"] == "HumanEval/5"
    assert not {e.meta["task_id"] for e in train} & {e.meta["task_id"] for e in evals}
    e = train[0]
    assert e.task == "humaneval" and set(e.meta) == {"task_id", "prompt", "test", "entry_point"}
    assert e.meta["prompt"] in e.prompt and "```python" in e.prompt


def test_humaneval_scoring(humaneval):
    for e in humaneval["eval"][:3]:
        assert score_response(e, e.reference) == {"pass": 1.0}, e.meta["task_id"]
        # the whole function in a fenced block, as a chat model answers
        fenced = f"Here you go:\n```python\n{e.meta['prompt']}{e.reference}```\nDone."
        assert score_response(e, fenced) == {"pass": 1.0}, e.meta["task_id"]
        assert score_response(e, "    return None\n") == {"pass": 0.0}
        assert score_response(e, "this is not code") == {"pass": 0.0}


def test_humaneval_infinite_loop_times_out(humaneval):
    e = humaneval["eval"][0]
    mine = psutil.Process()
    before = {p.pid for p in mine.children(recursive=True)}  # (a shared teacher's, started by a fixture)
    start = time.monotonic()
    assert score_response(e, "    while True:\n        pass\n", timeout_s=2) == {"pass": 0.0}
    assert time.monotonic() - start >= 2  # ended by its timeout (not by an error), and the program is gone:
    assert {p.pid for p in mine.children(recursive=True)} <= before  # killed, not left spinning


def test_humaneval_program_uses_fenced_definition(humaneval):
    e = humaneval["train"][0]
    program = humaneval_program(e, f"```python\ndef {e.meta['entry_point']}(*a):\n    return 1\n```")
    assert program.startswith(e.meta["prompt"])
    assert f"\ndef {e.meta['entry_point']}(*a):\n    return 1\n" in program
    assert program.rstrip().endswith(f"check({e.meta['entry_point']})")


# --- encode_prompt ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from devtools.tiny_models import build_tokenizer

    path = tmp_path_factory.mktemp("tok")
    build_tokenizer(path)
    return AutoTokenizer.from_pretrained(str(path))


def test_encode_prompt_chat_template(tokenizer):
    e = Example(prompt="Write one short sentence about the ocean.")
    ids = encode_prompt(e, tokenizer, max_prompt_len=256)
    assert all(isinstance(t, int) for t in ids)
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>user\n") and e.prompt in text
    generation_prompt = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    assert ids[-len(generation_prompt) :] == generation_prompt
    with_system = encode_prompt(e, tokenizer, max_prompt_len=256, system_prompt="Be brief.")
    assert tokenizer.decode(with_system).startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert with_system[-len(ids) :] == ids
    # left truncation keeps the end, generation prompt included
    assert encode_prompt(e, tokenizer, max_prompt_len=10) == ids[-10:]


def test_encode_prompt_without_chat_template(tokenizer):
    raw = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    raw.chat_template = None
    e = Example(prompt="def f(x):\n    return x")
    ids = encode_prompt(e, raw, max_prompt_len=256)
    assert ids == raw(e.prompt)["input_ids"]
    assert encode_prompt(e, raw, max_prompt_len=3) == ids[-3:]


# --- metrics ----------------------------------------------------------------------------------------------


def test_score_arithmetic():
    e = Example(prompt="What is 17 + 25?", reference="42", task="arithmetic")
    assert score_response(e, "42") == {"exact_match": 1.0}
    assert score_response(e, " 42.") == {"exact_match": 1.0}
    assert score_response(e, "41, no 42") == {"exact_match": 0.0}  # the first number counts
    assert score_response(e, "forty-two") == {"exact_match": 0.0}
    neg = Example(prompt="What is 3 - 5?", reference="-2", task="arithmetic")
    assert score_response(neg, "-2") == {"exact_match": 1.0}


def test_score_gsm8k():
    e = Example(prompt="q", reference="...", task="gsm8k", meta={"answer": "1200"})
    assert score_response(e, "3 * 400 = 1200 so the answer is 1,200.") == {"exact_match": 1.0}
    assert score_response(e, "The answer is 1200. (Checked: 2 * 600.)") == {"exact_match": 1.0}
    assert score_response(e, "We get 1200 - 3 = 1197") == {"exact_match": 0.0}  # the last number counts
    assert score_response(e, "We get 1197 + 3 = 1200") == {"exact_match": 1.0}
    assert score_response(e, "$1,200") == {"exact_match": 1.0}
    assert score_response(e, "no idea") == {"exact_match": 0.0}
    from_reference = Example(prompt="q", reference="2 + 2 = 4\n#### 4", task="gsm8k")
    assert score_response(from_reference, "The answer is 4.") == {"exact_match": 1.0}
    assert score_response(Example(prompt="q", task="gsm8k"), "The answer is 4.") == {}


def test_score_chat():
    e = Example(prompt="Capital of France?", reference="Paris.")
    assert score_response(e, "  paris ") == {"exact_match": 1.0, "rouge1": 1.0, "rouge2": 0.0, "rougeL": 1.0}
    s = score_response(e, "It is Paris")  # 1 of 3 response words, the 1 reference word: F1 = 2 * 1/3 / (4/3)
    assert s == {
        "exact_match": 0.0,
        "rouge1": pytest.approx(0.5),
        "rouge2": 0.0,
        "rougeL": pytest.approx(0.5),
    }
    assert score_response(Example(prompt="Write a poem."), "Roses...") == {}


def test_summarize_scores():
    scores = [{"exact_match": 1.0}, {"exact_match": 0.0}, {}, {"exact_match": 0.0}, {"exact_match": 0.0}]
    assert summarize_scores(scores) == {"exact_match": 0.25}
    assert summarize_scores([{"pass": 1.0}, {"pass": 0.0}, {"pass": 1.0}, {"pass": 1.0}]) == {"pass@1": 0.75}
    assert summarize_scores([]) == {}


def test_embedded_set_is_what_its_generator_writes(tmp_path):
    from devtools.prompt_sets import make_embedded

    make_embedded.main(tmp_path)
    for split in ("train", "eval"):
        name = f"embedded_{split}.jsonl"
        assert (tmp_path / name).read_text() == (PROMPT_SETS / name).read_text(), name
