"""Errors shown in one line: a library's exception message can run to pages (a traceback-like dump from
huggingface_hub or transformers), and the user needs its first line."""


def first_line(e: BaseException) -> str:
    """The first line of `e`'s message, or its type's name when it has none."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
