"""Directories written whole or not at all (checkpoints, converted and pruned models)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """An empty hidden dir beside `final` to write into; when the block ends without error it replaces
    `final` in one rename, so a crash never leaves a half-written dir under the final name (what it left
    in the staging dir is cleared at the next try)."""
    staging = final.with_name(f".{final.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    yield staging
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
