"""Loading examples from a data spec: the embedded prompt set, a generic JSONL file, or a registered task
(`TASK` from its own source or the hub, `TASK:CONFIG` for a hub config, `TASK:PATH` for a local JSONL in
the task's row format). Bad rows fail with the file, line and field named; hub failures point to the
local form."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trainer.tasks.registry import TASKS, Example, Split, Task

PROMPT_SETS = Path(__file__).resolve().parents[1] / "prompt_sets"
SAMPLES = PROMPT_SETS / "samples"


def spec_forms() -> str:
    tasks = ", ".join(" | ".join(t.spec_forms()) for t in TASKS.values() if t.spec_forms())
    return f"'embedded', a path ending in .jsonl (prompt, optional reference/task), {tasks}"


def load_examples(spec: str, *, split: Split = "train", limit: int | None = None) -> list[Example]:
    """Load the examples named by `spec` (forms: see `spec_forms()`).

    `split` ("train" | "eval") selects the embedded file, the task's own fold or the hub split. A single
    local file (.jsonl or TASK:PATH) is used whole whatever the split: train and eval data are configured
    separately. `limit` keeps the first N examples.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    examples = _load(spec.strip(), split)
    return examples if limit is None else examples[:limit]


def _load(spec: str, split: Split) -> list[Example]:
    if spec == "embedded":
        return load_jsonl(PROMPT_SETS / f"embedded_{split}.jsonl")
    name, _, arg = spec.partition(":")
    task = TASKS.get(name)
    if task is not None and task.spec_forms():
        return _load_task(task, arg, split)
    if spec.endswith(".jsonl"):
        return load_jsonl(Path(spec).expanduser())
    raise ValueError(f"unknown data spec {spec!r}; accepted forms: {spec_forms()}")


def _load_task(task: Task, arg: str, split: Split) -> list[Example]:
    path = Path(arg).expanduser()
    if arg and task.parse_row and (arg.endswith(".jsonl") or path.is_file()):
        return _load_task_file(task, path)
    if task.load is not None and not arg:
        return task.load(task, split)
    hub = task.hub
    if hub is None or (arg and not hub.config_pattern):
        raise ValueError(f"{task.name}:{arg}: no such file (a local file must exist; the forms of "
                         f"{task.name!r} are {' | '.join(task.spec_forms())})")  # fmt: skip
    if hub.config_pattern and not arg:
        raise ValueError(f"{task.name} needs a hub config or a file: {' or '.join(task.spec_forms())}")
    if hub.config_pattern and not re.fullmatch(hub.config_pattern, arg):
        raise ValueError(
            f"{task.name} spec needs '{task.name}:{hub.config_hint}' or an existing file, got {arg!r}"
        )
    return _load_hub(task, arg or hub.config, split)


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) for each non-blank line; a line that is not an object is a ValueError."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append((lineno, row))
    return rows


def load_jsonl(path: Path) -> list[Example]:
    """Generic JSONL: `prompt`, optional `reference`, `task` (default "chat") and `meta`."""
    examples = []
    for lineno, row in _read_rows(path):
        try:
            examples.append(Example.model_validate({**row, "source": f"{path}:{lineno}"}))
        except ValidationError as e:
            problems = "; ".join(
                f"field '{'.'.join(map(str, err['loc'])) or '?'}': {err['msg']}" for err in e.errors()
            )
            raise ValueError(f"{path}:{lineno}: {problems}") from None
    return examples


def _parse_row(task: Task, row: dict[str, Any], where: str) -> Example:
    assert task.parse_row is not None
    try:
        return task.example(task.parse_row(row)).model_copy(update={"source": where})
    except KeyError as e:
        raise ValueError(f"{where}: missing or empty string field {e.args[0]!r} ({task.name} row)") from None
    except ValueError as e:
        raise ValueError(f"{where}: {e} ({task.name} row)") from None


def _load_task_file(task: Task, path: Path) -> list[Example]:
    return [_parse_row(task, row, f"{path}:{lineno}") for lineno, row in _read_rows(path)]


def _load_hub(task: Task, config: str | None, split: Split) -> list[Example]:
    """Rows from the Hugging Face hub via `datasets`; any failure is a RuntimeError naming the local form."""
    hub = task.hub
    assert hub is not None
    hint = f"pass a local file as '{task.name}:PATH' in the hub's row format (samples: {SAMPLES})"
    if hub.loading_script:
        hint += f"; note {hub.path} is a loading-script dataset, which only datasets<4 can load"
    try:
        import datasets
    except ImportError:
        raise RuntimeError(
            f"loading {task.name} from the hub needs the `datasets` package, which is not installed; {hint}"
        ) from None
    kwargs: dict[str, Any] = {}
    if hub.loading_script and int(datasets.__version__.split(".")[0]) < 4:
        kwargs["trust_remote_code"] = True  # datasets>=4 cannot load a loading-script dataset at all
    try:
        rows = datasets.load_dataset(hub.path, config, split=hub.splits[split], **kwargs)
    except Exception as e:
        raise RuntimeError(
            f"could not load {hub.path} ({config or 'default'}, {hub.splits[split]}) from the Hugging Face "
            f"hub (offline, or no access?): {type(e).__name__}: {e}; {hint}"
        ) from e
    where = f"{hub.path} {hub.splits[split]} row"
    return [_parse_row(task, dict(row), f"{where} {i}") for i, row in enumerate(rows)]
