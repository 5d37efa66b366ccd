"""Generic rows -> examples, in the formats TRL users bring (column names configurable):

- prompt-only:          {"prompt": "..."}
- prompt-completion:    {"prompt": "...", "completion": "..."}     (or "reference", our own name)
- conversational:       {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", ...}, ...]}
                        (multi-turn; the last assistant turn is the reference, the turns before it the prompt)
- conversational prompt-completion: {"prompt": [turns...], "completion": [{"role": "assistant", ...}]}

Optional `task` (whose metric scores the row) and `meta` columns pass through. A bad row is a ValueError
naming the field; the loader adds where the row is (file and line or row number).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from trainer.data.tasks.registry import ChatTurn, Example

PROMPT_COLUMNS = ("prompt", "messages")
REFERENCE_COLUMNS = ("completion", "reference")


@dataclass(frozen=True)
class Columns:
    """Which columns hold the prompt and the reference (None: the first of the usual names present), and
    the task of rows without a `task` column."""

    prompt: str | None = None
    reference: str | None = None
    task: str = "chat"


def _pick(row: dict[str, Any], chosen: str | None, usual: tuple[str, ...]) -> str | None:
    if chosen is not None:
        return chosen
    return next((c for c in usual if row.get(c) is not None), None)


def _turns(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"field '{field}': expected a non-empty list of chat turns")
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise ValueError(f"field '{field}.{i}': expected a chat turn {{'role': ..., 'content': ...}}")
        try:
            ChatTurn.model_validate(turn)
        except ValidationError as e:
            err = e.errors()[0]
            raise ValueError(f"field '{field}.{i}.{'.'.join(map(str, err['loc']))}': {err['msg']}") from None
    return value


def _reference(value: Any, field: str) -> str:
    """A completion: a string, or chat turns ending in an assistant turn (its content)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        turns = _turns(value, field)
        if turns[-1].get("role") != "assistant":
            raise ValueError(f"field '{field}.{len(turns) - 1}.role': the completion's last turn must be "
                             "the assistant's")  # fmt: skip
        content = turns[-1].get("content")
        if not isinstance(content, str):
            raise ValueError(f"field '{field}.{len(turns) - 1}.content': expected a string")
        return content
    raise ValueError(f"field '{field}': expected a string or chat turns, got {type(value).__name__}")


def row_to_example(row: dict[str, Any], columns: Columns = Columns()) -> Example:
    """One generic row as an Example; ValueError naming the field when it is not one of the forms above."""
    prompt_col = _pick(row, columns.prompt, PROMPT_COLUMNS)
    if prompt_col is None or row.get(prompt_col) is None:
        wanted = f"'{columns.prompt}'" if columns.prompt else " or ".join(f"'{c}'" for c in PROMPT_COLUMNS)
        raise ValueError(f"field {wanted}: missing (columns present: {', '.join(row) or 'none'})")
    ref_col = _pick(row, columns.reference, REFERENCE_COLUMNS)
    if columns.reference is not None and row.get(ref_col) is None:
        raise ValueError(f"field '{ref_col}': missing (reference_column)")
    value = row[prompt_col]
    fields: dict[str, Any] = {"task": row.get("task") or columns.task}
    if "meta" in row:
        fields["meta"] = row["meta"]
    if isinstance(value, list):  # conversational
        turns = list(_turns(value, prompt_col))
        if ref_col is None and turns[-1].get("role") == "assistant":
            fields["reference"] = _reference([turns.pop()], prompt_col)
        if not turns:
            raise ValueError(f"field '{prompt_col}': only an assistant turn, no prompt before it")
        users = [t for t in turns if t.get("role") == "user"]
        if not users:
            raise ValueError(f"field '{prompt_col}': no user turn")
        fields["prompt"] = users[-1].get("content")
        fields["messages"] = turns
    elif isinstance(value, str):
        fields["prompt"] = value
    else:
        raise ValueError(f"field '{prompt_col}': expected a string or chat turns, got {type(value).__name__}")
    if ref_col is not None:
        fields["reference"] = _reference(row[ref_col], ref_col)
    try:
        return Example.model_validate(fields)
    except ValidationError as e:
        chat = isinstance(value, list)
        raise ValueError("; ".join(_problem(err, prompt_col, chat) for err in e.errors())) from None


def _problem(err: dict[str, Any], prompt_col: str, chat: bool) -> str:
    """The field as the row names it (`messages.2.role`, not the Example's own field names)."""
    loc = [str(part) for part in err["loc"]]
    if loc and loc[0] in ("messages", "prompt") and (chat or loc[0] == "prompt"):
        loc[0] = prompt_col
    if chat and loc == [prompt_col] and err["type"] in ("string_type", "string_too_short"):
        return f"field '{prompt_col}': no user turn with text to answer ({err['msg']})"
    where = ".".join(loc)
    return f"field '{where}': {err['msg']}" if where else err["msg"]
