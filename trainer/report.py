"""Run outputs: `metrics.jsonl` (one JSON object per event, flushed as written), PNG plots, `report.md`."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

PLOTS = {
    "loss.png": ("train loss", ["train/loss"]),
    "acceptance.png": (
        "held-out acceptance rate (student tokens in the teacher's top-K)",
        ["eval/acceptance", "eval/greedy_acceptance"],
    ),
    "kl.png": ("held-out KL(teacher || student) per token", ["eval/kl"]),
    "throughput.png": ("tokens / s", ["perf/rollout_tokens_per_s", "perf/train_tokens_per_s"]),
    "staleness.png": ("staleness (weight versions)", ["perf/mean_staleness", "perf/dropped_stale_total"]),
}


class MetricsLog:
    """metrics.jsonl, and the same records to each sink (experiment trackers: `sink.log(step, values)`)."""

    def __init__(self, path: Path, sinks: list | None = None):
        self.path = path
        self.sinks = sinks or []
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, step: int, values: dict) -> None:
        record = {"step": step, "time": time.time(), **values}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for sink in self.sinks:
            sink.log(step, values)

    def keep_until(self, step: int) -> int:
        """Drop the records after `step`, and a line cut short by a kill: a run resumed from the checkpoint
        of `step` writes those steps again. Rewritten atomically; returns how many lines were dropped."""
        if not self.path.exists():
            return 0
        lines = self.path.read_text().splitlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("step", 0) <= step:
                kept.append(line)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        tmp.replace(self.path)
        return len(lines) - len(kept)

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


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


def write_report(out_dir: Path, config: dict, records: list[dict], summary: dict) -> Path:
    """report.md: what ran, the held-out metrics at each evaluation, throughput, and the plots."""
    evals = [r for r in records if "eval/acceptance" in r]
    keys = sorted({k for r in evals for k in r if k.startswith("eval/")})
    lines = ["# SKD run report", "", f"Method `{config['method']}`, output `{out_dir}`.", ""]
    if len(evals) >= 2:
        first, last = evals[0], evals[-1]
        lines += [
            f"Held-out acceptance rate {first['eval/acceptance']:.3f} -> {last['eval/acceptance']:.3f}, "
            f"KL(teacher || student) {first['eval/kl']:.3f} -> {last['eval/kl']:.3f} "
            f"(step {first['step']} -> {last['step']}).",
            "",
        ]
    lines += ["## Held-out evaluation", "", "| step | " + " | ".join(k[5:] for k in keys) + " |"]
    lines += ["|---" * (len(keys) + 1) + "|"]
    lines += [
        f"| {r['step']} | " + " | ".join(f"{r.get(k, float('nan')):.4g}" for k in keys) + " |" for r in evals
    ]
    lines += ["", "## Run summary", ""] + [f"- {k}: {v}" for k, v in summary.items()]
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plot(records, out_dir)]
    lines += ["", "## Configuration", "", "```json", json.dumps(config, indent=2, default=str), "```", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
