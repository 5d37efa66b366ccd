"""Tasks: the data the trainer distils on and the metrics it reports. Everything works offline.

- registry   `Task` (prompt format, row parser, hub source, metric), `Example`, `TASKS`, `register`
- builtin    chat, arithmetic, summarization, translation, gsm8k, dialogsum, varied_summaries, flores,
             humaneval
- rows       generic rows (prompt-only, prompt-completion, conversational) -> `Example`
- loading    `load_examples(spec, split=, limit=, options=)`: embedded set, local files and saved datasets,
             hub datasets, `TASK[:CONFIG|:PATH]`; `hold_out`
- encoding   `encode_prompt`: chat template + left truncation
- metrics    `score_set` (a held-out set's task metrics: per-response means, corpus BLEU/chrF++),
             `score_response` (the task's metric on one response), `summarize_scores`
- humaneval, sandbox   HumanEval's loader and test programs; isolated execution of generated code

A new task: a row parser and one `register(Task(...))` (see builtin.py).
"""

from trainer.data.tasks import builtin as _builtin  # noqa: F401  (registers the built-in tasks)
from trainer.data.tasks.encoding import encode_prompt
from trainer.data.tasks.humaneval import program as humaneval_program
from trainer.data.tasks.loading import (
    PROMPT_SETS,
    SAMPLES,
    DataOptions,
    NoEvalSplit,
    hold_out,
    load_examples,
    spec_forms,
)
from trainer.data.tasks.metrics import score_response, score_set, score_set_items, summarize_scores
from trainer.data.tasks.registry import (
    TASKS,
    ChatTurn,
    Example,
    HubSource,
    Row,
    Split,
    Task,
    lookup,
    register,
)
from trainer.data.tasks.rows import Columns, row_to_example

__all__ = [
    "PROMPT_SETS",
    "SAMPLES",
    "TASKS",
    "ChatTurn",
    "Columns",
    "DataOptions",
    "Example",
    "HubSource",
    "NoEvalSplit",
    "Row",
    "Split",
    "Task",
    "encode_prompt",
    "hold_out",
    "humaneval_program",
    "load_examples",
    "lookup",
    "register",
    "row_to_example",
    "score_response",
    "score_set",
    "score_set_items",
    "spec_forms",
    "summarize_scores",
]
