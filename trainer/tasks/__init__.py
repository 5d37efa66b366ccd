"""Tasks: the data the trainer distils on and the metrics it reports. Everything works offline.

- registry   `Task` (prompt format, row parser, hub source, metric), `Example`, `TASKS`, `register`
- builtin    chat, arithmetic, gsm8k, dialogsum, flores, humaneval
- loading    `load_examples(spec, split=, limit=)`: embedded set, generic JSONL, `TASK[:CONFIG|:PATH]`
- encoding   `encode_prompt`: chat template + left truncation
- metrics    `score_response` (the task's metric), `summarize_scores`
- humaneval, sandbox   HumanEval's loader and test programs; isolated execution of generated code

A new task: a row parser and one `register(Task(...))` (see builtin.py).
"""

from trainer.tasks import builtin as _builtin  # noqa: F401  (registers the built-in tasks)
from trainer.tasks.encoding import encode_prompt
from trainer.tasks.humaneval import program as humaneval_program
from trainer.tasks.loading import PROMPT_SETS, SAMPLES, load_examples, spec_forms
from trainer.tasks.metrics import score_response, summarize_scores
from trainer.tasks.registry import TASKS, Example, HubSource, Row, Split, Task, register

__all__ = [
    "PROMPT_SETS",
    "SAMPLES",
    "TASKS",
    "Example",
    "HubSource",
    "Row",
    "Split",
    "Task",
    "encode_prompt",
    "humaneval_program",
    "load_examples",
    "register",
    "score_response",
    "spec_forms",
    "summarize_scores",
]
