"""What a new user touches first: the console scripts, `--dry_run` on a JSONL of chat messages with models
named by hub id (an offline Hugging Face cache), clear errors for a missing model and an unreachable hub
under push_to_hub, checkpoint rotation. The whole first run (chat data, hub ids, TensorBoard and MLflow,
ROUGE-L in the report) is tests/trainer/test_training.py::test_a_new_users_first_run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.audit import audited, audited_env
from tests.hub_cache import make_hub_cache

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def hub_home(tiny_models, tmp_path_factory) -> Path:
    """HF_HOME with the tiny teacher and student cached as hub models `skd-test/teacher`, `.../student`."""
    home = tmp_path_factory.mktemp("hf_home")
    for role in ("teacher", "student"):
        make_hub_cache(tiny_models[role], home / "hub", f"skd-test/{role}")
    return home


def _offline(home: Path) -> dict[str, str]:
    return {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(home / "datasets")}


def chat_jsonl(path: Path, n: int = 24) -> Path:
    """A JSONL of multi-turn conversations (tests/trainer/data/test_datasets.py's rows)."""
    from tests.trainer.data.test_datasets import chat_rows

    path.write_text("".join(json.dumps(r) + "\n" for r in chat_rows(n)))
    return path


def test_dry_run_prints_the_plan_and_starts_nothing(hub_home, tmp_path):
    data = chat_jsonl(tmp_path / "chat.jsonl", n=30)
    out = tmp_path / "run"
    cmd = [str(BIN / "skd-train"), "--dry_run", "--teacher_model=skd-test/teacher",
           "--student_model=skd-test/student", f"--train_data={data}", "--num_eval_prompts=5",
           "--report_to=[tensorboard]", f"--output_dir={out}", "--teacher_api_key=secret-value"]  # fmt: skip
    log = tmp_path / "audit.log"
    env = audited_env(log, {**os.environ, **_offline(hub_home)})
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    text = res.stdout
    for section in ("## Config", "## Models", "## Data", "## Plan"):
        assert section in text
    assert "skd-test/teacher -> " in text and "models--skd-test--teacher" in text  # resolved via the cache
    assert "train: 25 rows" in text and "held out: 5 rows" in text
    assert "30 optimizer steps" in text and "trackers: tensorboard" in text
    assert "secret-value" not in text
    assert not out.exists()  # nothing written
    assert audited(log) == []  # no process started (no teacher, Ray, engine), no network connection


@pytest.fixture
def offline_hub(hub_home, monkeypatch) -> None:
    """The in-process equivalent of _offline(): huggingface_hub reads its environment at import."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_home / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_missing_hub_model_is_a_clear_error(offline_hub, tmp_path):
    from trainer.cli import main

    with pytest.raises(SystemExit, match=r"teacher_model: model 'skd-test/nope'.*offline") as e:
        main(["--dry_run", "--teacher_model=skd-test/nope", f"--output_dir={tmp_path}/x"])
    assert "\n" not in str(e.value)


def test_skd_teacher_console_script(hub_home):
    res = subprocess.run([str(BIN / "skd-teacher"), "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--model" in res.stdout
    res = subprocess.run(
        [str(BIN / "skd-teacher"), "--model", "skd-test/nope"],
        capture_output=True, text=True, env={**os.environ, **_offline(hub_home)}, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2 and "skd-test/nope" in res.stderr
    assert res.stderr.strip().count("\n") == 0  # one line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--push_to_hub", "--hub_model_id=someone/student"], "push_to_hub"),
        (["--comet_model=Unbabel/wmt22-comet-da"], "pip install 'skd[comet]'"),
    ],
)
def test_options_that_cannot_work_fail_before_any_work(tiny_models, offline_hub, tmp_path, args, message):
    """An unreachable hub under push_to_hub, COMET without its package: a clear line at once, not an
    error after hours of training."""
    from trainer.cli import main

    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=re.escape(message)):
        main([f"--teacher_model={tiny_models['teacher']}", f"--student_model={tiny_models['student']}",
              f"--output_dir={out}", *args])  # fmt: skip
    assert not out.exists()  # stopped before the teacher started or anything was written


def test_rotate_checkpoints_keeps_the_newest(tmp_path):
    from trainer.outputs.checkpoints import STATE_FILE, rotate_checkpoints

    for step in (1, 2, 3):
        (tmp_path / f"step_{step:06d}").mkdir()
        (tmp_path / f"step_{step:06d}" / STATE_FILE).write_bytes(b"x")
    (tmp_path / ".step_000004.partial").mkdir()  # being written: not counted, not touched
    assert [p.name for p in rotate_checkpoints(tmp_path, 2)] == ["step_000001"]
    assert rotate_checkpoints(tmp_path, None) == []
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".step_000004.partial", "step_000002", "step_000003"]
