"""The student's held-out responses at each evaluation, one JSONL file per step
(`eval_responses/step_000030.jsonl`): what a reader checks by eye, and the per-item scores a paired
comparison of two runs needs (benchmarks.paper's bootstrap)."""

from __future__ import annotations

import json
import os
from pathlib import Path

DIR = "eval_responses"


def responses_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / DIR / f"step_{step:06d}.jsonl"


def write_responses(run_dir: Path, step: int, items: list[dict]) -> Path:
    """One line per held-out item, in eval-set order; written to a temp file and renamed, so a reader
    never sees half a file (a resumed run writes the same step again)."""
    path = responses_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.partial")
    tmp.write_text("".join(json.dumps(item) + "\n" for item in items))
    os.replace(tmp, path)
    return path


def read_responses(run_dir: Path, step: int) -> list[dict]:
    path = responses_path(run_dir, step)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no held-out responses at step {step} (an older run, or no eval there)"
        )
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
