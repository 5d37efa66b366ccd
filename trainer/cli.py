"""The command line of the training job: `python trainer/main.py [--config run.yaml] [--key=value ...]`
(or the `skd-train` console script). The only place that exits the process: arguments are parsed into a
RunConfig (a bad one names the field), the job runs (trainer.job), and a RunError becomes its one line.

Argument forms argparse users expect: `--max-new-tokens` = `--max_new_tokens`; a bare boolean flag means
true (`--resume`); a flag given twice keeps its last value. SIGTERM (`ray job stop`, `docker stop`, `kill`)
unwinds the job like Ctrl-C: the actors and a started teacher are stopped.
"""

from __future__ import annotations

import signal
import sys
import threading

from pydantic import ValidationError
from pydantic_settings import CliApp, SettingsError

from trainer.config import RunConfig
from trainer.errors import RunError


def _normalise(argv: list[str]) -> list[str]:
    """Conventions argparse-style users expect: `--max-new-tokens` = `--max_new_tokens`; a bare boolean
    `--resume` = `--resume=true`; a flag given twice keeps its last value (an override, as in
    `python trainer/main.py --config run.yaml ... --steps=5`, never a list that grows)."""
    bools = {name for name, f in RunConfig.model_fields.items() if f.annotation in (bool, "bool")}
    bools.add("resume")  # bool | "auto"
    groups: dict[str, list[str]] = {}  # flag -> its tokens, in the order of each flag's last occurrence
    for i, token in enumerate(argv):
        if not token.startswith("--") or token == "--":
            if not groups:
                return argv  # not flags: let the parser report it
            groups[next(reversed(groups))].append(token)
            continue
        key, eq, value = token[2:].partition("=")
        key = key.replace("-", "_")
        bare = not eq and (i + 1 == len(argv) or argv[i + 1].startswith("--"))
        groups.pop(key, None)
        groups[key] = [f"--{key}=true" if bare and key in bools else f"--{key}{eq}{value}"]
    return [token for tokens in groups.values() for token in tokens]


def parse_args(argv: list[str] | None = None) -> RunConfig:
    """The run's configuration from `argv` (default: sys.argv); errors name the field and exit."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if {"-h", "--help"} & set(argv):
        CliApp.run(RunConfig, cli_args=["--help"])  # prints every field's help and exits
    try:
        return CliApp.run(RunConfig, cli_args=_normalise(argv))
    except SettingsError as e:
        raise SystemExit(f"invalid configuration: {e}") from None
    except ValidationError as e:
        raise SystemExit(f"invalid configuration:\n{e}") from None


def _exit_on_sigterm() -> None:
    def handler(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None, *, guard: bool = False) -> None:
    """Parse `argv` and run the job; whatever stops it exits with its one line. `guard`: the job's own
    processes die with it, however it dies (a reaper process; not for --help, bad input or a dry run,
    which start nothing)."""
    from trainer.job import run_job
    from trainer.logs import configure

    cfg = parse_args(argv)
    configure(cfg.log_level)
    _exit_on_sigterm()
    if guard and not cfg.dry_run:
        from shared import reaper

        reaper.start()
    try:
        run_job(cfg)
    except RunError as e:
        raise SystemExit(str(e)) from None


def cli() -> None:
    """`skd-train`: the console script (same as `python trainer/main.py`)."""
    main(guard=True)
