"""Loading examples from a data spec, the way TRL users bring data (through the `datasets` library):

- `embedded`, `short_answers`: the shipped prompt sets (trainer/data/prompt_sets/, train and eval files)
- a registered task: `TASK` from its own source or the hub, `TASK:CONFIG` for a hub config, `TASK:PATH` for
  a local file in the task's row format
- a local file: `.jsonl` (read line by line, so errors give the line), `.json`, `.parquet`, `.csv`, or a
  directory written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`
- a hub dataset: `org/name`, optionally `:config` (splits: `DataOptions.train_split` / `eval_split`)

Generic rows (files, hub datasets) are prompt-only, prompt-completion or conversational
(trainer/data/tasks/rows.py, columns chosen by `DataOptions.columns`). Bad rows fail with the file (or
dataset), the row and the field named; hub failures say what to do offline.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.data.tasks.registry import TASKS, Example, Split, Task
from trainer.data.tasks.rows import Columns, row_to_example

PROMPT_SETS = Path(__file__).resolve().parents[1] / "prompt_sets"
SAMPLES = PROMPT_SETS / "samples"
SHIPPED = ("embedded", "short_answers")  # trainer/data/prompt_sets/NAME_{train,eval}.jsonl
FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_HUB_DATASET = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(?::[\w.+-]+)?")


@dataclass(frozen=True)
class DataOptions:
    """How generic rows are read: their columns, and which splits of a hub dataset or a saved
    DatasetDict are the train and the eval split."""

    columns: Columns = field(default_factory=Columns)
    train_split: str = "train"
    eval_split: str = "test"

    def split_name(self, split: Split) -> str:
        return self.train_split if split == "train" else self.eval_split


class NoEvalSplit(ValueError):
    """The source has no held-out split of its own (one file, a single saved Dataset, a hub dataset without
    `eval_split`): the caller holds out rows of the train data instead."""


def spec_forms() -> str:
    tasks = ", ".join(" | ".join(t.spec_forms()) for t in TASKS.values() if t.spec_forms())
    files = "/".join(FILE_FORMATS)
    return (
        f"{' | '.join(repr(name) for name in SHIPPED)}, a local {files} file or save_to_disk directory, "
        f"a hub dataset 'org/name[:config]', {tasks}"
    )


def load_examples(
    spec: str, *, split: Split = "train", limit: int | None = None, options: DataOptions | None = None
) -> list[Example]:
    """Load the examples named by `spec` (forms: see `spec_forms()`).

    `split` ("train" | "eval") selects the shipped set's file, the task's own fold or the dataset split
    (`options`). A source without an eval split raises `NoEvalSplit` for split="eval". `limit` keeps the
    first N examples.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    examples = _load(spec.strip(), split, options or DataOptions())
    return examples if limit is None else examples[:limit]


def hold_out(examples: list[Example], n: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held out): `n` examples chosen at random (seeded), both parts kept in their original order."""
    import random

    if not 0 < n < len(examples):
        raise ValueError(
            f"cannot hold out {n} of {len(examples)} examples for evaluation and train on the rest"
        )
    chosen = set(random.Random(seed).sample(range(len(examples)), n))
    return (
        [e for i, e in enumerate(examples) if i not in chosen],
        [e for i, e in enumerate(examples) if i in chosen],
    )


def _load(spec: str, split: Split, options: DataOptions) -> list[Example]:
    if spec in SHIPPED:
        return load_jsonl(PROMPT_SETS / f"{spec}_{split}.jsonl")
    name, _, arg = spec.partition(":")
    task = TASKS.get(name)
    if task is not None and task.spec_forms():
        return _load_task(task, arg, split)
    path = Path(spec).expanduser()
    if path.exists() or path.suffix in FILE_FORMATS:
        return _load_local(path, split, options)
    if _HUB_DATASET.fullmatch(spec):
        return _load_hub_dataset(spec, split, options)
    raise ValueError(f"unknown data spec {spec!r}; accepted forms: {spec_forms()}")


# --- local files and saved datasets -----------------------------------------------------------------------


def _load_local(path: Path, split: Split, options: DataOptions) -> list[Example]:
    if path.is_dir():
        rows = _saved_dataset_rows(path, options.split_name(split), split)
    elif not path.is_file():
        raise ValueError(f"{path}: no such file")
    elif split == "eval":
        raise NoEvalSplit(f"{path} is one file: it has no eval split")
    else:
        rows = _file_rows(path)
    return [_generic(row, where, options.columns) for where, row in rows]


def load_jsonl(path: Path, columns: Columns | None = None) -> list[Example]:
    """A JSONL file of generic rows (the embedded set's format is one of them)."""
    return [_generic(row, where, columns or Columns()) for where, row in _jsonl_rows(path)]


def _generic(row: dict[str, Any], where: str, columns: Columns) -> Example:
    try:
        example = row_to_example(row, columns)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return example.model_copy(update={"source": where})


def _file_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) for each row of a local file: `file:line` for JSONL and CSV, `file row i` otherwise."""
    if path.suffix == ".jsonl":
        return _jsonl_rows(path)
    if path.suffix not in FILE_FORMATS:
        raise ValueError(
            f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(FILE_FORMATS)}"
        )
    datasets = _datasets(f"reading {path}")
    kwargs: dict[str, Any] = {}
    if path.suffix == ".csv":  # every column a string: "007" stays "007", not the number 7
        with path.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        kwargs["features"] = datasets.Features({name: datasets.Value("string") for name in header})
    try:
        rows = datasets.load_dataset(FILE_FORMATS[path.suffix], data_files=str(path), split="train", **kwargs)
    except Exception as e:
        raise ValueError(f"{path}: could not read it as {path.suffix[1:]}: {type(e).__name__}: {e}") from None
    line = (lambda i: f"{path}:{i + 2}") if path.suffix == ".csv" else (lambda i: f"{path} row {i}")
    return ((line(i), dict(row)) for i, row in enumerate(rows))


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Line by line, so a bad line is named and rows need not share one schema (as arrow would need)."""
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
            yield f"{path}:{lineno}", row


def _saved_dataset_rows(path: Path, split_name: str, split: Split) -> Iterator[tuple[str, dict[str, Any]]]:
    datasets = _datasets(f"reading {path}")
    try:
        saved = datasets.load_from_disk(str(path))
    except Exception as e:
        raise ValueError(
            f"{path}: not a directory written by Dataset.save_to_disk ({type(e).__name__}: {e})"
        ) from None
    if isinstance(saved, datasets.DatasetDict):
        if split_name not in saved:
            if split == "eval":
                raise NoEvalSplit(f"{path} has no split {split_name!r} (splits: {', '.join(saved)})")
            raise ValueError(
                f"{path} has no split {split_name!r} (splits: {', '.join(saved)}); set train_split"
            )
        saved, where = saved[split_name], f"{path} [{split_name}]"
    elif split == "eval":
        raise NoEvalSplit(f"{path} is one saved Dataset: it has no eval split")
    else:
        where = str(path)
    return ((f"{where} row {i}", dict(row)) for i, row in enumerate(saved))


# --- hub datasets -----------------------------------------------------------------------------------------


def _datasets(why: str):
    try:
        import datasets
    except ImportError:
        raise RuntimeError(f"{why} needs the `datasets` package: pip install datasets") from None
    return datasets


def _load_hub_dataset(spec: str, split: Split, options: DataOptions) -> list[Example]:
    name, _, config = spec.partition(":")
    split_name = options.split_name(split)
    datasets = _datasets(f"loading {name} from the hub")
    try:
        rows = datasets.load_dataset(name, config or None, split=split_name)
    except ValueError as e:
        if split == "eval" and "split" in str(e).lower():  # the dataset exists but has no such split
            raise NoEvalSplit(f"hub dataset {name} has no split {split_name!r}: {e}") from None
        raise _hub_error(name, config, split_name, e) from e
    except Exception as e:
        raise _hub_error(name, config, split_name, e) from e
    where = f"{name}{':' + config if config else ''} [{split_name}] row"
    return [_generic(dict(row), f"{where} {i}", options.columns) for i, row in enumerate(rows)]


def _hub_error(name: str, config: str, split_name: str, e: Exception) -> RuntimeError:
    return RuntimeError(
        f"could not load the dataset {name!r} ({config or 'default'} config, split {split_name!r}) from the "
        f"Hugging Face hub or its cache (offline, no access, or no such dataset?): {type(e).__name__}: {e}. "
        "Offline: download it where the hub is reachable and pass the directory of "
        "`datasets.load_dataset(...).save_to_disk(DIR)` or a local .jsonl/.json/.parquet/.csv file"
    )


# --- registered tasks -------------------------------------------------------------------------------------


def _load_task(task: Task, arg: str, split: Split) -> list[Example]:
    path = Path(arg).expanduser()
    if arg and task.parse_row and (path.suffix in FILE_FORMATS or path.is_file()):
        if not path.is_file():
            raise ValueError(f"{task.name}:{arg}: no such file")
        if split == "eval":  # else the caller would evaluate on the very rows it trains on
            raise NoEvalSplit(f"{task.name}:{arg} is one file: it has no eval split")
        return [_parse_row(task, row, where) for where, row in _file_rows(path)]
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
    return _load_task_hub(task, arg or hub.config, split)


def _parse_row(task: Task, row: dict[str, Any], where: str) -> Example:
    assert task.parse_row is not None
    try:
        return task.example(task.parse_row(row)).model_copy(update={"source": where})
    except KeyError as e:
        raise ValueError(f"{where}: missing or empty string field {e.args[0]!r} ({task.name} row)") from None
    except ValueError as e:
        raise ValueError(f"{where}: {e} ({task.name} row)") from None


def _load_task_hub(task: Task, config: str | None, split: Split) -> list[Example]:
    """A task's rows from the hub via `datasets`; any failure is a RuntimeError naming the local form."""
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
