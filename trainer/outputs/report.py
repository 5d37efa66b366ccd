"""The run's report: PNG plots of metrics.jsonl's series and `report.md` (held-out table, summary, plots,
configuration). Metric names come from trainer.outputs.metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

from trainer.outputs import metrics as m

PLOTS = {
    "loss.png": ("train loss", [m.LOSS]),
    "acceptance.png": (
        "held-out acceptance rate (student tokens in the teacher's top-K)",
        [m.EVAL_ACCEPTANCE, m.EVAL_GREEDY_ACCEPTANCE],
    ),
    "kl.png": ("held-out KL(teacher || student) per token", [m.EVAL_KL]),
    "throughput.png": ("tokens / s", [m.ROLLOUT_TOKENS_PER_S, m.TRAIN_TOKENS_PER_S]),
    "staleness.png": ("staleness (weight versions)", [m.MEAN_STALENESS, m.DROPPED_STALE_TOTAL]),
}


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [
        (r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
    ]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot(records: list[dict], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, (title, keys) in PLOTS.items():
        fig, ax = plt.subplots(figsize=(6, 3.5))
        drawn = False
        for key in keys:
            xs, ys = _series(records, key)
            if xs:
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, label=key)
                drawn = True
        if drawn:
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.legend()
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(out_dir / name, dpi=100)
            written.append(name)
        plt.close(fig)
    return written


REPEATS_MORE = 0.3  # repeated 4-grams above the teacher's by this much: a collapsed student


def _header(evals: list[dict]) -> list[str]:
    """The run in a few lines: held-out acceptance and KL from the first evaluation to the last, then the
    student read against the teacher's own responses, with a warning where it has collapsed."""
    if len(evals) < 2:
        return []
    first, last = evals[0], evals[-1]
    lines = [
        f"Held-out acceptance rate {first[m.EVAL_ACCEPTANCE]:.3f} -> {last[m.EVAL_ACCEPTANCE]:.3f}, "
        f"KL(teacher || student) {first[m.EVAL_KL]:.3f} -> {last[m.EVAL_KL]:.3f} "
        f"(step {first['step']} -> {last['step']}).",
        "",
    ]
    if m.EVAL_TEACHER_RESPONSE_TOKENS not in last:
        return lines
    lines += [
        f"Held-out response tokens {first[m.EVAL_RESPONSE_TOKENS]:.1f} -> "
        f"{last[m.EVAL_RESPONSE_TOKENS]:.1f} (the teacher's greedy responses: "
        f"{last[m.EVAL_TEACHER_RESPONSE_TOKENS]:.1f}); repeated 4-grams "
        f"{first[m.EVAL_REPEATED_NGRAMS]:.2f} -> {last[m.EVAL_REPEATED_NGRAMS]:.2f} (the teacher's: "
        f"{last[m.EVAL_TEACHER_REPEATED_NGRAMS]:.2f}); KL on the teacher's responses "
        f"{first[m.EVAL_KL_ON_TEACHER]:.3f} -> {last[m.EVAL_KL_ON_TEACHER]:.3f}.",
        "",
    ]
    if last[m.EVAL_REPEATED_NGRAMS] > last[m.EVAL_TEACHER_REPEATED_NGRAMS] + REPEATS_MORE:
        lines += [
            "**The student repeats itself far more than the teacher**: it has likely collapsed into a "
            "repetition the teacher continues, which its top-K accepts and its KL on the student's own "
            "responses rewards. Held-out acceptance and KL do not measure distillation then; the KL on the "
            "teacher's responses does. See eval_responses/.",
            "",
        ]
    return lines


def write_report(out_dir: Path, config: dict, records: list[dict], summary: dict) -> Path:
    """report.md: what ran, the held-out metrics at each evaluation, throughput, and the plots."""
    evals = m.evaluations(records)
    teacher = {m.EVAL_TEACHER_RESPONSE_TOKENS, m.EVAL_TEACHER_REPEATED_NGRAMS}  # once per run: in the header
    keys = sorted({k for r in evals for k in r if k.startswith(m.EVAL)} - teacher)
    flat = [k for k in keys if len(evals) >= 2 and len({r.get(k) for r in evals}) == 1]
    keys = [k for k in keys if k not in flat]
    lines = ["# SKD run report", "", f"Method `{config['method']}`, output `{out_dir}`.", ""]
    lines += _header(evals)
    lines += [
        "## Held-out evaluation",
        "",
        "| step | " + " | ".join(k.removeprefix(m.EVAL) for k in keys) + " |",
    ]
    lines += ["|---" * (len(keys) + 1) + "|"]
    lines += [
        f"| {r['step']} | " + " | ".join(f"{r.get(k, float('nan')):.4g}" for k in keys) + " |" for r in evals
    ]
    if flat:  # a column of one value says nothing step by step: one line instead
        same = ", ".join(f"{k.removeprefix(m.EVAL)} {evals[0].get(k, float('nan')):.4g}" for k in flat)
        lines += [
            "",
            f"The same at every evaluation, so left out of the table: {same}. A task metric that stays put "
            "means the student cannot do that part of the task yet within this budget; held-out acceptance "
            "and KL show the distillation.",
        ]
    lines += ["", "## Run summary", ""] + [f"- {k}: {v}" for k, v in summary.items()]
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plot(records, out_dir)]
    lines += ["", "## Configuration", "", "```json", json.dumps(config, indent=2, default=str), "```", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
