"""What the task generators share: rows spread evenly over the families (templates, scenarios), a held-out
split that never shares a combination with train, and the JSONL files written."""

from __future__ import annotations

import json
import random
from pathlib import Path


def split_evenly(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def disjoint_splits(combos: list, n_test: int, n_train: int, rng: random.Random) -> list[tuple[str, list]]:
    """One family's combinations shuffled: test takes the first, train the next, so none is in both."""
    assert len(combos) >= n_train + n_test, f"{len(combos)} combinations for {n_train} + {n_test} rows"
    rng.shuffle(combos)
    return [("test", combos[:n_test]), ("train", combos[n_test : n_test + n_train])]


def write_splits(out_dir: Path, rows: dict[str, list[dict]]) -> dict[str, int]:
    """out_dir/{split}.jsonl for each split; {split: rows}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, records in rows.items():
        lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        (out_dir / f"{split}.jsonl").write_text("".join(lines))
    return {split: len(records) for split, records in rows.items()}
