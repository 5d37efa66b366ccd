"""SKD training job: `python trainer/main.py [--config run.yaml] [--key=value ...]`.

With no arguments it runs the embedded default (SmolLM2-135M-Instruct teacher, a layer-pruned student, the
shipped prompt set) end to end on this machine. Under `ray job submit ... -- python trainer/main.py` it joins
that cluster. The command line is trainer/cli.py; the job, trainer/job.py; the loop, trainer/loop.py.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python trainer/main.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.cli import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    cli()
