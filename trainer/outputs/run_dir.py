"""Where a run writes: its output dir, and whether it continues an earlier run there (resume)."""

from __future__ import annotations

import logging
from pathlib import Path

from trainer.config import RunConfig
from trainer.errors import RunError
from trainer.outputs.checkpoints import checkpoint_step, latest_checkpoint

logger = logging.getLogger(__name__)


def choose_run_dir(cfg: RunConfig) -> tuple[RunConfig, Path | None]:
    """Where this run writes, and the checkpoint it continues from. With resume=auto (the default) an
    unfinished run (a checkpoint before `steps`) is continued, so a second `make run` after an interrupted
    one goes on where it stopped. A dir that holds a finished run (or one stopped before its first
    checkpoint) is never written over: left at its default, the run goes to the next free `skd-default-N`
    (continuing an unfinished one there); given explicitly, that stops here with one line."""
    out = Path(cfg.output_dir)
    if cfg.resume is True:
        if (checkpoint := latest_checkpoint(out / "checkpoints")) is None:
            raise RunError(f"--resume: no checkpoint in {out / 'checkpoints'}")
        logger.info("continuing the run in %s from %s", out, checkpoint.name)
        return cfg, checkpoint
    candidates = [out] if "output_dir" in cfg.model_fields_set else _numbered(out)
    for run_dir in candidates:
        checkpoint = latest_checkpoint(run_dir / "checkpoints")
        if cfg.resume == "auto" and checkpoint is not None and checkpoint_step(checkpoint) < cfg.steps:
            logger.info("continuing the run in %s from %s (unfinished; --resume=false starts anew)", run_dir,
                        checkpoint.name)  # fmt: skip
            return cfg.model_copy(update={"output_dir": run_dir}), checkpoint
        if not (run_dir / "metrics.jsonl").exists():
            if run_dir != out:
                logger.info("%s holds an earlier run: this one goes to %s", out, run_dir)
            return cfg.model_copy(update={"output_dir": run_dir}), None
    if checkpoint is None:
        held, more = "a run stopped before its first checkpoint", ""
    elif checkpoint_step(checkpoint) < cfg.steps:
        held, more = f"an unfinished run ({checkpoint.name})", "; --resume continues it"
    else:
        held, more = f"a finished run ({checkpoint.name})", "; a larger --steps continues it"
    raise RunError(f"{out} already holds {held}: choose another --output_dir (or remove it){more}")


def _numbered(out: Path):
    """out, out-2, out-3, ...: the default output dir and the ones later runs made beside it."""
    yield out
    n = 2
    while True:
        yield out.with_name(f"{out.name}-{n}")
        n += 1
