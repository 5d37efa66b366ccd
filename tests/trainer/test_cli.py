"""The command line and the configuration: argument forms, sources and their priority, --help, names
checked against the registries before any work."""

from __future__ import annotations

import pytest

from trainer.cli import parse_args
from trainer.config import RunConfig
from trainer.errors import RunError
from trainer.job import check_before_work
from trainer.methods import METHODS, Method


def test_config_accepts_exactly_the_registered_methods(monkeypatch):
    class Echo(Method):
        name = "echo"

    cfg = parse_args(["--method=echo"])  # parsed as data; checked against the registry before any work
    with pytest.raises(RunError, match="unknown method 'echo'; registered methods: skd, on_policy"):
        check_before_work(cfg, None)
    monkeypatch.setitem(METHODS, "echo", Echo)
    check_before_work(cfg, None)
    with pytest.raises(RunError, match="unknown task 'nope'; registered tasks: chat"):
        check_before_work(parse_args(["--task=nope"]), None)


def test_cli_forms_env_and_yaml_priority(tmp_path, monkeypatch):
    monkeypatch.setenv("SKD_TEACHER_API_KEY", "from-env")
    monkeypatch.setenv("SKD_STEPS", "11")
    cfg = parse_args(["--max-new-tokens", "12", "--eval_at_start=false", "--resume"])
    assert (cfg.max_new_tokens, cfg.eval_at_start, cfg.resume) == (12, False, True)
    assert (cfg.teacher_key(), cfg.steps) == ("from-env", 11)  # environment under the command line
    path = tmp_path / "run.yaml"
    path.write_text("steps: 7\nteacher_api_key: from-yaml\n")
    cfg = parse_args(["--config", str(path)])
    assert (cfg.steps, cfg.teacher_key()) == (7, "from-yaml")  # the file over the environment
    assert parse_args(["--config", str(path), "--steps=3"]).steps == 3  # the command line over the file
    path.write_text("- steps\n")
    with pytest.raises(SystemExit, match="expected a mapping"):
        parse_args(["--config", str(path)])
    path.write_text("stepz: 7\n")
    with pytest.raises(SystemExit, match="stepz"):
        parse_args(["--config", str(path)])


def test_help_lists_every_field(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    flat = " ".join(text.split())
    for name, field in RunConfig.model_fields.items():
        assert f"--{name}" in text, name
        assert field.description, f"{name} has no description for --help"
        opening = " ".join(field.description.split()[:3])
        assert opening in flat, f"--help does not show {name}'s description"


def test_a_repeated_flag_overrides_instead_of_appending():
    cfg = parse_args(
        ["--teacher_urls=[http://a:1]", "--steps", "4", "--teacher-urls", "[http://b:2]", "--steps=5"]
    )
    assert (cfg.teacher_urls, cfg.steps) == (["http://b:2"], 5)
    with pytest.raises(SystemExit, match="unrecognized arguments: stray"):
        parse_args(["stray", "--steps=3"])
