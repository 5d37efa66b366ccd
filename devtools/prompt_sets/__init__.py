"""Generators of the prompt sets shipped in trainer/data/prompt_sets/ (see devtools/__init__.py)."""

from pathlib import Path

import trainer.data.prompt_sets

SHIPPED = (
    Path(trainer.data.prompt_sets.__file__).resolve().parent
)  # where the generated files are package data
