"""Evaluation's share of a run, with the acceptance rollouts waited for (`eval_async=false`, as before) and
going on while training continues (`eval_async=true`, the default): `make run`'s job (the embedded default)
run once each way, one after the other, in one invocation (issue 27).

    python -m benchmarks.eval_cost [--out outputs/eval_cost] [-- extra trainer flags]

Per way: the wall time, the loop's seconds in evaluation (the run summary's `seconds_by_phase`) and their
share, the loop's seconds per evaluation part, the dropped stale samples, and the final held-out metrics
(which measure the same model either way: the same numbers up to sampling noise).
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import time
from pathlib import Path

from shared import reaper

WAYS = {"waited (before)": "false", "async (after)": "true"}


def summary(run_dir: Path) -> dict:
    """The run summary's fields from report.md (`- key: value` lines under "## Run summary")."""
    text = (run_dir / "report.md").read_text().split("## Run summary", 1)[1]
    out = {}
    for line in text.splitlines():
        if line.startswith("- ") and ": " in line:
            key, value = line[2:].split(": ", 1)
            try:
                out[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                out[key] = value
    return out


def run_once(out: Path, async_flag: str, extra: list[str]) -> dict:
    run_dir = out / f"eval_async_{async_flag}"
    cmd = [sys.executable, "trainer/main.py", f"--output_dir={run_dir}", f"--eval_async={async_flag}", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    s = summary(run_dir)
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    evals = [r for r in records if "eval/kl" in r]
    parts: dict[str, float] = {}
    for e in evals:
        for k, v in e.items():
            if k.startswith("perf/eval_"):
                parts[k.removeprefix("perf/eval_").removesuffix("_s")] = parts.get(k, 0.0) + v
    phases = s["seconds_by_phase"]
    return {
        "wall_s": wall,
        "eval_s": phases.get("eval", 0.0),
        "share": phases.get("eval", 0.0) / sum(phases.values()),
        "evaluations": len(evals),
        "parts_s": parts,
        "held_out_rollouts_s": [round(e.get("perf/held_out_rollouts_s", 0.0), 1) for e in evals],
        "dropped": s.get("dropped_stale_samples"),
        "final": {k: v for k, v in evals[-1].items() if k.startswith("eval/")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("outputs/eval_cost"))
    ap.add_argument("extra", nargs="*", help="trainer flags for both runs (after --)")
    args = ap.parse_args()
    reaper.start()  # nothing it starts outlives it: Ctrl-C, kill, kill -9 (after --help: it starts nothing)
    results = {way: run_once(args.out, flag, args.extra) for way, flag in WAYS.items()}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    head = ["evaluation", "wall s", "eval s (loop)", "eval share", "loop s per part", "dropped stale"]
    print("\n| " + " | ".join([*head, "final acceptance", "final KL"]) + " |")
    print("|---" * (len(head) + 2) + "|")
    for way, r in results.items():
        parts = ", ".join(f"{k} {v:.0f}" for k, v in r["parts_s"].items())
        final = r["final"]
        cells = [
            way,
            f"{r['wall_s']:.0f}",
            f"{r['eval_s']:.0f}",
            f"{r['share']:.0%}",
            parts,
            str(r["dropped"]),
        ]
        cells += [
            f"{final.get('eval/acceptance', float('nan')):.3f}",
            f"{final.get('eval/kl', float('nan')):.3f}",
        ]
        print("| " + " | ".join(cells) + " |")
    before, after = results.values()
    print(f"\neval seconds after / before: {after['eval_s'] / before['eval_s']:.2f}; "
          f"wall after / before: {after['wall_s'] / before['wall_s']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
