"""The trainer's single-purpose parts on their own: method registry, configuration, phase timer, log
filter, and the shape rules of the code base (module boundaries, function length)."""

from __future__ import annotations

import ast
import logging

import numpy as np
import pytest

from tests.conftest import ROOT
from trainer.config import RunConfig, parse_args
from trainer.methods import METHODS, ON_POLICY_K, Method, Sequence, Speculative, SupervisedKD
from trainer.timing import PhaseTimer
from trainer.types import Prompt

# --- methods ------------------------------------------------------------------------------------------------


def test_registry_declares_what_each_method_needs_and_yields():
    assert list(METHODS) == ["skd", "on_policy", "teacher_sampling", "supervised_kd", "sft", "mixed"]
    assert all(cls.name == name for name, cls in METHODS.items())
    assert {n for n, m in METHODS.items() if m.needs_reference} == {"supervised_kd", "sft", "mixed"}
    assert {n for n, m in METHODS.items() if m.sample_kind == "sft"} == {"sft"}
    cfg = RunConfig(top_k=7)
    assert METHODS["skd"](cfg).top_k == 7 and METHODS["on_policy"](cfg).top_k == ON_POLICY_K
    seq = Sequence(Prompt(index=0, prompt_ids=[1]), METHODS["skd"](cfg), 0, response=[7] * 24)  # 40 left
    assert METHODS["skd"](cfg).draft_len(seq) == cfg.gamma and METHODS["on_policy"](cfg).draft_len(seq) == 40


def test_adaptive_gamma_follows_each_sequences_acceptance():
    fixed = METHODS["skd"](RunConfig(gamma=5))
    assert [fixed.next_gamma(5, 5, a) for a in (0, 5)] == [5, 5]
    skd = METHODS["skd"](RunConfig(gamma=5, adaptive_gamma=True, gamma_max=8))
    assert skd.next_gamma(5, 5, 5) == 7 and skd.next_gamma(7, 7, 7) == 8  # whole draft kept: +2, capped
    assert skd.next_gamma(5, 5, 4) == 4 and skd.next_gamma(1, 1, 0) == 1  # a rejection: -1, at least 1
    seq = Sequence(Prompt(index=0, prompt_ids=[1]), skd, 0, gamma=7, response=[7] * 60)  # 4 left
    assert skd.draft_len(seq) == 4
    with pytest.raises(ValueError, match="gamma_max"):
        RunConfig(gamma=20, adaptive_gamma=True)
    with pytest.raises(ValueError, match="overlap_groups"):
        RunConfig(overlap_groups=5, max_inflight_per_actor=4)
    assert RunConfig(gamma=5, adaptive_gamma=True, gamma_max=16).longest_draft == 16


def test_mixed_hands_sequences_to_supervised_kd_or_skd():
    rng = np.random.default_rng(0)
    for lam, expected in ((0.0, Speculative), (1.0, SupervisedKD)):
        mixed = METHODS["mixed"](RunConfig(method="mixed", mixed_lambda=lam))
        assert all(type(mixed.route(rng)) is expected for _ in range(20))
    mixed = METHODS["mixed"](RunConfig(method="mixed", mixed_lambda=0.3))
    routed = [mixed.route(rng).name for _ in range(2000)]
    assert routed.count("supervised_kd") / len(routed) == pytest.approx(0.3, abs=0.04)
    skd = METHODS["skd"](RunConfig())
    assert skd.route(rng) is skd


def test_config_accepts_exactly_the_registered_methods(monkeypatch):
    class Echo(Method):
        name = "echo"

    with pytest.raises(SystemExit, match="unknown method 'echo'; registered methods: skd, on_policy"):
        parse_args(["--method=echo"])
    monkeypatch.setitem(METHODS, "echo", Echo)
    assert parse_args(["--method=echo"]).method == "echo"


# --- configuration ------------------------------------------------------------------------------------------


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
    for name in RunConfig.model_fields:
        assert f"--{name}" in text, name


# --- timing -------------------------------------------------------------------------------------------------


def test_phase_timer_accounts_for_every_second(monkeypatch):
    clock = iter([0.0, 2.0, 5.0, 5.5, 6.0, 10.0])
    monkeypatch.setattr("trainer.timing.time.perf_counter", lambda: next(clock))
    timer = PhaseTimer()  # t = 0
    assert timer.lap("wait") == 2.0
    timer.lap("train")  # 3 s
    timer.lap("push")  # 0.5 s
    first = timer.end_step()
    timer.lap("log")  # 0.5 s
    timer.lap("wait")  # 4 s
    assert first == {"wait": 2.0, "train": 3.0, "push": 0.5}
    assert timer.end_step() == {"log": 0.5, "wait": 4.0}
    assert sum(timer.total.values()) == 10.0
    assert timer.busy_fraction == pytest.approx(4.0 / 10.0)


# --- logging ------------------------------------------------------------------------------------------------


def test_only_the_expected_vllm_load_warnings_are_dropped():
    from trainer.student_engine import _ExpectedVllmWarnings

    def kept(message: str, *args) -> bool:
        record = logging.LogRecord("vllm.x", logging.WARNING, __file__, 1, message, args, None)
        return _ExpectedVllmWarnings().filter(record)

    assert not kept("%s: Failed to load weights", "RotaryEmbedding")
    assert kept("%s: Failed to load weights", "QKVParallelLinear")  # a real failure still shows
    narrowing = "Attempted to load weight %s with dtype %s into parameter with dtype %s"
    assert not kept(narrowing, "norm.weight", "torch.float32", "torch.bfloat16")
    assert kept(narrowing, "norm.weight", "torch.bfloat16", "torch.float16")
    assert not kept(
        "CPU backend doesn't allow to use `torch.set_num_threads` after the thread binding, skip it."
    )
    reason = "C++ compile error\n\nCommand:\ng++ ...\n(90 more lines)"
    args = ("[backbone] ", "/cache/model", reason)
    message = "%sCompiling model again due to a load failure from %s, reason: %s"
    record = logging.LogRecord(
        "vllm.compilation.decorators", logging.WARNING, __file__, 1, message, args, None
    )
    assert _ExpectedVllmWarnings().filter(record)  # kept, shortened to its first line
    assert record.getMessage() == (
        "[backbone] Compiling model again due to a load failure from /cache/model, reason: C++ compile error"
        " [compiler output omitted]"
    )


# --- the code's shape ---------------------------------------------------------------------------------------

PACKAGES = ("rollout_server", "shared", "trainer")


def _modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        yield path, ast.parse(path.read_text())


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_server_and_trainer_talk_only_through_shared():
    forbidden = {
        "rollout_server": {"trainer"},
        "trainer": {"rollout_server"},
        "shared": {"trainer", "rollout_server"},
    }
    for package, banned in forbidden.items():
        for path, tree in _modules(package):
            assert not (_imports(tree) & banned), (
                f"{path.relative_to(ROOT)} imports {_imports(tree) & banned}"
            )


def test_no_function_is_longer_than_a_screen():
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for package in PACKAGES
        for path, tree in _modules(package)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60
    ]
    assert not long, long


def test_a_repeated_flag_overrides_instead_of_appending():
    cfg = parse_args(
        ["--teacher_urls=[http://a:1]", "--steps", "4", "--teacher-urls", "[http://b:2]", "--steps=5"]
    )
    assert (cfg.teacher_urls, cfg.steps) == (["http://b:2"], 5)
    with pytest.raises(SystemExit, match="unrecognized arguments: stray"):
        parse_args(["stray", "--steps=3"])
