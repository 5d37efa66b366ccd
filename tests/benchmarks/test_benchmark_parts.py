"""The logic inside the benchmark scripts, against independent references: the paper-style SKD loop
(benchmarks/reference_loop.py) against transformers' own greedy generation, and the comparison's summary
(benchmarks/compare.py) against statistics computed here. The figures themselves are not tested."""

from __future__ import annotations

import statistics

import pytest
import torch
from transformers import AutoModelForCausalLM

from benchmarks import compare, rollout_speed, time_to_quality
from benchmarks.reference_loop import reference_skd
from trainer.config import RunConfig

PROMPTS = [[5, 17, 42, 99, 3], [250, 7, 7, 300, 12, 64, 1]]


@pytest.fixture(scope="module")
def pair(tiny_models):
    def load(name: str):
        return AutoModelForCausalLM.from_pretrained(tiny_models[name], dtype=torch.float32).eval()

    return load("teacher"), load("student")


def greedy(model, prompt: list[int], n: int) -> list[int]:
    """transformers' greedy generation, without an EOS stop (the loop's EOS set is empty here)."""
    out = model.generate(
        torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=None
    )
    return out[0, len(prompt) :].tolist()


def run_loop(teacher, student, prompt: list[int], **settings) -> dict:
    cfg = RunConfig(max_new_tokens=24, student_temperature=0, teacher_temperature=0, **settings)
    return reference_skd(teacher, student, prompt, cfg, eos=set(), gen=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("gamma", [1, 5])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_top_1_greedy_loop_reproduces_the_teachers_greedy_text(pair, prompt, gamma):
    """Top-1 acceptance with greedy replacement commits exactly the teacher's argmax chain: any error in
    the KV-cache cropping (a stale or missing position) would change a token."""
    teacher, student = pair
    out = run_loop(teacher, student, prompt, top_k=1, gamma=gamma)
    assert out["response"] == greedy(teacher, prompt, 24)
    assert 0 <= out["accepted"] <= out["drafted"]


@torch.inference_mode()
def dense_skd(teacher, student, prompt: list[int], k: int, gamma: int, n: int) -> tuple[list[int], int]:
    """The same rule with greedy sampling, every forward pass over the whole sequence (no KV cache)."""
    ctx, accepted = list(prompt), 0
    while len(ctx) - len(prompt) < n:
        draft = []
        for _ in range(min(gamma, n - (len(ctx) - len(prompt)))):
            draft.append(int(student(torch.tensor([ctx + draft])).logits[0, -1].argmax()))
        logits = teacher(torch.tensor([ctx + draft])).logits[0, len(ctx) - 1 :]
        for j, token in enumerate(draft):
            if token not in logits[j].topk(k).indices.tolist():
                ctx.append(int(logits[j].argmax()))
                break
            ctx.append(token)
            accepted += 1
    return ctx[len(prompt) :], accepted


@pytest.mark.parametrize("k", [100, 200])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_loop_with_cropped_caches_equals_a_dense_recomputation(pair, prompt, k):
    """Top-K between the extremes: rounds end at different draft positions, so both caches are cropped
    to different lengths; the committed text and the accepted count match full recomputation."""
    teacher, student = pair
    out = run_loop(teacher, student, prompt, top_k=k, gamma=5)
    response, accepted = dense_skd(teacher, student, prompt, k, 5, 24)
    assert out["response"] == response
    assert out["accepted"] == accepted
    assert 0 < accepted < out["drafted"]  # both accepted and rejected tokens occurred


@pytest.mark.parametrize("prompt", PROMPTS)
def test_k_vocabulary_keeps_the_students_greedy_text(pair, prompt):
    teacher, student = pair
    out = run_loop(teacher, student, prompt, top_k=512, gamma=5)
    assert out["response"] == greedy(student, prompt, 24)
    assert out["accepted"] == out["drafted"] == 24


def test_k_zero_is_teacher_sampling(pair):
    teacher, student = pair
    out = run_loop(teacher, student, PROMPTS[0], top_k=0, gamma=5)
    assert out["response"] == greedy(teacher, PROMPTS[0], 24)
    assert out["accepted"] == 0  # one committed token per round, each draft of min(gamma, tokens left)
    assert out["drafted"] == sum(min(5, 24 - i) for i in range(24))


def test_summary_reports_mean_and_spread_over_seeds(tmp_path):
    args = compare.parse_args(["--methods", "skd", "sft", "--seeds", "0", "1", "2", "--out", str(tmp_path)])
    finals = {"skd": [0.5, 0.6, 0.7], "sft": [0.1, 0.1, 0.4]}
    runs = [
        {
            "method": m,
            "seed": s,
            "evals": [
                {"step": 0, "eval/acceptance": 0.01, "eval/kl": 3.0},
                {"step": 20, "eval/acceptance": v, "eval/kl": 1.0 + s},
            ],
            "response_tokens_trained": 100 * (s + 1),
            "wall_s": 60.0,
        }
        for m, values in finals.items()
        for s, v in enumerate(values)
    ]
    table = compare.summarize(args, runs, {"answer_match": 0.6})
    rows = {
        line.split("|")[1].strip(): line.split("|")[2:-1]
        for line in table.splitlines()
        if line.startswith("| s")
    }
    for method, values in finals.items():
        acceptance, kl, tokens = (cell.strip() for cell in rows[method][:3])
        assert acceptance == f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"
        assert kl == f"{statistics.fmean([1, 2, 3]):.3f} ± {statistics.stdev([1, 2, 3]):.3f}"
        assert tokens == "200"
    assert "initial student (step 0): acceptance 0.010, kl 3.000" in table
    assert "answer_match 0.600" in table
    paths = compare.plot(args, runs)
    assert sorted(p.name for p in paths) == ["acceptance.png", "kl.png"]  # no answer_match in these runs


def test_a_finished_run_is_read_not_rerun(tmp_path):
    run = tmp_path / "skd" / "seed0"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 0, "eval/kl": 1.0}\n{"step": 3, "train/loss": 1.0}\n')
    assert not compare.finished(run, 3)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "eval/kl": 0.5}\n')
    assert compare.finished(run, 3)


def test_time_to_quality_counts_training_time_up_to_the_first_eval_at_target():
    """Phase times of the records up to the hit, evaluations subtracted; later records do not count."""
    recs = [{"step": 0, "eval/acceptance": 0.1}]
    for step, (busy, idle, ev) in enumerate([(50.0, 5.0, 40.0), (10.0, 1.0, 0.0), (12.0, 2.0, 0.0)], 1):
        recs.append(
            {"step": step, "train/loss": 1.0, "perf/step_busy_s": busy, "perf/step_idle_s": idle}
            | ({"perf/time_eval_s": ev} if ev else {})
        )
    recs += [{"step": 2, "eval/acceptance": 0.59}, {"step": 3, "eval/acceptance": 0.61}]
    recs.append({"step": 4, "train/loss": 1.0, "perf/step_busy_s": 99.0, "perf/step_idle_s": 0.0})
    hit = time_to_quality.reached(recs, 0.6)
    assert hit == {"step": 3, "acceptance": 0.61, "train_s": (55 - 40) + 11 + 14}
    assert time_to_quality.reached(recs, 0.7) is None


def test_rollout_speed_table_averages_repeats_per_setting():
    row = {"experiment": "gamma", "draft_acceptance": 0.5, "floor_per_committed": 4.0}
    rows = [
        row | {"setting": "fixed", "committed_tokens_per_s": 10.0, "teacher_tokens_per_committed": 20.0},
        row | {"setting": "adaptive", "committed_tokens_per_s": 13.0, "teacher_tokens_per_committed": 9.0},
        row | {"setting": "fixed", "committed_tokens_per_s": 12.0, "teacher_tokens_per_committed": 22.0},
    ]
    lines = rollout_speed.table(rows).splitlines()
    assert lines[2] == "| gamma | fixed | 11.00 (10.00-12.00) | 0.500 | 21.00 | 4.00 |"
    assert lines[3] == "| gamma | adaptive | 13.00 (13.00-13.00) | 0.500 | 9.00 | 4.00 |"


def _stability_run(path, acceptance: float, generated: list[int], trained: list[int], dropped: list[int]):
    """A finished run dir as the trainer leaves it: metrics.jsonl and report.md's run summary."""
    import json

    path.mkdir(parents=True)
    records = [
        {"step": 0, "eval/acceptance": 0.02, "eval/kl": 2.0, "eval/response_tokens": 64.0},
        {"step": 1, "train/loss": 1.0, "train/tokens": sum(trained), "data/generated_lengths": generated,
         "data/trained_lengths": trained, "data/dropped_lengths": dropped},
        {"step": 1, "eval/acceptance": acceptance, "eval/kl": 0.3, "eval/response_tokens": 30.0,
         "eval/teacher_response_tokens": 31.0},
    ]  # fmt: skip
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"dropped_stale_samples": len(dropped), "trainer_busy_fraction": 0.5,
               "seconds_by_phase": {"wait": 50.0, "train": 50.0}}  # fmt: skip
    lines = "".join(f"- {k}: {v}\n" for k, v in summary.items())
    (path / "report.md").write_text(f"# r\n\n## Run summary\n\n{lines}")


def test_stability_reads_each_runs_figures_and_their_spread(tmp_path):
    from benchmarks import stability

    _stability_run(tmp_path / "a", 0.8, generated=[10, 20, 30, 60], trained=[10, 20], dropped=[60])
    _stability_run(tmp_path / "b", 0.9, generated=[10, 30], trained=[10, 30], dropped=[])
    a, b = stability.figures(tmp_path / "a"), stability.figures(tmp_path / "b")
    assert a["stale_fraction"] == 0.25 and b["stale_fraction"] == 0.0
    assert (a["generated_tokens_mean"], a["trained_tokens_mean"], a["dropped_tokens_mean"]) == (30, 15, 60)
    assert a["loop_s"] == 100.0 and a["committed_tokens_per_s"] == 1.2
    lengths = ("response_tokens_start", "response_tokens_end", "teacher_response_tokens")
    assert [a[k] for k in lengths] == [64, 30, 31]
    spread = stability.spread([a, b])["acceptance"]
    assert spread["mean"] == pytest.approx(0.85) and spread["range"] == pytest.approx(0.1)
    assert spread["sd"] == pytest.approx(statistics.stdev([0.8, 0.9]))
    version = {"label": "x", "ref": "working tree", "flags": ["--batch_order=completion"]}
    text = stability.table({"x": {"version": version, "runs": [a, b], "spread": stability.spread([a, b])}})
    assert "| held-out acceptance at the end | 0.850 ± 0.071 |" in text  # the versions side by side
    assert "### x (code: working tree; --batch_order=completion)" in text
    assert "| held-out acceptance at the end | 0.800 | 0.900 | 0.850 ± 0.071 | 0.100 |" in text
    variants = stability.versions(["abc123"], ["before=--batch_order=completion --adaptive_gamma=false"])
    assert [(v.label, v.ref, v.flags, v.slug) for v in variants] == [
        ("abc123", "abc123", (), "abc123"),
        ("before", "working tree", ("--batch_order=completion", "--adaptive_gamma=false"), "before"),
        ("defaults", "working tree", (), "defaults"),
    ]
