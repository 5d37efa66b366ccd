"""The paper's experiment (Xu et al., ICLR 2025, section 5) the paper's way, at a size this machine runs.

    python -m benchmarks.paper all                            # every stage of both tasks (resumable)
    python -m benchmarks.paper teacher --task word_problems    # one stage of one task
    python -m benchmarks.paper report                         # the tables from what has finished

Stages, per task, in the order `all` runs them (each reads the one before from disk, so each is one
command, and a second call goes on where the first stopped: a finished run is read, an unfinished one
continues from its last checkpoint, as in benchmarks.compare):

- teacher   the embedded teacher fine-tuned on the task with the project's own `sft` method (the paper SFTs
            its teachers); its greedy score before and after, on the held-out items.
- student   the student: the tuned teacher pruned to `Task.student_layers` evenly spaced layers (the
            project's pruned student, taken from the task-tuned teacher), then SFT-warmed for a short fixed
            budget (the paper's initialisation); both checkpoints are cached for the stages below.
- methods   every method from the warm student at equal budget, against the tuned teacher, per seed.
- init      skd and the best baseline from the pruned, not warmed, student (one seed): the init axis.
- ksweep    skd at K in {1, 5, 100} (K=25 is the methods stage's run), one seed: acceptance per K; then
            skd with `target_acceptance` (K adapted per step from K=25) at each of `Task.acceptance_targets`,
            at the methods stage's seeds (`--seeds`), against skd at K=25 item by item.
- budget    (on demand, not run by `all`) skd and the best baseline from the warm student at twice the
            methods' steps (`Task.long`), seed 0 unless `--seeds` names more: does the ranking hold with
            more budget?
- report    `outputs/paper/summary.md` + `results.json`: the paper-shaped table (tasks as columns, methods
            as rows), skd minus each of the comparisons fixed before the runs (`COMPARISONS`: on_policy,
            sft, supervised_kd, teacher_sampling) with a 95% interval that resamples the held-out items
            (paired) and each method's seeds (benchmarks.analysis.intervals) and "significant" where it
            excludes 0, skd's relative gain over the best baseline by mean (as the paper gives it), per-method
            acceptance, KL, tokens trained and wall time, the init and budget axes, the K sweep, and plots
            over steps. The intervals read each run's per-item held-out responses (eval_responses/); where
            those are missing the comparison says so instead.

Tasks: `word_problems` (GSM8K-shaped, exact match of the final answer) and `dialogue_summaries`
(DialogSum-shaped, ROUGE-L), generated and shipped under trainer/data/prompt_sets/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import compare
from benchmarks.analysis.intervals import seed_item_bootstrap, significant
from shared import reaper

ROOT = compare.ROOT
SETS = "trainer/data/prompt_sets"
# mixed_on_policy is the paper's `mixed` baseline (supervised_kd or on_policy per sequence); runs made
# before issue 38 named SKD's own mix (supervised_kd or skd, now mixed_skd) `mixed`: shown as LEGACY rows
METHODS = ["sft", "supervised_kd", "teacher_sampling", "on_policy", "skd", "mixed_on_policy"]
BASELINES = [m for m in METHODS if m != "skd"]
LEGACY = {"mixed": "mixed (supervised_kd or skd: mixed_skd)"}
# The comparisons the report makes, fixed before the runs: skd minus each of these, every one reported with
# its seed-and-item interval (benchmarks.analysis.intervals), whichever baseline turns out best.
COMPARISONS = ("on_policy", "sft", "supervised_kd", "teacher_sampling")


@dataclass(frozen=True)
class Budget:
    """One stage's training budget: optimizer steps x sequences per step at one learning rate."""

    steps: int
    batch_size: int
    lr: float
    eval_every: int


@dataclass(frozen=True)
class Task:
    data: str
    eval_data: str
    metric: str  # the eval/<metric> key the task reports
    seeds: tuple[int, ...]
    max_new_tokens: int
    max_prompt_len: int
    teacher: Budget = Budget(steps=120, batch_size=16, lr=1e-4, eval_every=60)
    warm: Budget = Budget(steps=40, batch_size=16, lr=3e-4, eval_every=40)
    methods: Budget = Budget(steps=30, batch_size=8, lr=1e-4, eval_every=15)
    long: Budget = Budget(steps=60, batch_size=8, lr=1e-4, eval_every=30)  # the budget axis: 2x the methods'
    num_eval_prompts: int = 100
    student_layers: int | None = None  # the pruned student's layers, evenly spaced; None: every 2nd
    k_sweep: tuple[int, ...] = (1, 5, 100)
    acceptance_targets: tuple[float, ...] = ()  # ksweep: skd with K adapted to hold these acceptances
    extra: tuple[str, ...] = ("--learner_dtype=bf16",)  # every run; bf16 autocast: ~2x faster on this CPU


TASKS = {
    "word_problems": Task(
        data=f"gsm8k:{SETS}/word_problems/train.jsonl",
        eval_data=f"gsm8k:{SETS}/word_problems/test.jsonl",
        metric="exact_match",
        seeds=(0, 1, 2),
        student_layers=26,
        acceptance_targets=(0.9,),  # K=1 accepts ~0.85, K=25 0.995 (the warm 26-layer student)
        max_new_tokens=80,  # worked solutions: <= 70 tokens (SmolLM2 tokenizer); prompts <= 96
        max_prompt_len=128,
    ),
    "dialogue_summaries": Task(
        data=f"dialogsum:{SETS}/dialogue_summaries/train.jsonl",
        eval_data=f"dialogsum:{SETS}/dialogue_summaries/test.jsonl",
        metric="rougeL",
        seeds=(0, 1),
        max_new_tokens=48,  # summaries: <= 36 tokens; prompts (dialogues) <= 164
        max_prompt_len=192,
        k_sweep=(),  # the K sweep is asked of the math task only
    ),
}
STAGES = ["teacher", "student", "methods", "init", "ksweep"]  # what `all` runs, in order
# Axes beyond the protocol, run on demand (not by `all`, which must stay within ~6 hours).
EXTRA_STAGES = ["budget"]


# --- one stage's runs, through benchmarks.compare ----------------------------------------------------------


def stage_args(
    task: Task, out: Path, budget: Budget, *, quick: bool, teacher_model: Path | str, extra=()
) -> argparse.Namespace:
    """benchmarks.compare's settings for one stage: its budget, the task, the shared evaluation."""
    steps, every, n_eval = budget.steps, budget.eval_every, task.num_eval_prompts
    if quick:  # a smoke run of every stage: 2 steps, 8 held-out items
        steps, every, n_eval = 2, 2, 8
    argv = [
        f"--out={out}",
        f"--data={task.data}",
        f"--eval_data={task.eval_data}",
        f"--metric={task.metric}",
        f"--steps={steps}",
        f"--batch_size={budget.batch_size}",
        f"--lr={budget.lr}",
        f"--eval_every={every}",
        f"--num_eval_prompts={n_eval}",
        f"--max_new_tokens={task.max_new_tokens}",
        f"--teacher_model={teacher_model}",
        "--",
        f"--max_prompt_len={task.max_prompt_len}",
        *task.extra,
        *extra,
    ]
    return compare.parse_args(argv)


def final_checkpoint(args: argparse.Namespace, method: str, seed: int) -> Path:
    from trainer.outputs.checkpoints import checkpoint_dir

    return checkpoint_dir(args.out / method / f"seed{seed}" / "checkpoints", args.steps)


class Protocol:
    """The stages of one task; each opens the teacher it needs (the base one, then the tuned one)."""

    def __init__(
        self,
        name: str,
        out: Path,
        quick: bool,
        base_teacher: Path,
        seeds=None,
        methods=METHODS,
        baseline: str | None = None,
    ):
        self.name, self.task, self.quick, self.base_teacher = name, TASKS[name], quick, base_teacher
        self.out = out / name
        self.seeds = self.task.seeds[:1] if quick else tuple(seeds or self.task.seeds)  # the methods stage's
        self.axis_seeds = tuple(seeds or self.task.seeds[:1])  # the budget axis's: seed 0 unless named
        self.methods_run = tuple(methods)
        self.baseline = baseline  # init's; None: the best by the methods stage's finished runs

    def _teacher(self, model: Path):
        from trainer.config import RunConfig
        from trainer.teacher.service import teacher_service

        cfg = RunConfig(
            teacher_model=str(model),
            max_new_tokens=self.task.max_new_tokens,
            max_prompt_len=self.task.max_prompt_len,
            top_k=max((25, *self.task.k_sweep)),
        )
        return teacher_service(cfg, model, self.out / f"teacher_server_{int(time.time())}.log")

    def args(self, stage: str, budget: Budget, teacher: Path, extra=()) -> argparse.Namespace:
        if stage not in ("teacher", "student"):  # step 0 is the student stage's evaluation (`runs`)
            extra = ["--eval_at_start=false", *extra]
        return stage_args(
            self.task, self.out / stage, budget, quick=self.quick, teacher_model=teacher, extra=extra
        )

    # The cached models each later stage starts from.
    def tuned_teacher(self) -> Path:
        return self._ready(
            final_checkpoint(self.args("teacher", self.task.teacher, self.base_teacher), "sft", 0)
        )

    def pruned_student(self) -> Path:
        from trainer.models import ensure_pruned_student

        layers = self.task.student_layers
        return ensure_pruned_student(self.tuned_teacher(), 2, self.out / "models", layers=layers)

    def warm_student(self) -> Path:
        args = self.args("student", self.task.warm, self.tuned_teacher())
        return self._ready(final_checkpoint(args, "sft", 0))

    def _ready(self, path: Path) -> Path:
        if not (path / "config.json").exists():
            raise SystemExit(
                f"{path} is missing: run the stage that makes it first (`all` runs them in order)"
            )
        return path

    def teacher(self) -> None:
        """SFT of the embedded teacher on the task; its held-out score before (teacher.json) and after."""
        args = self.args("teacher", self.task.teacher, self.base_teacher, extra=["--eval_at_start=false"])
        with self._teacher(self.base_teacher) as (urls, _):
            before = self.out / "teacher" / "before.json"
            if not before.exists():
                before.parent.mkdir(parents=True, exist_ok=True)
                before.write_text(json.dumps(compare.teacher_score(args, urls, self.base_teacher)))
            compare.run_one(args, "sft", 0, urls, self.base_teacher)

    def student(self) -> None:
        """The pruned tuned teacher, SFT-warmed for the fixed short budget."""
        teacher = self.tuned_teacher()
        args = self.args("student", self.task.warm, teacher)
        with self._teacher(teacher) as (urls, _):
            compare.run_one(args, "sft", 0, urls, self.pruned_student())

    def methods(self) -> None:
        teacher = self.tuned_teacher()
        args = self.args("methods", self.task.methods, teacher)
        with self._teacher(teacher) as (urls, _):
            args.out.mkdir(parents=True, exist_ok=True)
            if not (args.out / "teacher.json").exists():  # the tuned teacher's greedy score: the ceiling
                (args.out / "teacher.json").write_text(json.dumps(compare.teacher_score(args, urls, teacher)))
            for seed in self.seeds:
                for method in self.methods_run:
                    compare.run_one(args, method, seed, urls, self.warm_student())

    def init(self) -> None:
        """skd and the best baseline (by the methods stage's mean) from the pruned, not warmed, student."""
        teacher = self.tuned_teacher()
        args = self.args("init", self.task.methods, teacher)
        with self._teacher(teacher) as (urls, _):
            for method in ("skd", self.baseline or self.best_baseline()):
                compare.run_one(args, method, 0, urls, self.pruned_student())

    def budget(self) -> None:
        """skd and the best baseline from the warm student at twice the methods' steps (`Task.long`): does
        the ranking hold with more budget? Seed 0 unless `--seeds` names more."""
        teacher = self.tuned_teacher()
        args = self.args("budget", self.task.long, teacher)
        with self._teacher(teacher) as (urls, _):
            for seed in self.axis_seeds:
                for method in ("skd", self.baseline or self.best_baseline()):
                    compare.run_one(args, method, seed, urls, self.warm_student())

    def ksweep(self) -> None:
        teacher = self.tuned_teacher()
        with self._teacher(teacher) as (urls, _):
            for k in self.task.k_sweep:
                args = self.args(f"ksweep/k{k}", self.task.methods, teacher, extra=[f"--top_k={k}"])
                compare.run_one(args, "skd", 0, urls, self.warm_student())
            for seed in self.seeds:
                for target in self.task.acceptance_targets:
                    extra = [f"--target_acceptance={target}"]
                    args = self.args(f"ksweep/target{target}", self.task.methods, teacher, extra=extra)
                    compare.run_one(args, "skd", seed, urls, self.warm_student())

    # --- reading what finished ---------------------------------------------------------------------------

    def runs(self, stage: str, methods=METHODS, seeds=None, budget: Budget | None = None) -> list[dict]:
        """The finished runs of a stage. Runs from the warm (or pruned) student skip the step-0
        evaluation: the student stage measured that same model on the same items against the same
        teacher, so its final (or first) evaluation is put in front as step 0."""
        args = self.args(stage, budget or self.task.methods, self.base_teacher)
        seeds = seeds if seeds is not None else self.task.seeds
        runs = [
            compare.read_run(args, m, s) | {"dir": str(args.out / m / f"seed{s}")}
            for s in seeds
            for m in methods
            if compare.finished(args.out / m / f"seed{s}", args.steps)
        ]
        if stage not in ("teacher", "student") and (start := self._start_eval(stage)) is not None:
            for run in runs:
                if run["evals"] and run["evals"][0]["step"] != 0:
                    run["evals"] = [start, *run["evals"]]
        return runs

    def _start_eval(self, stage: str) -> dict | None:
        warm = self.runs("student", ["sft"], seeds=[0], budget=self.task.warm)
        if not warm:
            return None
        evals = warm[0]["evals"]
        return {**(evals[0] if stage == "init" else evals[-1]), "step": 0}

    def best_baseline(self) -> str:
        runs = self.runs("methods", BASELINES)
        if not runs:
            raise SystemExit(f"{self.name}: no finished baseline run: run the methods stage first")
        key = f"eval/{self.task.metric}"
        return max(BASELINES, key=lambda m: _mean([r["evals"][-1][key] for r in runs if r["method"] == m]))


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("-inf")


# --- the report -------------------------------------------------------------------------------------------


def item_scores(run_dir: Path, step: int, metric: str) -> np.ndarray:
    """Per held-out item, the run's score at `step` (0 where the response has no score)."""
    from trainer.outputs.responses import read_responses

    return np.array([r["scores"].get(metric, 0.0) for r in read_responses(run_dir, step)])


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, samples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of a - b over items and its 95% percentile interval, resampling items with replacement (both
    runs scored on the same items: the pairing removes the items' own difficulty from the spread)."""
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired scores need the same non-empty items: {a.shape} vs {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def seed_scores(runs: list[dict], step: int, metric: str) -> np.ndarray:
    """The runs' per-item scores at `step`, one row per run (seed): [seeds, items], the unit
    `seed_item_bootstrap` resamples. Raises FileNotFoundError for a run without its held-out responses."""
    rows = [item_scores(Path(r["dir"]), step, metric) for r in runs]
    if len({len(row) for row in rows}) > 1:
        counts = ", ".join(f"seed {r['seed']}: {len(row)}" for r, row in zip(runs, rows))
        raise ValueError(f"the seeds were scored on different numbers of held-out items ({counts})")
    return np.array(rows)


def versus(a_runs: list[dict], b_runs: list[dict], step: int, metric: str, labels: tuple[str, str]) -> dict:
    """The runs `a_runs` (one method, its seeds) minus `b_runs` on the same held-out items: the difference,
    its 95% interval resampling items (paired) and each side's seeds (benchmarks.analysis.intervals),
    whether that excludes 0, and the items-only interval of the seed means beside it; or
    {"unavailable": why}."""
    if missing := [label for label, side in zip(labels, (a_runs, b_runs)) if not side]:
        return {"unavailable": f"no finished {' or '.join(missing)} run at {step} steps"}
    try:
        a, b = seed_scores(a_runs, step, metric), seed_scores(b_runs, step, metric)
        diff, low, high = seed_item_bootstrap(a, b)
    except FileNotFoundError as e:
        return {
            "unavailable": f"{e}; the seed-and-item interval needs every run's per-item held-out "
            "responses (eval_responses/ in each run's directory, which docs/benchmarks/paper/ does not keep)"
        }
    except ValueError as e:
        return {"unavailable": str(e)}
    _, items_low, items_high = paired_bootstrap(a.mean(axis=0), b.mean(axis=0))
    return {
        "diff": diff,
        "ci95": [low, high],
        "significant": significant(low, high),
        "ci95_items": [items_low, items_high],  # items only, seeds averaged first: for comparison
        "items": a.shape[1],
        "seeds_each": {
            label: sorted(r["seed"] for r in side) for label, side in zip(labels, (a_runs, b_runs))
        },
    }


def task_summary(p: Protocol) -> dict:
    """One task's figures: per method the final metric over seeds, acceptance, KL, tokens, wall; skd minus
    each of the `COMPARISONS`; the init and budget axes and the K sweep."""
    key, task = f"eval/{p.task.metric}", p.task
    runs = p.runs("methods")
    summary: dict = {
        "metric": task.metric,
        "methods": {},
        "teacher": {},
        "student_layers": task.student_layers,
    }
    for label, name in (("before", "teacher/before.json"), ("served", "methods/teacher.json")):
        if (p.out / name).exists():  # the base teacher's score; the tuned one's, as the server generates
            summary["teacher"][label] = json.loads((p.out / name).read_text())
    if tuned := p.runs("teacher", ["sft"], seeds=[0], budget=task.teacher):  # its last evaluation
        summary["teacher"]["after"] = {task.metric: tuned[0]["evals"][-1][key], "wall_s": tuned[0]["wall_s"]}
    warm = p.runs("student", ["sft"], seeds=[0], budget=task.warm)
    summary["student"] = _method_row(warm, key) if warm else None
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        if mine:
            summary["methods"][method] = _method_row(mine, key)
    _add_comparisons(p, runs, summary)
    summary["init"] = {r["method"]: _method_row([r], key) for r in p.runs("init", seeds=[0])}
    summary["budget"] = _budget_summary(p, key)
    _add_ksweep(p, key, runs, summary)
    return summary


def _add_comparisons(p: Protocol, runs: list[dict], summary: dict) -> None:
    """skd minus each of the `COMPARISONS` (all four, fixed before the runs; "unavailable" where a side has
    not finished or its per-item responses are missing), and the best baseline by mean (picked after the
    runs), for the paper-shaped table's relative gain only."""
    steps, metric = p.args("methods", p.task.methods, p.base_teacher).steps, p.task.metric
    skd = [r for r in runs if r["method"] == "skd"]
    summary["skd_vs"] = {
        b: versus(skd, [r for r in runs if r["method"] == b], steps, metric, ("skd", b)) for b in COMPARISONS
    }
    baselines = [m for m in BASELINES if m in summary["methods"]]
    if "skd" in summary["methods"] and baselines:
        best = max(baselines, key=lambda m: summary["methods"][m]["metric"][0])
        diff = summary["methods"]["skd"]["metric"][0] - summary["methods"][best]["metric"][0]
        summary["skd_vs_best"] = {"baseline": best, "diff": diff}


def _budget_summary(p: Protocol, key: str) -> dict:
    """The budget axis: each method at the long budget, and skd minus each baseline beside it."""
    task = p.task
    long, steps_long = p.runs("budget", budget=task.long), p.args("budget", task.long, p.base_teacher).steps
    budget = {"steps": steps_long, "methods": {}, "versus": {}}
    for method in METHODS:
        if mine := [r for r in long if r["method"] == method]:
            budget["methods"][method] = _method_row(mine, key)
    skd_seeds = {r["seed"] for r in long if r["method"] == "skd"}
    for baseline in BASELINES:  # skd minus each baseline it ran beside, on the seeds both finished
        if seeds := sorted(skd_seeds & {r["seed"] for r in long if r["method"] == baseline}):
            a, b = ([r for r in long if r["method"] == m and r["seed"] in seeds] for m in ("skd", baseline))
            budget["versus"][baseline] = versus(a, b, steps_long, task.metric, ("skd", baseline))
            budget["versus"][baseline]["seeds"] = seeds
    return budget


def _add_ksweep(p: Protocol, key: str, runs: list[dict], summary: dict) -> None:
    """The K sweep (K -> row; then "target <acceptance>" -> row, its K: mean_top_k) and each acceptance
    target against skd at K=25."""
    task = p.task
    sweep = {}
    for k in task.k_sweep:
        done_k = p.runs(f"ksweep/k{k}", ["skd"], seeds=[0])
        if done_k:
            sweep[k] = _method_row(done_k, key)
    if sweep and "skd" in summary["methods"]:
        sweep[25] = _method_row([r for r in runs if r["method"] == "skd" and r["seed"] == 0], key)
    summary["ksweep"] = {str(k): row for k, row in sorted(sweep.items())}
    summary["target_vs_k25"] = {}
    for target in task.acceptance_targets:
        if done := p.runs(f"ksweep/target{target}", ["skd"]):
            summary["ksweep"][f"target {target}"] = _method_row(done, key)
            seeds = sorted({r["seed"] for r in done} & {r["seed"] for r in runs if r["method"] == "skd"})
            if seeds:  # item by item against skd at K=25 on the seeds both finished
                steps = p.args("methods", task.methods, p.base_teacher).steps
                a = [r for r in done if r["seed"] in seeds]
                b = [r for r in runs if r["method"] == "skd" and r["seed"] in seeds]
                row = versus(a, b, steps, task.metric, (f"target {target}", "K=25"))
                summary["target_vs_k25"][str(target)] = {**row, "seeds": seeds}


def _method_row(runs: list[dict], key: str) -> dict:
    """Final-evaluation mean and spread over the runs (seeds), and what they cost."""
    last = [r["evals"][-1] for r in runs]
    accepted = [r["batch_acceptance"] for r in runs if r.get("batch_acceptance") is not None]
    walls = [r["wall_s"] for r in runs if r.get("wall_s")]
    return {
        "seeds": [r["seed"] for r in runs],
        "metric": compare.mean_spread([e[key] for e in last]),
        "initial": compare.mean_spread([r["evals"][0][key] for r in runs]),
        "acceptance": compare.mean_spread([e["eval/acceptance"] for e in last]),
        "kl": compare.mean_spread([e["eval/kl"] for e in last]),
        "batch_acceptance": statistics.fmean(accepted) if accepted else None,
        "mean_top_k": _mean_or_none([r["mean_top_k"] for r in runs if r.get("mean_top_k") is not None]),
        "tokens": statistics.fmean(r["response_tokens_trained"] for r in runs),
        "wall_s": statistics.fmean(walls) if walls else None,
        "eval_s": statistics.fmean(r.get("eval_s", 0.0) for r in runs),
    }


def _mean_or_none(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _layers(n: int | None) -> str:
    return "every 2nd layer" if n is None else f"{n} evenly spaced layers"


def _cell(spread: tuple[float, float] | None) -> str:
    return "-" if spread is None else f"{spread[0]:.3f} ± {spread[1]:.3f}"


def render(summaries: dict[str, dict]) -> str:
    """summary.md: the paper-shaped table first, then each task's details."""
    names = list(summaries)
    head = " | ".join(f"{n} ({s['metric']})" for n, s in summaries.items())
    lines = ["# SKD against the baselines, the paper's protocol (benchmarks.paper)", ""]
    lines += [f"| method | {head} |", "|---" * (len(names) + 1) + "|"]
    legacy = [m for m in LEGACY if any(m in s["methods"] for s in summaries.values())]
    for method in METHODS + legacy:
        cells = [_cell(s["methods"].get(method, {}).get("metric")) for s in summaries.values()]
        lines.append(f"| {LEGACY.get(method, method)} | " + " | ".join(cells) + " |")
    for baseline in COMPARISONS:  # fixed before the runs: every one, whichever turned out best
        cells = [_interval(s.get("skd_vs", {}).get(baseline)) for s in summaries.values()]
        lines.append(f"| **skd minus {baseline}** | " + " | ".join(cells) + " |")
    gains = [_gain(s) for s in summaries.values()]
    lines.append("| skd vs the best baseline by mean (picked after the runs) | " + " | ".join(gains) + " |")
    teacher = [
        s["teacher"].get("served", s["teacher"].get("after", {})).get(s["metric"]) for s in summaries.values()
    ]
    lines.append(
        "| tuned teacher (greedy) | " + " | ".join("-" if t is None else f"{t:.3f}" for t in teacher) + " |"
    )
    lines += ["", INTERVALS]
    for name, s in summaries.items():
        lines += ["", f"## {name}", "", *_task_lines(s), *_ksweep_lines(s)]
    return "\n".join(lines) + "\n"


INTERVALS = (
    "The intervals are 95% percentile intervals of a two-level bootstrap (benchmarks.analysis.intervals): "
    "each replicate resamples the held-out items (the same items for both sides: paired) and, per method, "
    "its seeds, so the seed-to-seed spread counts as well as the items'. **significant**: the interval "
    "excludes 0. The four skd comparisons above were fixed before the runs; the best baseline by mean is "
    "picked after them and gives the relative gain only."
)


def _interval(v: dict | None) -> str:
    """One comparison's cell: the difference, its interval, **significant** where that excludes 0."""
    if not v or "unavailable" in v:
        return "n/a"
    low, high = v["ci95"]
    if "significant" not in v:  # a results.json from before the seed-and-item intervals: seeds averaged
        return f"{v['diff']:+.3f}, 95% CI {low:+.3f}..{high:+.3f} (items only: seeds not counted)"
    mark = ", **significant**" if v["significant"] else ""
    return f"{v['diff']:+.3f}, 95% CI {low:+.3f}..{high:+.3f}{mark}"


def _gain(s: dict) -> str:
    """skd's relative gain over the best baseline by mean, as the paper's table gives it."""
    if (versus := s.get("skd_vs_best")) is None:
        return "-"
    best = s["methods"][versus["baseline"]]["metric"][0]
    rel = f"{100 * versus['diff'] / best:+.0f}%" if best else "n/a"
    return f"{rel} vs {versus['baseline']}"


def _result(v: dict) -> str:
    """A comparison in a sentence: its interval, or why there is none."""
    return f"not available: {v['unavailable']}" if "unavailable" in v else _interval(v)


def _versus_line(baseline: str, v: dict) -> str:
    """One fixed comparison in a task's details: the interval, the items-only one beside it, the seeds."""
    line = f"- {baseline}: {_result(v)}"
    if "seeds_each" in v:
        items_low, items_high = v["ci95_items"]
        seeds = "; ".join(f"{m} seeds {', '.join(map(str, x))}" for m, x in v["seeds_each"].items())
        line += f" (items only, seeds averaged first: {items_low:+.3f}..{items_high:+.3f}; {seeds})"
        if any(len(x) == 1 for x in v["seeds_each"].values()):
            line += "; a side with one seed: its seed-to-seed spread cannot enter"
    return line


def _task_lines(s: dict) -> list[str]:
    """One task's details: teacher, warm student, methods, skd against each baseline, init and budget."""
    lines: list[str] = []
    before = s["teacher"].get("before", {}).get(s["metric"])
    after = s["teacher"].get("after", {}).get(s["metric"])
    if before is not None or after is not None:
        lines.append(f"Teacher greedy {s['metric']}: {before} before SFT, {after} after.")
    if warm := s.get("student"):
        lines += [
            "",
            f"Student (the tuned teacher pruned to {_layers(s.get('student_layers'))}): {s['metric']} "
            f"{warm['initial'][0]:.3f}; after the SFT warm-up {warm['metric'][0]:.3f}, held-out "
            f"acceptance {warm['acceptance'][0]:.3f}, KL {warm['kl'][0]:.3f}.",
        ]
    if s["methods"]:
        lines += ["", _detail(s["methods"], s["metric"], "method (from the warm student)")]
    if versus := s.get("skd_vs"):
        lines += [
            "",
            f"skd minus each baseline (fixed before the runs), {s['metric']} over the held-out items and the "
            "seeds, 95% CI resampling both:",
        ]
        lines += [_versus_line(baseline, v) for baseline, v in versus.items()]
    if s["init"]:
        lines += ["", _detail(s["init"], s["metric"], "method (from the pruned, not warmed, student)")]
    if (long := s.get("budget", {})).get("methods"):
        title = f"method (from the warm student, {long['steps']} steps)"
        lines += ["", _detail(long["methods"], s["metric"], title)]
        for baseline, versus in long["versus"].items():
            lines += [
                "",
                f"At {long['steps']} steps, skd minus {baseline}, paired over the held-out items (seeds "
                f"{', '.join(map(str, versus['seeds']))}): {_result(versus)}.",
            ]
    return lines


def _ksweep_lines(s: dict) -> list[str]:
    """The K sweep table and each acceptance target against K=25."""
    if not s["ksweep"]:
        return []
    lines: list[str] = []
    lines += [
        "",
        "| skd K | mean K over steps | train batch acceptance | held-out acceptance (at the first K) "
        f"| {s['metric']} | KL | wall s |",
    ]
    lines.append("|---" * 7 + "|")
    for k, row in s["ksweep"].items():
        batch = "-" if row["batch_acceptance"] is None else f"{row['batch_acceptance']:.3f}"
        mean_k = row.get("mean_top_k")
        mean_k = k if mean_k is None else f"{mean_k:.1f}"
        cells = [_cell(row[key]) for key in ("acceptance", "metric", "kl")]
        wall = "-" if not row["wall_s"] else f"{row['wall_s']:.0f}"
        lines.append(f"| {k} | {mean_k} | {batch} | " + " | ".join(cells) + f" | {wall} |")
    for target, versus in s.get("target_vs_k25", {}).items():
        lines += [
            "",
            f"skd with target_acceptance {target} minus skd at K=25, paired over the held-out items "
            f"(seeds {', '.join(map(str, versus['seeds']))}): {_result(versus)}.",
        ]
    return lines


def _detail(rows: dict[str, dict], metric: str, title: str) -> str:
    lines = [
        f"| {title} | {metric} (step 0 -> final) | held-out acceptance | KL | train batch acceptance | "
        "response tokens trained | wall s | eval share | seeds |",
        "|---" * 9 + "|",
    ]
    for method, r in rows.items():
        batch = "-" if r["batch_acceptance"] is None else f"{r['batch_acceptance']:.3f}"
        share = f"{r['eval_s'] / r['wall_s']:.0%}" if r["wall_s"] else "-"
        wall = f"{r['wall_s']:.0f}" if r["wall_s"] else "-"
        lines.append(
            f"| {method} | {r['initial'][0]:.3f} -> {_cell(r['metric'])} | {_cell(r['acceptance'])} | "
            f"{_cell(r['kl'])} | {batch} | {r['tokens']:.0f} | {wall} | {share} | {len(r['seeds'])} |"
        )
    return "\n".join(lines)


def report(protocols: list[Protocol], out: Path) -> str:
    summaries = {p.name: task_summary(p) for p in protocols}
    (out / "results.json").write_text(json.dumps(summaries, indent=1))
    text = render(summaries)
    (out / "summary.md").write_text(text)
    for p in protocols:
        runs = p.runs("methods")
        if runs:
            args = p.args("methods", p.task.methods, p.base_teacher)
            args.methods = [m for m in METHODS if any(r["method"] == m for r in runs)]
            args.seeds = sorted({r["seed"] for r in runs})
            compare.plot(args, runs)
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["all", *STAGES, *EXTRA_STAGES, "report"])
    p.add_argument("--task", nargs="+", choices=list(TASKS), default=list(TASKS))
    p.add_argument(
        "--out", type=Path, default=None, help="default outputs/paper (--quick: outputs/paper-quick)"
    )
    p.add_argument("--quick", action="store_true", help="every stage at 2 steps, 8 held-out items, 1 seed")
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        help="the methods stage's (default: the task's); budget's (default: 0)",
    )
    p.add_argument(
        "--methods", nargs="+", choices=METHODS, default=METHODS, help="the methods stage's, in this order"
    )
    p.add_argument(
        "--baseline",
        choices=BASELINES,
        default=None,
        help="init's and budget's baseline (default: the best by the methods stage's mean, finished seeds)",
    )
    args = p.parse_args(argv)
    if args.out is None:
        args.out = ROOT / "outputs" / ("paper-quick" if args.quick else "paper")
    return args


def main(argv: list[str] | None = None) -> None:
    from trainer.config import RunConfig
    from trainer.models import resolve_models

    args = parse_args(argv)
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    base_teacher, _ = resolve_models(RunConfig(teacher_model="default", student_model="default"))
    protocols = [
        Protocol(name, args.out, args.quick, base_teacher, args.seeds, args.methods, args.baseline)
        for name in args.task
    ]
    stages = STAGES if args.stage == "all" else [] if args.stage == "report" else [args.stage]
    for p in protocols:
        for stage in stages:
            t0 = time.perf_counter()
            print(f"== {p.name}: {stage}", flush=True)
            getattr(p, stage)()
            print(f"== {p.name}: {stage} done in {time.perf_counter() - t0:.0f} s", flush=True)
    print(report(protocols, args.out))


if __name__ == "__main__":
    main()
