"""The README's commands, checked as a newcomer would type them (without running the long ones): every
`make` target exists, every `.venv/bin/...` program is one the setup installs, every `python -m` module and
script path exists, every flag given to the trainer or the teacher server is one of their settings, and a
list-valued flag is quoted (zsh reads an unquoted `[...]` as a glob and stops). The curl examples run for
real in tests/rollout_server/test_readme_examples.py."""

from __future__ import annotations

import importlib.util
import re
import subprocess

from rollout_server.config import ServerConfig
from tests.conftest import ROOT
from trainer.config import RunConfig

VENV_PROGRAMS = {"python", "pip", "ray", "tensorboard", "mlflow", "skd-train", "skd-teacher"}


def _commands() -> list[str]:
    """Every command of the README's bash blocks (continuations joined, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s+)#.*$", "", line).strip()
            if line and not line.startswith(('"', "'", "{", "}")):  # (the inside of a quoted JSON body)
                commands.append(line)
    return commands


def test_the_readme_blocks_are_bash():
    text = (ROOT / "README.md").read_text()
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        done = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert done.returncode == 0, (block, done.stderr)


def test_every_program_module_script_and_target_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    seen = set()
    for command in _commands():
        words = command.split()
        if words[0] == "make":
            assert words[1] in targets, f"make {words[1]}: no such target ({command})"
        if words[0].startswith(".venv/bin/"):
            assert words[0].removeprefix(".venv/bin/") in VENV_PROGRAMS, command
        if words[0].startswith("scripts/"):
            assert (ROOT / words[0]).is_file(), command
        for module in re.findall(r"python -m ([\w.]+)", command):
            assert importlib.util.find_spec(module) is not None, f"no module {module} ({command})"
            seen.add(module)
        for path in re.findall(r"python ([\w/]+\.py)", command):
            assert (ROOT / path).is_file(), command
    assert {"rollout_server", "benchmarks.paper"} <= seen  # (the parse found the commands)


def _flags(command: str) -> list[str]:
    return [m.replace("-", "_") for m in re.findall(r"(?:^|\s)'?--([\w-]+)", command)]


def test_every_flag_is_a_setting():
    trainer_fields, server_fields = set(RunConfig.model_fields), set(ServerConfig.model_fields)
    checked = 0
    for command in _commands():
        if re.search(r"trainer/main\.py|skd-train", command):
            after = re.split(r"trainer/main\.py|skd-train", command, maxsplit=1)[1]
            for flag in _flags(after):
                assert flag in trainer_fields | {"config", "help"}, f"--{flag}: not a setting ({command})"
                checked += 1
        elif re.search(r"-m rollout_server|skd-teacher", command):
            for flag in _flags(command):
                assert flag in server_fields | {"help"}, f"--{flag}: not a server option ({command})"
                checked += 1
    assert checked > 20


def test_list_flags_are_quoted():
    """`--teacher_urls=[...]` unquoted is a zsh glob error; quoted, every shell passes it through."""
    unquoted = [c for c in _commands() if re.search(r"(?<!['\"])--[\w-]+=\[", c)]
    assert not unquoted, unquoted
