"""Logging for the job: our own loggers at `log_level`, the libraries' chatter (vLLM, Ray, httpx,
transformers) at WARNING unless `log_level` is debug. Library modules only call `logging.getLogger(__name__)`.

The driver calls `configure`; a rollout actor gets `actor_env` in its runtime environment (vLLM reads its
level when imported) and calls `configure` too: its output reaches the driver's console.
"""

from __future__ import annotations

import logging

from trainer.config import LogLevel

NOISY = ("vllm", "ray", "httpx", "httpcore", "transformers", "filelock", "urllib3")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _library_level(level: LogLevel) -> int:
    return logging.DEBUG if level == "debug" else max(logging.WARNING, logging.getLevelName(level.upper()))


def configure(level: LogLevel) -> None:
    """The driver's logging (idempotent: a caller that configured logging itself keeps its handlers)."""
    logging.basicConfig(format=FORMAT)
    logging.getLogger("trainer").setLevel(level.upper())
    logging.getLogger("shared").setLevel(level.upper())
    for name in NOISY:
        logging.getLogger(name).setLevel(_library_level(level))
    # peft imports bitsandbytes, which warns on every import that an optional 4-bit CPU kernel (unused
    # here) is missing
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(max(logging.ERROR, _library_level(level)))


def actor_env(level: LogLevel) -> dict[str, str]:
    """Environment variables for actor processes, read by vLLM at import."""
    return {"VLLM_LOGGING_LEVEL": logging.getLevelName(_library_level(level))}
