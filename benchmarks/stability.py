"""Does the default job learn the same way every time? `make run`'s job (the embedded default, or the flags
given after --) run N times, and its outcome's spread (issue 37's guard).

    python -m benchmarks.stability [--runs 3] [--ref REV ...] [--variant 'LABEL=FLAGS' ...]
                                   [--out outputs/stability] [-- trainer flags for every run]

Per run: the held-out acceptance rate and KL at the end; the student's held-out response length at the
start and the end beside the teacher's, its repeated 4-grams beside the teacher's and its KL on the
teacher's own responses (a student collapsed into a repetition the teacher continues games the first two
figures, not these); the rollouts generated and dropped as stale; the mean response length of what was
generated, trained on and dropped (a length-biased batching shows as trained < generated); the learner's
busy fraction; the loop's seconds (first step to done) and the committed tokens per second.
Then per figure the mean, standard deviation and range over the runs.

`--ref REV` also runs the job as it was at git revision REV (checked out in a worktree under --out), and
`--variant 'LABEL=FLAGS'` with those trainer flags (e.g. the loop before issue 37:
`'completion order=--batch_order=completion --adaptive_gamma=false'`); the versions alternate run by run, so
they share the machine's state.
A finished run is read again, not re-run: an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.eval_cost import summary
from shared import reaper

ROOT = Path(__file__).resolve().parents[1]
CURRENT = "working tree"
CURVE = ("step", "eval/acceptance", "eval/kl", "eval/response_tokens")

FIGURES = {  # name: (format, what it is)
    "acceptance": (".3f", "held-out acceptance at the end"),
    "kl": (".3f", "held-out KL at the end"),
    "response_tokens_start": (".1f", "held-out response tokens at step 0"),
    "response_tokens_end": (".1f", "held-out response tokens at the end"),
    "teacher_response_tokens": (".1f", "the teacher's held-out response tokens"),
    "repeated_4grams": (".2f", "repeated 4-grams in held-out responses at the end"),
    "teacher_repeated_4grams": (".2f", "the same in the teacher's responses"),
    "kl_on_teacher_start": (".3f", "KL on the teacher's responses at step 0"),
    "kl_on_teacher_end": (".3f", "KL on the teacher's responses at the end"),
    "stale_fraction": (".3f", "dropped stale / generated samples"),
    "generated_tokens_mean": (".1f", "mean length generated"),
    "trained_tokens_mean": (".1f", "mean length trained on"),
    "dropped_tokens_mean": (".1f", "mean length dropped"),
    "busy_fraction": (".3f", "learner busy fraction"),
    "loop_s": (".0f", "loop seconds, first step to done"),
    "committed_tokens_per_s": (".1f", "committed rollout tokens / loop second"),
}


@dataclass(frozen=True)
class Version:
    """What one series of runs runs: the code at `ref` (or the working tree) with `flags`."""

    label: str
    ref: str = CURRENT
    flags: tuple[str, ...] = ()

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.label).strip("_")


def source(out: Path, ref: str) -> Path:
    """Where the job's code is: the working tree, or a worktree of `ref` under `out`."""
    if ref == CURRENT:
        return ROOT
    tree = out / f"src-{ref}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True)
    return tree


def run_dir(out: Path, version: Version, i: int) -> Path:
    return out / version.slug / f"run{i}"


def run_once(out: Path, version: Version, i: int, extra: list[str]) -> None:
    """One run of `version`, from its own tree (Ray's workers import the code from the job's directory)."""
    target = run_dir(out, version, i).resolve()
    if (target / "report.md").exists():
        return
    cmd = [sys.executable, "trainer/main.py", f"--output_dir={target}", *extra, *version.flags]
    print(f"stability: {version.label} run {i}: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, cwd=source(out, version.ref), check=True)


def versions(refs: list[str], variants: list[str]) -> list[Version]:
    """--ref REV and --variant 'LABEL=FLAGS' as versions, then the working tree's defaults."""
    out = [Version(ref, ref) for ref in refs]
    for v in variants:
        label, sep, flags = v.partition("=")
        if not sep or not label:
            raise SystemExit(f"--variant {v!r}: expected LABEL=FLAGS, e.g. 'before=--batch_order=completion'")
        out.append(Version(label, CURRENT, tuple(shlex.split(flags))))
    return [*out, Version("defaults")]


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def figures(target: Path) -> dict:
    """One finished run's figures, from its metrics.jsonl and report (None where its code logged none)."""
    records = [json.loads(x) for x in (target / "metrics.jsonl").read_text().splitlines() if x.strip()]
    evals = [r for r in records if "eval/kl" in r]
    steps = [r for r in records if "train/loss" in r]
    s = summary(target)
    generated = [n for r in steps for n in r.get("data/generated_lengths", [])]
    trained = [n for r in steps for n in r.get("data/trained_lengths", [])]
    dropped = [n for r in steps for n in r.get("data/dropped_lengths", [])]
    loop_s = sum(s["seconds_by_phase"].values())
    return {
        "acceptance": evals[-1]["eval/acceptance"],
        "kl": evals[-1]["eval/kl"],
        "response_tokens_start": evals[0]["eval/response_tokens"],
        "response_tokens_end": evals[-1]["eval/response_tokens"],
        "teacher_response_tokens": evals[-1].get("eval/teacher_response_tokens"),
        "repeated_4grams": evals[-1].get("eval/repeated_4grams"),
        "teacher_repeated_4grams": evals[-1].get("eval/teacher_repeated_4grams"),
        "kl_on_teacher_start": evals[0].get("eval/kl_on_teacher_responses"),
        "kl_on_teacher_end": evals[-1].get("eval/kl_on_teacher_responses"),
        "generated": len(generated) or None,
        "dropped": s["dropped_stale_samples"],
        "stale_fraction": s["dropped_stale_samples"] / len(generated) if generated else None,
        "generated_tokens_mean": _mean(generated),
        "trained_tokens_mean": _mean(trained),
        "dropped_tokens_mean": _mean(dropped),
        "busy_fraction": s["trainer_busy_fraction"],
        "loop_s": loop_s,
        "committed_tokens_per_s": sum(generated) / loop_s if generated else None,
        "curve": [{k: r.get(k) for k in CURVE} for r in evals],
        "batch_tokens": [r.get("train/tokens") for r in steps],
    }


def spread(runs: list[dict]) -> dict:
    """Per figure over the runs: mean, sd, min, max, range."""
    out = {}
    for name in FIGURES:
        values = [r[name] for r in runs if r.get(name) is not None]
        if values:
            out[name] = {
                "mean": statistics.fmean(values),
                "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                "min": min(values),
                "max": max(values),
                "range": max(values) - min(values),
            }
    return out


def table(results: dict[str, dict]) -> str:
    """Markdown: the versions' means side by side, then per version each run's figures and their spread."""
    labels = list(results)
    lines = ["| figure | " + " | ".join(f"{label} (mean ± sd)" for label in labels) + " |"]
    lines += ["|---" * (len(labels) + 1) + "|"]
    for name, (fmt, what) in FIGURES.items():
        cells = []
        for label in labels:
            s = results[label]["spread"].get(name)
            cells.append(f"{s['mean']:{fmt}} ± {s['sd']:{fmt}}" if s else "-")
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    lines.append("")
    for label, r in results.items():
        flags = " ".join(r["version"]["flags"]) or "no flags"
        lines += [f"### {label} (code: {r['version']['ref']}; {flags})", ""]
        runs = " | ".join(f"run {i}" for i in range(len(r["runs"])))
        lines += [f"| figure | {runs} | mean ± sd | range |"]
        lines += ["|---" * (len(r["runs"]) + 3) + "|"]
        for name, (fmt, what) in FIGURES.items():
            cells = [format(x[name], fmt) if x.get(name) is not None else "-" for x in r["runs"]]
            s = r["spread"].get(name)
            agg = [f"{s['mean']:{fmt}} ± {s['sd']:{fmt}}", f"{s['range']:{fmt}}"] if s else ["-", "-"]
            lines.append(f"| {what} | " + " | ".join(cells + agg) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="runs per version")
    ap.add_argument("--ref", action="append", default=[], help="also run the job at this git revision")
    ap.add_argument(
        "--variant", action="append", default=[], help="also run it with flags: 'LABEL=--flag=value ...'"
    )
    ap.add_argument("--out", type=Path, default=Path("outputs/stability"))
    ap.add_argument("extra", nargs="*", help="trainer flags for every run (after --)")
    args = ap.parse_args()
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    series = versions(args.ref, args.variant)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(args.runs):  # alternating: each version's i-th run under the same conditions
        for version in series:
            run_once(args.out, version, i, args.extra)
    results = {}
    for version in series:
        runs = [figures(run_dir(args.out, version, i)) for i in range(args.runs)]
        results[version.label] = {"version": asdict(version), "runs": runs, "spread": spread(runs)}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    text = table(results)
    (args.out / "summary.md").write_text(text)
    print(f"\n{text}\nstability: {len(series) * args.runs} runs, {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
