"""Task metrics against independent computations: ROUGE (n-gram overlap, LCS), corpus BLEU and chrF++
(their formulas on summed n-gram statistics), per-task grouping of a mixed set, COMET's errors. No models."""

from __future__ import annotations

import math
import sys
import types
from collections import Counter

import pytest
from sacrebleu.metrics import BLEU, CHRF

from trainer.data.tasks import Example, metrics, score_response, score_set

# --- independent computations -----------------------------------------------------------------------------


def ngrams(tokens, n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def f1(matches: int, n_pred: int, n_ref: int) -> float:
    return 0.0 if matches == 0 else 2 * matches / (n_pred + n_ref)  # 2PR/(P+R) with P=m/n_pred, R=m/n_ref


def hand_rouge_n(pred: str, ref: str, n: int) -> float:
    p, r = ngrams(pred.split(), n), ngrams(ref.split(), n)
    return f1(sum((p & r).values()), sum(p.values()), sum(r.values()))


def hand_rouge_l(pred: str, ref: str) -> float:
    p, r = pred.split(), ref.split()
    lcs = [[0] * (len(r) + 1) for _ in range(len(p) + 1)]
    for i, a in enumerate(p):
        for j, b in enumerate(r):
            lcs[i + 1][j + 1] = lcs[i][j] + 1 if a == b else max(lcs[i][j + 1], lcs[i + 1][j])
    return f1(lcs[-1][-1], len(p), len(r))


def hand_bleu(hyps: list[str], refs: list[str]) -> float:
    """Corpus BLEU-4: clipped n-gram matches and hypothesis n-grams summed over the corpus, geometric mean
    of the four precisions, brevity penalty on the summed lengths (every precision > 0 here: no smoothing)."""
    matches, totals = [0] * 4, [0] * 4
    for h, r in zip(hyps, refs):
        for n in range(1, 5):
            hn, rn = ngrams(h.split(), n), ngrams(r.split(), n)
            matches[n - 1] += sum((hn & rn).values())
            totals[n - 1] += sum(hn.values())
    c, r = sum(len(h.split()) for h in hyps), sum(len(x.split()) for x in refs)
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return 100 * bp * math.exp(sum(math.log(m / t) for m, t in zip(matches, totals)) / 4)


def hand_chrf_pp(hyps: list[str], refs: list[str], beta: float = 2.0) -> float:
    """Corpus chrF++: character 1..6-grams (whitespace removed) and word 1..2-grams, (hyp, ref, match)
    counts summed over the corpus; precision and recall averaged over the orders, then F-beta."""

    def grams(text: str) -> list[Counter]:
        chars = list("".join(text.split()))
        return [ngrams(chars, n) for n in range(1, 7)] + [ngrams(text.split(), n) for n in (1, 2)]

    stats = [[0, 0, 0] for _ in range(8)]
    for h, r in zip(hyps, refs):
        for s, hg, rg in zip(stats, grams(h), grams(r)):
            s[0] += sum(hg.values())
            s[1] += sum(rg.values())
            s[2] += sum((hg & rg).values())
    precision = sum(m / nh for nh, _, m in stats) / len(stats)
    recall = sum(m / nr for _, nr, m in stats) / len(stats)
    return 100 * (1 + beta**2) * precision * recall / (beta**2 * precision + recall)


# A 2-sentence corpus without punctuation (tokenisation is whitespace splitting for every metric), with a
# match at every BLEU order and a hypothesis shorter than the references (brevity penalty < 1).
HYPS = ["the cat is on the mat", "there is a dog in the park"]
REFS = ["the cat sat on the mat", "there is a big dog in the park"]


def translations(task: str = "translation") -> list[Example]:
    return [Example(prompt=f"Translate: {i}", reference=r, task=task) for i, r in enumerate(REFS)]


# --- ROUGE ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "ref"),
    [
        ("on the mat the cat was", "the cat sat on the mat"),
        ("the cat sat on the mat", "the cat sat on the mat"),
        ("a dog ran by the red car and the cat", "the red car hit a dog"),
        ("one two six", "six one two"),
    ],
)
def test_rouge_is_ngram_overlap_and_lcs_f_measure(pred, ref):
    # words of at most 3 letters: rouge-score stems only longer ones, so whitespace splitting is its tokenizer
    e = Example(prompt="Summarize.", reference=ref, task="summarization")
    expected = {"rouge1": hand_rouge_n(pred, ref, 1), "rouge2": hand_rouge_n(pred, ref, 2)}
    expected["rougeL"] = hand_rouge_l(pred, ref)
    assert score_response(e, pred) == pytest.approx(expected)
    assert metrics.rouge(e, pred) == score_response(
        Example(prompt="x", reference=ref, task="dialogsum"), pred
    )


def test_rouge_first_case_by_hand():
    # 5 of 6 words, 3 of 5 bigrams ("the cat", "on the", "the mat"), LCS "on the mat" = 3 of 6
    e = Example(prompt="Summarize.", reference="the cat sat on the mat", task="summarization")
    s = score_response(e, "on the mat the cat was")
    assert s == pytest.approx({"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 3 / 6})


def test_rouge_stems_lowercases_and_skips_text_it_cannot_tokenize():
    e = Example(prompt="Summarize.", reference="The cats were running.", task="summarization")
    assert score_response(e, "the cat was run") == pytest.approx(
        {"rouge1": 0.75, "rouge2": 1 / 3, "rougeL": 0.75}
    )
    assert score_response(e, "") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert score_response(Example(prompt="x", task="summarization"), "text") == {}  # no reference
    chinese = Example(prompt="首都?", reference="巴黎")  # rouge-score keeps [a-z0-9] only: no ROUGE, not 0
    assert score_response(chinese, "巴黎") == {"exact_match": 1.0}
    assert score_response(chinese, "伦敦") == {"exact_match": 0.0}


# --- BLEU, chrF++ -----------------------------------------------------------------------------------------


def test_bleu_and_chrf_are_the_corpus_formulas():
    bleu, chrf = hand_bleu(HYPS, REFS), hand_chrf_pp(HYPS, REFS)
    assert 0 < bleu < 100 and 0 < chrf < 100
    assert score_set(translations(), HYPS) == pytest.approx({"chrf++": chrf, "bleu": bleu}, abs=1e-9)
    # as sacrebleu's own objects (= its CLI: sacrebleu REF -m bleu chrf --chrf-word-order 2) report them
    assert BLEU().corpus_score(HYPS, [REFS]).score == pytest.approx(bleu, abs=1e-9)
    assert CHRF(word_order=2).corpus_score(HYPS, [REFS]).score == pytest.approx(chrf, abs=1e-9)


def test_bleu_by_hand():
    # matches / hypothesis n-grams, sentence 1 + sentence 2: 1-grams (5 + 7) / 13, 2-grams (3 + 5) / 11,
    # 3-grams (1 + 3) / 9, 4-grams (0 + 1) / 7; 13 hypothesis words, 14 reference words
    expected = 100 * math.exp(1 - 14 / 13) * (12 / 13 * 8 / 11 * 4 / 9 * 1 / 7) ** 0.25
    assert score_set(translations(), HYPS)["bleu"] == pytest.approx(expected, abs=1e-9)


def test_corpus_score_is_not_the_mean_of_sentence_scores():
    corpus = score_set(translations(), HYPS)
    bleu_mean = sum(BLEU(effective_order=True).sentence_score(h, [r]).score for h, r in zip(HYPS, REFS)) / 2
    chrf_mean = sum(CHRF(word_order=2).sentence_score(h, [r]).score for h, r in zip(HYPS, REFS)) / 2
    assert abs(corpus["bleu"] - bleu_mean) > 1 and abs(corpus["chrf++"] - chrf_mean) > 0.1
    assert corpus["chrf++"] == pytest.approx(hand_chrf_pp(HYPS, REFS))
    assert chrf_mean == pytest.approx(sum(hand_chrf_pp([h], [r]) for h, r in zip(HYPS, REFS)) / 2)


def test_translation_scores_only_rows_with_references():
    rows = [*translations(), Example(prompt="Translate: 2", task="translation")]
    assert score_set(rows, [*HYPS, "whatever"]) == score_set(translations(), HYPS)
    assert score_set(rows[2:], ["whatever"]) == {}
    assert score_response(rows[0], HYPS[0]) == {}  # nothing per response: a corpus metric
    assert score_set(translations(), list(REFS)) == pytest.approx({"chrf++": 100.0, "bleu": 100.0})


# --- a held-out set ---------------------------------------------------------------------------------------


def test_a_mixed_set_is_scored_per_task():
    summary_ref = "the cat sat on the mat"
    mixed = [
        (translations("flores")[0], HYPS[0]),
        (Example(prompt="2 + 2?", reference="4", task="arithmetic"), "4"),
        (Example(prompt="Summarize.", reference=summary_ref, task="dialogsum"), "on the mat the cat was"),
        (Example(prompt="Capital of France?", reference="Paris."), "It is Paris"),
        (Example(prompt="Write a poem."), "Roses..."),  # chat without a reference: no metric
        (translations("flores")[1], HYPS[1]),
        (Example(prompt="3 + 3?", reference="7", task="arithmetic"), "6"),
    ]
    examples, responses = [e for e, _ in mixed], [r for _, r in mixed]
    summary = score_set(examples, responses)
    assert summary == pytest.approx(
        {
            "exact_match": 1 / 3,  # arithmetic 1, 0 and chat 0
            "rouge1": (5 / 6 + 0.5) / 2,  # dialogsum and chat
            "rouge2": (3 / 5 + 0.0) / 2,
            "rougeL": (3 / 6 + 0.5) / 2,
            "chrf++": hand_chrf_pp(HYPS, REFS),  # the flores rows alone, as one corpus
            "bleu": hand_bleu(HYPS, REFS),
        }
    )
    assert score_set(examples[::-1], responses[::-1]) == pytest.approx(summary)  # order does not matter
    # two tasks reporting the same corpus metric: each under NAME/TASK
    both = score_set([*examples, *translations()], [*responses, REFS[0], "a dog"])
    assert both["bleu/flores"] == pytest.approx(hand_bleu(HYPS, REFS))
    assert both["chrf++/translation"] == pytest.approx(hand_chrf_pp([REFS[0], "a dog"], REFS))
    assert "bleu" not in both and both["exact_match"] == pytest.approx(1 / 3)


def test_score_set_options_and_lengths():
    e = Example(prompt="2 + 2?", reference="4", task="arithmetic")
    assert score_set([e], ["4"], timeout_s=1.0, comet_model=None) == {"exact_match": 1.0}
    assert score_set([], []) == {}
    with pytest.raises(TypeError, match="comet_modle"):
        score_set([e], ["4"], comet_modle="wmt22")
    with pytest.raises(ValueError, match="1 examples but 2 responses"):
        score_set([e], ["4", "5"])


# --- COMET (opt-in) ---------------------------------------------------------------------------------------


@pytest.fixture
def no_comet_cache(monkeypatch):
    monkeypatch.setattr(metrics, "_COMET_MODELS", {})


def test_comet_without_the_package_is_a_clear_error(monkeypatch, no_comet_cache):
    monkeypatch.setitem(sys.modules, "comet", None)  # `import comet` fails, installed or not
    with pytest.raises(ImportError, match=r"unbabel-comet.*pip install 'skd\[comet\]'"):
        score_set(translations(), HYPS, comet_model="Unbabel/wmt22-comet-da")
    # opt-in: without comet_model, or without translations to score, COMET is not needed
    assert "comet" not in score_set(translations(), HYPS, comet_model=None)
    e = Example(prompt="2 + 2?", reference="4", task="arithmetic")
    assert score_set([e], ["4"], comet_model="Unbabel/wmt22-comet-da") == {"exact_match": 1.0}


def fake_comet(monkeypatch, download_model) -> list:
    """A stand-in `comet` module; returns the list of (checkpoint, data) it was asked to score."""
    calls = []

    class Model:
        def __init__(self, checkpoint):
            self.checkpoint = checkpoint

        def predict(self, data, batch_size, gpus, progress_bar):
            calls.append((self.checkpoint, data))
            return types.SimpleNamespace(system_score=0.75, scores=[0.75] * len(data))

    module = types.ModuleType("comet")
    module.download_model = download_model
    module.load_from_checkpoint = Model
    monkeypatch.setitem(sys.modules, "comet", module)
    return calls


def test_comet_model_that_cannot_be_loaded_is_a_clear_error(monkeypatch, no_comet_cache):
    def offline(name):
        raise OSError(f"cannot reach the hub for {name}")

    fake_comet(monkeypatch, offline)
    with pytest.raises(
        RuntimeError, match=r"comet_model='Unbabel/wmt22-comet-da'.*could not be loaded.*OSError"
    ):
        score_set(translations("flores"), HYPS, comet_model="Unbabel/wmt22-comet-da")


def test_comet_scores_a_local_checkpoint(monkeypatch, tmp_path, no_comet_cache):
    def download_model(name):
        raise AssertionError("a local checkpoint is not downloaded")

    calls = fake_comet(monkeypatch, download_model)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "model.ckpt").write_bytes(b"")
    flores = translations("flores")
    flores[0].meta["source"] = "Die Katze sitzt auf der Matte"
    summary = score_set(flores, HYPS, comet_model=str(tmp_path))
    assert summary == pytest.approx(
        {"chrf++": hand_chrf_pp(HYPS, REFS), "bleu": hand_bleu(HYPS, REFS), "comet": 0.75}
    )
    ((checkpoint, data),) = calls
    assert checkpoint == str(tmp_path / "checkpoints" / "model.ckpt")
    assert data == [
        {"src": "Die Katze sitzt auf der Matte", "mt": HYPS[0], "ref": REFS[0]},  # meta["source"]
        {"src": "Translate: 1", "mt": HYPS[1], "ref": REFS[1]},  # else the prompt
    ]


# --- short answers -----------------------------------------------------------------------------------------


def short(answer: str) -> Example:
    return Example(prompt="q", reference=f"... {answer}.", task="short_answer", meta={"answer": answer})


@pytest.mark.parametrize(
    "answer, response, expected",
    [
        ("Paris", "The capital of France is Paris.", 1.0),
        ("Paris", "Paris", 1.0),
        ("cold", "The opposite of 'hot' is 'cold'. This is a basic idea.", 1.0),
        ("Buenos Aires", "The capital of Argentina is Buenos Aires, a large city.", 1.0),
        ("French", "The language spoken in France is French, which is a Romance language.", 1.0),
        ("Paris", "The capital of France is Lyon. Paris is the largest city.", 0.0),  # not the first sentence
        ("Paris", "The capital is Parisian.", 0.0),  # whole words only
        ("mice", "The plural of 'mouse' is 'mouses'.", 0.0),
        ("Rome", "remremrem compcomp", 0.0),
        ("Rome", "", 0.0),
        ("Rome", "Rome\nBerlin", 1.0),
        ("Berlin", "Rome\nBerlin", 0.0),  # a line break ends the first sentence
    ],
)
def test_answer_match_is_the_answer_in_the_first_sentence(answer, response, expected):
    assert score_response(short(answer), response) == {"answer_match": expected}


def test_answer_match_needs_an_answer():
    assert score_response(Example(prompt="q", task="short_answer"), "anything") == {}
    assert score_set([short("Rome"), short("Oslo")], ["It is Rome.", "Bergen."]) == {"answer_match": 0.5}


def test_the_shipped_short_answer_set_is_the_generators_output_with_disjoint_items():
    """The files are what `make_short_answers` writes (reproducible), every row scores 1 on its own
    reference, and no question's item (country, word) is in both train and eval of its family."""
    import json

    from devtools.prompt_sets import make_short_answers
    from trainer.data.tasks import load_examples
    from trainer.data.tasks.loading import PROMPT_SETS

    train_rows, eval_rows = make_short_answers.build()
    for name, rows in (("train", train_rows), ("eval", eval_rows)):
        lines = (PROMPT_SETS / f"short_answers_{name}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == rows
    train, held_out = load_examples("short_answers"), load_examples("short_answers", split="eval")
    assert len(held_out) == make_short_answers.NUM_EVAL and len(train) > 5 * len(held_out)
    assert score_set(train + held_out, [ex.reference for ex in train + held_out]) == {"answer_match": 1.0}
    phrasings = {fam: spec[1] for fam, spec in make_short_answers.FAMILIES.items()}

    def item(ex: Example) -> tuple[str, str]:
        family = ex.meta["family"]
        for phrasing in phrasings[family]:
            head, _, tail = phrasing.partition("{x}")
            if ex.prompt.startswith(head) and ex.prompt.endswith(tail):
                return family, ex.prompt[len(head) : len(ex.prompt) - len(tail)]
        raise AssertionError(f"no phrasing of {family} fits {ex.prompt!r}")

    assert not {item(ex) for ex in train} & {item(ex) for ex in held_out}
    assert {ex.meta["family"] for ex in held_out} == set(phrasings)
