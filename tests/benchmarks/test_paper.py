"""benchmarks.paper's reading of finished runs: the paired bootstrap, the best baseline, the paper-shaped
table. The runs are written as the trainer writes them (metrics.jsonl, eval_responses/), by hand."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from benchmarks import paper
from benchmarks.analysis.intervals import seed_item_bootstrap
from trainer.outputs.responses import responses_path, write_responses


def test_paired_bootstrap_of_a_constant_difference_is_that_difference():
    a = np.array([0.0, 1.0, 1.0, 0.0, 0.5])
    assert paper.paired_bootstrap(a + 0.25, a) == pytest.approx((0.25, 0.25, 0.25))


def test_paired_bootstrap_interval_matches_the_normal_approximation_on_many_items():
    rng = np.random.default_rng(1)
    a = rng.binomial(1, 0.6, size=2000).astype(float)
    b = np.where(rng.random(2000) < 0.8, a, 1 - a)  # paired: b mostly agrees with a
    mean, low, high = paper.paired_bootstrap(a, b, samples=4000)
    diff = a - b
    half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
    assert mean == pytest.approx(diff.mean())
    assert low == pytest.approx(mean - half, abs=0.25 * half) and high == pytest.approx(
        mean + half, abs=0.25 * half
    )


def test_paired_bootstrap_refuses_unpaired_scores():
    with pytest.raises(ValueError, match="same non-empty items"):
        paper.paired_bootstrap(np.zeros(3), np.zeros(4))


def _write_run(run_dir, steps, metric, initial, items, acceptance=0.5, top_k=None):
    """A finished run: step-0 and final evaluations, train records, and the final held-out responses."""
    final = statistics.fmean(items)
    records = [{"step": 0, "eval/acceptance": 0.1, "eval/kl": 2.0, f"eval/{metric}": initial}]
    records += [
        {"step": s, "train/loss": 1.0, "train/tokens": 10, "train/batch_acceptance": acceptance}
        | ({"train/top_k": top_k(s)} if top_k else {})
        for s in range(1, steps + 1)
    ]
    records.append(
        {
            "step": steps,
            "eval/acceptance": 0.5,
            "eval/kl": 1.0,
            f"eval/{metric}": final,
            "perf/eval_greedy_s": 3.0,
        }
    )
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run_dir / "wall_s").write_text("12.0\n")
    write_responses(
        run_dir,
        steps,
        [{"index": i, "response": "", "tokens": 1, "scores": {metric: v}} for i, v in enumerate(items)],
    )


def test_the_report_compares_skd_with_the_best_baseline_item_by_item(tmp_path):
    task = paper.TASKS["word_problems"]
    proto = paper.Protocol("word_problems", tmp_path, quick=False, base_teacher=tmp_path / "teacher")
    steps = task.methods.steps
    per_method = {  # per seed, per item exact match on 4 held-out items
        "sft": [[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]],
        "supervised_kd": [[1, 0, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]],  # the best baseline: mean 5/12
        "teacher_sampling": [[0, 0, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]],
        "on_policy": [[0, 0, 0, 0]] * 3,
        "skd": [[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1]],
        "mixed_skd": [[1, 1, 1, 1]] * 3,  # not a baseline (SKD's own mix), nor one of the paper's methods
    }
    for method, seeds in per_method.items():
        for seed, items in zip(task.seeds, seeds):
            _write_run(
                tmp_path / "word_problems" / "methods" / method / f"seed{seed}",
                steps,
                "exact_match",
                0.0,
                items,
            )
    (tmp_path / "word_problems" / "methods" / "teacher.json").write_text(json.dumps({"exact_match": 0.75}))
    assert proto.best_baseline() == "supervised_kd"
    summary = paper.task_summary(proto)
    assert summary["skd_vs_best"] == {"baseline": "supervised_kd", "diff": pytest.approx(8 / 12 - 5 / 12)}
    assert list(summary["skd_vs"]) == ["on_policy", "sft", "supervised_kd", "teacher_sampling"]  # fixed
    for baseline, each in summary["skd_vs"].items():  # every baseline, not only the best
        expected = np.mean(per_method["skd"]) - np.mean(per_method[baseline])
        assert each["diff"] == pytest.approx(expected) and each["items"] == 4
        assert each["seeds_each"] == {"skd": [0, 1, 2], baseline: [0, 1, 2]}
        assert each["ci95"][0] <= each["diff"] <= each["ci95"][1]
        # the interval is the seed-and-item one, on the [seeds, items] scores as written
        skd_scores, other = np.array(per_method["skd"], float), np.array(per_method[baseline], float)
        assert tuple(each["ci95"]) == pytest.approx(seed_item_bootstrap(skd_scores, other)[1:])
        assert each["significant"] == (each["ci95"][0] > 0 or each["ci95"][1] < 0)
    assert summary["skd_vs"]["on_policy"]["significant"]  # against an all-zero baseline
    assert not summary["skd_vs"]["supervised_kd"]["significant"]  # +0.25 on 4 items and 3 seeds
    assert summary["methods"]["skd"]["metric"][0] == pytest.approx(8 / 12)
    assert summary["methods"]["skd"]["batch_acceptance"] == pytest.approx(0.5)
    assert summary["methods"]["skd"]["eval_s"] == pytest.approx(3.0)  # the evaluations' timed parts
    text = paper.render({"word_problems": summary})
    assert "| skd | 0.667 ± " in text and "tuned teacher (greedy) | 0.750" in text
    assert "| skd vs the best baseline by mean (picked after the runs) | +60% vs supervised_kd |" in text
    on_policy = summary["skd_vs"]["on_policy"]["ci95"]
    assert f"| **skd minus on_policy** | +0.667, 95% CI {on_policy[0]:+.3f}..{on_policy[1]:+.3f}, " in text
    for baseline in paper.COMPARISONS:  # all four in the table and in the details, marked where significant
        (row,) = [line for line in text.splitlines() if line.startswith(f"| **skd minus {baseline}** |")]
        (detail,) = [line for line in text.splitlines() if line.startswith(f"- {baseline}: ")]
        marked = summary["skd_vs"][baseline]["significant"]
        assert ("**significant**" in row) == marked and ("**significant**" in detail) == marked
        assert f"skd seeds 0, 1, 2; {baseline} seeds 0, 1, 2" in detail


def test_runs_from_the_warm_student_start_at_its_measured_evaluation(tmp_path):
    """The methods stage skips the step-0 evaluation: step 0 is the student stage's final one (the same
    model, items and teacher); the init stage's is the student stage's first (the pruned student)."""
    task = paper.TASKS["word_problems"]
    proto = paper.Protocol("word_problems", tmp_path, quick=False, base_teacher=tmp_path / "teacher")
    _write_run(
        tmp_path / "word_problems" / "student" / "sft" / "seed0", task.warm.steps, "exact_match", 0.0, [1, 0]
    )
    run_dir = tmp_path / "word_problems" / "methods" / "skd" / "seed0"
    _write_run(run_dir, task.methods.steps, "exact_match", 0.0, [1, 1])
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()[1:]  # as run: no step-0 evaluation
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run,) = proto.runs("methods", ["skd"], seeds=[0])
    assert [e["step"] for e in run["evals"]] == [0, task.methods.steps]
    assert run["evals"][0]["eval/exact_match"] == 0.5  # the warm student's final evaluation
    assert "--eval_at_start=false" in proto.args("methods", task.methods, tmp_path).extra
    assert "--eval_at_start=false" not in proto.args("student", task.warm, tmp_path).extra


def test_the_k_sweep_shows_acceptance_per_k_and_the_k_target_acceptance_chose(tmp_path):
    task = paper.TASKS["word_problems"]
    proto = paper.Protocol("word_problems", tmp_path, quick=False, base_teacher=tmp_path / "teacher")
    root, steps = tmp_path / "word_problems", task.methods.steps
    for k, acceptance in ((1, 0.85), (5, 0.95), (100, 1.0)):
        _write_run(root / "ksweep" / f"k{k}" / "skd" / "seed0", steps, "exact_match", 0.0, [1, 0], acceptance)
    _write_run(root / "methods" / "skd" / "seed0", steps, "exact_match", 0.0, [1, 1], 0.99)  # K = 25
    target = task.acceptance_targets[0]
    _write_run(root / "ksweep" / f"target{target}" / "skd" / "seed0", steps, "exact_match", 0.0, [0, 0],
               target, top_k=lambda s: 2 if s % 2 else 4)  # fmt: skip
    sweep = paper.task_summary(proto)["ksweep"]
    assert list(sweep) == ["1", "5", "25", "100", f"target {target}"]
    assert [sweep[k]["batch_acceptance"] for k in ("1", "5", "25", "100")] == [0.85, 0.95, 0.99, 1.0]
    assert sweep[f"target {target}"]["mean_top_k"] == pytest.approx(3.0, abs=0.1)
    versus = paper.task_summary(proto)["target_vs_k25"][str(target)]
    assert versus["seeds"] == [0] and versus["diff"] == pytest.approx(-1.0)  # [0, 0] against [1, 1]
    text = paper.render({"word_problems": paper.task_summary(proto)})
    assert f"| target {target} | 3.0 | {target:.3f} |" in text and "| 1 | 1 | 0.850 |" in text
    assert f"target_acceptance {target} minus skd at K=25" in text


def test_init_takes_a_named_baseline_or_the_best_finished_one(tmp_path):
    """`--baseline` names init's baseline when the methods stage's runs are elsewhere (or not run)."""
    args = paper.parse_args(["init", "--task", "word_problems", "--baseline", "sft", "--out", str(tmp_path)])
    assert args.baseline == "sft"
    for not_a_baseline in ("skd", "mixed_skd", "mixed"):
        with pytest.raises(SystemExit):
            paper.parse_args(["init", "--baseline", not_a_baseline])
    assert paper.parse_args(["init", "--baseline", "mixed_on_policy"]).baseline == "mixed_on_policy"
    proto = paper.Protocol("word_problems", tmp_path, quick=False, base_teacher=tmp_path / "teacher")
    with pytest.raises(SystemExit, match="run the methods stage first"):
        proto.best_baseline()


def test_the_budget_axis_reports_skd_and_its_baseline_at_twice_the_steps_item_by_item(tmp_path):
    """`budget` runs skd and the best baseline at `Task.long` (2x the methods' steps), seed 0 unless
    `--seeds` names more; the report pairs skd with that baseline over the seeds both finished."""
    task = paper.TASKS["dialogue_summaries"]
    assert task.long.steps == 2 * task.methods.steps
    assert paper.parse_args(["budget", "--task", "dialogue_summaries"]).stage == "budget"
    assert "budget" not in paper.STAGES  # not part of `all`
    proto = paper.Protocol("dialogue_summaries", tmp_path, quick=False, base_teacher=tmp_path / "t")
    assert proto.axis_seeds == (0,)
    assert paper.Protocol("dialogue_summaries", tmp_path, False, tmp_path, seeds=[0, 1]).axis_seeds == (0, 1)
    budget_dir = tmp_path / "dialogue_summaries" / "budget"
    per_seed = {"skd": [[0.5, 1.0, 0.0], [1.0, 1.0, 1.0]], "sft": [[0.25, 0.5, 0.0]]}  # sft: seed 0 only
    for method, seeds in per_seed.items():
        for seed, items in enumerate(seeds):
            _write_run(budget_dir / method / f"seed{seed}", task.long.steps, "rougeL", 0.3, items)
    long = paper.task_summary(proto)["budget"]
    assert long["steps"] == 60 and set(long["methods"]) == {"sft", "skd"}
    assert long["methods"]["sft"]["seeds"] == [0] and long["methods"]["skd"]["seeds"] == [0, 1]
    versus = long["versus"]["sft"]
    expected = np.array(per_seed["skd"][0]) - np.array(per_seed["sft"][0])  # on the seed both finished
    assert versus["seeds"] == [0] and versus["diff"] == pytest.approx(float(expected.mean()))
    text = paper.render({"dialogue_summaries": paper.task_summary(proto)})
    assert "method (from the warm student, 60 steps)" in text
    assert (
        f"At 60 steps, skd minus sft, paired over the held-out items (seeds 0): {expected.mean():+.3f}"
        in text
    )


def test_a_comparison_without_per_item_responses_or_runs_says_so_and_the_report_goes_on(tmp_path):
    """Runs copied without eval_responses/ (or a baseline not run) leave that comparison unavailable with
    the reason, in results.json and summary.md; the other comparisons and the tables are still made."""
    task = paper.TASKS["word_problems"]
    proto = paper.Protocol("word_problems", tmp_path, quick=False, base_teacher=tmp_path / "teacher")
    methods = tmp_path / "word_problems" / "methods"
    for method, items in (("skd", [1, 1, 0, 1, 1, 1]), ("sft", [0, 1, 0, 0, 1, 0]), ("on_policy", [0] * 6)):
        for seed in task.seeds[:2]:
            _write_run(methods / method / f"seed{seed}", task.methods.steps, "exact_match", 0.0, items)
    responses_path(methods / "sft" / "seed1", task.methods.steps).unlink()
    out = tmp_path / "report"
    out.mkdir()
    text = paper.report([proto], out)
    versus = json.loads((out / "results.json").read_text())["word_problems"]["skd_vs"]
    assert "eval_responses" in versus["sft"]["unavailable"] and "seed1" in versus["sft"]["unavailable"]
    assert versus["teacher_sampling"] == {"unavailable": "no finished teacher_sampling run at 30 steps"}
    assert versus["supervised_kd"] == {"unavailable": "no finished supervised_kd run at 30 steps"}
    assert versus["on_policy"]["diff"] == pytest.approx(5 / 6) and versus["on_policy"]["significant"]
    assert "| **skd minus sft** | n/a |" in text and "| **skd minus teacher_sampling** | n/a |" in text
    assert "- sft: not available: " in text and "needs every run's per-item held-out responses" in text
    assert "- teacher_sampling: not available: no finished teacher_sampling run at 30 steps" in text
    assert (out / "summary.md").read_text() == text


@pytest.mark.parametrize(
    "path", sorted(paper.ROOT.glob("docs/benchmarks/paper/*_results.json")), ids=lambda p: p.name
)
def test_the_committed_summaries_still_render_marked_as_items_only(path):
    """The results.json files committed under docs/ predate the seed-and-item intervals (and hold no
    per-item scores to make them): they render, their intervals marked as items only, none 'significant'."""
    summaries = json.loads(path.read_text())
    text = paper.render(summaries)
    comparisons = [line for line in text.splitlines() if line.startswith(("| **skd minus", "- ", "At "))]
    assert comparisons and not any("significant" in line for line in comparisons)
    for s in summaries.values():
        for baseline, v in s.get("skd_vs", {}).items():
            low, high = v["ci95"]
            assert f"- {baseline}: {v['diff']:+.3f}, 95% CI {low:+.3f}..{high:+.3f} (items only" in text
