"""What a task is, and the tasks known by name.

A `Task` bundles everything the trainer needs to know about one kind of data: how a row in the task's own
format becomes a prompt (`parse_row` + `prompt_format`), where it loads from (`hub`, or a loader of its own),
and how responses are scored: `metric` on each response and, optionally, `corpus_metric` on all of a held-out
set's responses of the task together (BLEU, chrF++: corpus-level, not a mean of sentence scores). The built-in
tasks register in `trainer.data.tasks.builtin`; a new task is one `register(Task(...))` call, after which
`load_examples("NAME")`, `NAME:PATH` and scoring all work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

Split = Literal["train", "eval"]
TASKS: dict[str, Task] = {}


def registered(registry: Mapping[str, Any], what: str) -> Callable[[str], str]:
    """A pydantic validator: the name must be in the registry (looked up when validating, so entries
    registered later count)."""

    def check(name: str) -> str:
        if name not in registry:
            raise ValueError(f"unknown {what} {name!r}; registered {what}s: {', '.join(registry)}")
        return name

    return check


def lookup(name: str) -> Task:
    """The registered task `name`; an error listing the registered ones otherwise."""
    return TASKS[registered(TASKS, "task")(name)]


class ChatTurn(BaseModel):
    """One turn of a conversation, as chat templates take it."""

    model_config = ConfigDict(extra="ignore")  # e.g. `name`, or null columns arrow gives every turn

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class Example(BaseModel):
    """One prompt. `reference` is a target response (SFT, supervised KD, metrics); `meta` holds what the
    task metric needs beyond it (humaneval: task_id, prompt, test, entry_point; gsm8k: the final answer).

    A conversational prompt keeps its turns in `messages` (rendered by the chat template; multi-turn, with
    earlier assistant turns) and its last user turn in `prompt` (for display and text metrics)."""

    prompt: str = Field(min_length=1)
    messages: list[ChatTurn] | None = Field(None, min_length=1)
    reference: str | None = None
    task: Annotated[str, AfterValidator(registered(TASKS, "task"))] = "chat"
    meta: dict[str, Any] = Field(default_factory=dict)
    source: str | None = Field(None, exclude=True, description="Where it was read: 'file:line', hub row.")

    @model_validator(mode="after")
    def _ends_with_a_question(self) -> Example:
        if self.messages is not None and self.messages[-1].role == "assistant":
            raise ValueError("the prompt's turns end with an assistant turn: there is nothing to answer")
        return self


Metric = Callable[..., dict[str, float]]
"""`metric(example, response, **options) -> {name: value}`; {} when there is nothing to compare with."""

CorpusMetric = Callable[..., dict[str, float]]
"""`corpus_metric(examples, responses, **options) -> {name: value}`: one score for all of a task's responses
in a held-out set (`metrics.score_set`); {} when there is nothing to compare with."""


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face hub dataset: `datasets.load_dataset(path, config, split=splits[split])`.

    `config_pattern`: the config comes from the spec (`TASK:CONFIG`, e.g. flores:eng_Latn-deu_Latn) and must
    match this regex; `config_hint` shows its form in errors. `loading_script`: only datasets<4 loads it.
    """

    path: str
    splits: dict[str, str]
    config: str | None = None
    config_pattern: str | None = None
    config_hint: str = "CONFIG"
    loading_script: bool = False


@dataclass(frozen=True)
class Row:
    """A row in a task's own format, parsed: the fields `prompt_format` names, the reference, metric data."""

    fields: dict[str, str]
    reference: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """One task. `parse_row` raises KeyError(field) for a missing field and ValueError for a bad one.
    Without `parse_row`, `hub` and `load`, generic JSONL rows name it (`"task": NAME`)."""

    name: str
    metric: Metric
    prompt_format: str = "{prompt}"
    parse_row: Callable[[dict[str, Any]], Row] | None = None
    hub: HubSource | None = None
    load: Callable[[Task, Split], list[Example]] | None = None  # a source of its own (humaneval: its package)
    corpus_metric: CorpusMetric | None = None  # on all the task's responses of a set (metrics.score_set)

    def example(self, row: Row) -> Example:
        return Example(
            prompt=self.prompt_format.format(**row.fields),
            reference=row.reference,
            task=self.name,
            meta=row.meta,
        )

    def spec_forms(self) -> list[str]:
        """How `train_data` / `eval_data` name this task."""
        forms = []
        if self.load or (self.hub and not self.hub.config_pattern):
            forms.append(f"'{self.name}'")
        if self.hub and self.hub.config_pattern:
            forms.append(f"'{self.name}:{self.hub.config_hint}'")
        if self.parse_row:
            forms.append(f"'{self.name}:PATH'")
        return forms


def register(task: Task) -> Task:
    """Make a task known by name (data specs, `Example.task`, scoring)."""
    TASKS[task.name] = task
    return task
