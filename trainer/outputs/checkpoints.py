"""Checkpoint dirs of a run: their names (`checkpoints/step_000030`), which are complete, the newest, and
rotation. A checkpoint is complete once its trainer state file exists: the learner writes it last, into
a staged dir renamed whole (trainer.staging)."""

from __future__ import annotations

import shutil
from pathlib import Path

STATE_FILE = "trainer_state.pt"
PREFIX = "step_"


def checkpoint_dir(directory: Path, step: int) -> Path:
    """Where the checkpoint of `step` goes in a run's `checkpoints/` dir."""
    return directory / f"{PREFIX}{step:06d}"


def checkpoint_step(checkpoint: Path) -> int:
    """The step a checkpoint dir was written at."""
    return int(checkpoint.name.removeprefix(PREFIX))


def complete_checkpoints(directory: Path) -> list[Path]:
    """The finished checkpoints in `directory`, oldest first (a half-written one has no state file yet)."""
    return sorted(p for p in directory.glob(f"{PREFIX}*") if (p / STATE_FILE).exists())


def latest_checkpoint(directory: Path) -> Path | None:
    found = complete_checkpoints(directory)
    return found[-1] if found else None


def rotate_checkpoints(directory: Path, keep: int | None) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints (None: keep all); returns what was deleted.
    The newest is always kept, so a resumed run finds it; half-written ones are not counted or touched."""
    old = complete_checkpoints(directory)[:-keep] if keep else []
    for path in old:
        shutil.rmtree(path)
    return old
