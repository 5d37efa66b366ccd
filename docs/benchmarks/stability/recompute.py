"""Issue 37's before/after figures, recomputed from the runs committed here (no outputs/ needed).

    python docs/benchmarks/stability/recompute.py          # per_run/*.tar.gz -> results.json, summary.md
    python docs/benchmarks/stability/recompute.py --pack   # first pack the runs from outputs/ into per_run/

The figures are benchmarks.stability's (`figures`, `spread`, `table`); the runs were made by
`python -m benchmarks.stability` (defaults, completion order, the students) or `python trainer/main.py` at the
code named.
"""

import json
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))
from benchmarks.stability import figures, spread, table  # noqa: E402

# label: (code, flags, runs as their paths under outputs/)
SERIES = {
    "before: code 7aab084 (completion order, fixed gamma)": ("7aab084", [], ["before-1"]),
    "completion order (--batch_order=completion --adaptive_gamma=false)": (
        "4394943",
        ["--batch_order=completion", "--adaptive_gamma=false"],
        ["stability/completion_order/run0"],
    ),
    "stream order, fixed gamma (code c2e8b49)": ("c2e8b49", [], ["after-1"]),
    "student at temperature 1.0 (code c3debd2)": (
        "c3debd2",
        ["--student_temperature=1.0", "--student_top_p=1.0"],
        ["c1-t1"],
    ),
    "16-layer student, lr 5e-5 (the defaults at 4394943)": (
        "4394943",
        [],
        [f"stability/defaults/run{i}" for i in (0, 1, 2)],
    ),
    "24-layer student, lr 5e-5": (
        "71b8f23",
        ["--student_model=~/.cache/skd/SmolLM2-135M-Instruct-layers24"],
        ["stability/layers24/run0"],
    ),
    "26-layer student, lr 1.5e-4": (
        "71b8f23",
        ["--lr=1.5e-4", "--student_model=~/.cache/skd/SmolLM2-135M-Instruct-layers26"],
        ["stability24/26_layers_lr_1.5e-4/run0"],
    ),
    # run 0 ran at 71b8f23 with these as flags (--lr=1.5e-4 --student_model=...-layers24), runs 1-2 at
    # 7bde1fb, where they are the defaults
    "defaults: 24-layer student, lr 1.5e-4 (7bde1fb)": (
        "7bde1fb",
        [],
        [f"stability-final/defaults/run{i}" for i in (0, 1, 2)],
    ),
    "24-layer student, lr 3e-4 (49a1093)": ("49a1093", ["--lr=3e-4"], ["stability-final/lr_3e-4/run0"]),
    "26-layer student, lr 3e-4 (496bf0a)": (
        "496bf0a",
        ["--student_model=~/.cache/skd/SmolLM2-135M-Instruct-layers26", "--lr=3e-4"],
        ["stability-final/26_layers_lr_3e-4/run0"],
    ),
    "defaults at 60 steps (496bf0a)": ("496bf0a", ["--steps=60"], ["stability-final/60_steps/run0"]),
    # 2026-12-08, a 2-core Intel Xeon with AMX (bf16 engines), `python trainer/main.py FLAGS` at ff74ec5
    "Intel: defaults (ff74ec5)": ("ff74ec5", [], ["exp/default"]),
    "Intel: constant lr": ("ff74ec5", ["--lr_schedule=constant"], ["exp/constant"]),
    "Intel: batch 16, 3 runs": ("ff74ec5", ["--batch_size=16"], ["exp/b16", "exp/b16_r1", "exp/b16_r2"]),
    "Intel: batch 16, constant lr": ("ff74ec5", ["--batch_size=16", "--lr_schedule=constant"], ["exp/b16c"]),
    "Intel: batch 16, lr 2e-4": ("ff74ec5", ["--batch_size=16", "--lr=2e-4"], ["exp/b16lr2"]),
    "Intel: batch 24": ("ff74ec5", ["--batch_size=24"], ["exp/b24"]),
}


def archive(run: str) -> Path:
    return HERE / "per_run" / (run.replace("/", "-") + ".tar.gz")


def pack(outputs: Path) -> None:
    (HERE / "per_run").mkdir(exist_ok=True)
    for _, _, runs in SERIES.values():
        for run in runs:
            if archive(run).exists():  # packed once: committed archives stay byte-identical
                continue
            with tarfile.open(archive(run), "w:gz") as tar:
                for name in ("metrics.jsonl", "report.md", "eval_responses"):
                    tar.add(outputs / run / name, arcname=f"{run}/{name}")


def main() -> None:
    if "--pack" in sys.argv:
        pack(ROOT / "outputs")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (ref, flags, runs) in SERIES.items():
            figs = []
            for run in runs:
                with tarfile.open(archive(run)) as tar:
                    tar.extractall(tmp, filter="data")
                figs.append({"run": run, **figures(Path(tmp) / run)})
            version = {"label": label, "ref": ref, "flags": flags}
            results[label] = {"version": version, "runs": figs, "spread": spread(figs)}
    (HERE / "results.json").write_text(json.dumps(results, indent=1))
    (HERE / "summary.md").write_text(
        "# The default job, run after run (issue 37)\n\n"
        "`benchmarks.stability`'s figures, 2026-12-07, 2-core AMD EPYC (AVX2 only; float32 engines); "
        "the series labelled Intel: 2026-12-08, 2-core Intel Xeon with AMX (bf16 engines).\n"
        "Each run's "
        "metrics.jsonl, report.md and held-out responses are in `per_run/`; "
        "`python docs/benchmarks/stability/recompute.py` rewrites this file from them.\n\n" + table(results)
    )
    print(table(results))


if __name__ == "__main__":
    main()
