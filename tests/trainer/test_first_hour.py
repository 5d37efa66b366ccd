"""What a newcomer meets on a second try: a run dir that already holds a run (continued when unfinished,
never written over when finished), bad data refused in one line before anything starts, every benchmark's
`--help`, an interrupted benchmark that leaves nothing behind, and a comparison that resumes per run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import torch

from tests.conftest import ROOT
from tests.jobs import command, wait_for, wait_gone
from trainer.cli import parse_args
from trainer.errors import RunError
from trainer.outputs.run_dir import choose_run_dir

BENCHMARKS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "__init__")


def _run(out, steps_done: int | None, with_metrics: bool = True) -> None:
    """A run dir as the trainer leaves it: metrics, and a complete checkpoint at `steps_done`."""
    out.mkdir(parents=True)
    if with_metrics:
        (out / "metrics.jsonl").write_text('{"step": 1, "train/loss": 1.0}\n')
    if steps_done is not None:
        ckpt = out / "checkpoints" / f"step_{steps_done:06d}"
        ckpt.mkdir(parents=True)
        torch.save({"step": steps_done}, ckpt / "trainer_state.pt")


def _choose(*argv: str):
    cfg, checkpoint = choose_run_dir(parse_args(["--steps=30", *argv]))
    return str(cfg.output_dir), checkpoint and checkpoint.name


def test_the_default_run_dir_continues_an_unfinished_run_and_never_overwrites_a_finished_one(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    default = tmp_path / "outputs" / "skd-default"
    assert _choose() == ("outputs/skd-default", None)  # a first run
    _run(default, 10)  # interrupted after its checkpoint at step 10: the same command continues it
    assert _choose() == ("outputs/skd-default", "step_000010")
    (default / "checkpoints" / "step_000030").mkdir()
    torch.save({"step": 30}, default / "checkpoints" / "step_000030" / "trainer_state.pt")
    assert _choose() == ("outputs/skd-default-2", None)  # finished: a second run goes beside it
    _run(tmp_path / "outputs" / "skd-default-2", None)  # stopped before its first checkpoint: kept
    assert _choose() == ("outputs/skd-default-3", None)
    _run(tmp_path / "outputs" / "skd-default-3", 20)
    assert _choose() == ("outputs/skd-default-3", "step_000020")  # the unfinished one among them
    assert _choose("--resume=false") == ("outputs/skd-default-4", None)
    assert _choose("--steps=60") == ("outputs/skd-default", "step_000030")  # a larger budget continues


def test_a_run_dir_given_explicitly_is_continued_or_refused_in_one_line(tmp_path):
    run = tmp_path / "run"
    assert _choose(f"--output_dir={run}") == (str(run), None)
    with pytest.raises(RunError, match="--resume: no checkpoint in"):
        _choose(f"--output_dir={run}", "--resume")
    _run(run, 10)
    assert _choose(f"--output_dir={run}") == (str(run), "step_000010")
    assert _choose(f"--output_dir={run}", "--resume") == (str(run), "step_000010")
    with pytest.raises(RunError, match=r"holds an unfinished run \(step_000010\).*--resume continues it"):
        _choose(f"--output_dir={run}", "--resume=false")
    with pytest.raises(RunError, match=r"holds a finished run \(step_000010\).*larger --steps continues"):
        _choose(f"--output_dir={run}", "--steps=10")
    _run(tmp_path / "early", None)
    with pytest.raises(RunError, match="holds a run stopped before its first checkpoint"):
        _choose(f"--output_dir={tmp_path / 'early'}")


def test_bad_data_stops_the_run_in_one_line_before_anything_starts(tiny_models, tmp_path):
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "hello"}\n{"prompt": "broken\n')
    out = tmp_path / "run"
    cmd = [sys.executable, "trainer/main.py", f"--train_data={data}", f"--output_dir={out}",
           f"--teacher_model={tiny_models['teacher']}",
           f"--student_model={tiny_models['student']}"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith(f"bad data: {data}:2: invalid JSON (")
    assert not out.exists()  # no teacher, no Ray, no output dir: it stopped before any of them


def test_every_benchmark_answers_help_and_starts_nothing(tmp_path):
    """`--help` of every benchmark prints its usage and starts nothing: after each, the process has no
    child (no engine, teacher, Ray or job), no listening socket, no Ray connection, and wrote nothing
    (run from an empty directory, which stays empty)."""
    script = (
        "import runpy, sys, psutil\n"
        "me = psutil.Process()\n"
        f"for name in {BENCHMARKS!r}:\n"
        "    sys.argv = [name, '--help']\n"
        "    try:\n"
        "        runpy.run_module('benchmarks.' + name, run_name='__main__')\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), (name, e.code)\n"
        "    else:\n"
        "        raise AssertionError(name + ' ran instead of printing its help')\n"
        "    children = [' '.join(c.cmdline()[:3]) for c in me.children(recursive=True)]\n"
        "    assert not children, (name, 'started', children)\n"
        "    listening = [c.laddr for c in me.net_connections('inet') if c.status == psutil.CONN_LISTEN]\n"
        "    assert not listening, (name, 'listens on', listening)\n"
        "    ray = sys.modules.get('ray')\n"
        "    assert ray is None or not ray.is_initialized(), (name, 'connected to Ray')\n"
        "    print('### done', name, flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("usage:") == len(BENCHMARKS)
    assert [
        line.split()[-1] for line in done.stdout.splitlines() if line.startswith("### done")
    ] == BENCHMARKS
    assert not list(tmp_path.iterdir()), list(tmp_path.iterdir())


@pytest.mark.e2e
def test_an_interrupted_benchmark_leaves_nothing_behind(tmp_path):
    """`kill` (SIGTERM) of a benchmark mid-run: its trainer job, the job's Ray and teacher all go."""
    import psutil

    bench = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.faults", "--runs", "B"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "bench.log").open("w"),
    )  # fmt: skip
    me = psutil.Process(bench.pid)

    def job_started() -> bool:
        assert bench.poll() is None, (tmp_path / "bench.log").read_text()[-3000:]
        return any("rollout_server" in command(p) for p in me.children(recursive=True))

    wait_for(job_started, timeout_s=300)
    started = me.children(recursive=True)
    assert any("trainer/main.py" in command(p) for p in started)
    bench.send_signal(signal.SIGTERM)
    bench.wait(30)
    wait_gone(started, timeout_s=60)


@pytest.mark.e2e
def test_a_comparison_continues_each_run_where_it_stopped(tiny_models, teacher_server, tmp_path):
    """An interrupted comparison run continues from its last checkpoint on the next call; a finished run is
    read, not re-run."""
    import psutil

    from benchmarks.compare import parse_args as compare_args
    from benchmarks.compare import run_one

    out = tmp_path / "compare"
    argv = ["--out", str(out), "--steps=3", "--eval_every=1", "--num_eval_prompts=4", "--batch_size=4",
            "--max_new_tokens=12", f"--teacher_model={tiny_models['teacher']}", "--",
            "--student_dtype=float32", "--student_kv_cache_gib=0.25", "--max_prompt_len=96",
            "--eval_at_start=false"]  # fmt: skip
    args = compare_args(argv)
    run_dir = out / "skd" / "seed0"
    student, urls = tiny_models["student"], [teacher_server.url]

    def kill_after_first_checkpoint() -> None:
        wait_for(lambda: (run_dir / "checkpoints" / "step_000001").is_dir(), timeout_s=300)
        (job,) = [p for p in psutil.Process().children() if "trainer/main.py" in command(p)]
        job.kill()

    killer = threading.Thread(target=kill_after_first_checkpoint)
    killer.start()
    with pytest.raises(SystemExit, match="skd seed 0 failed"):
        run_one(args, "skd", 0, urls, student)
    killer.join()
    run = run_one(args, "skd", 0, urls, student)  # continues from step 1
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3]  # each step trained once
    assert run["optimizer_steps"] == 3 and "continuing the run" in (run_dir / "console.log").read_text()
    before = os.stat(run_dir / "metrics.jsonl").st_mtime_ns
    assert run_one(args, "skd", 0, urls, student) == run  # finished: read, not re-run
    assert os.stat(run_dir / "metrics.jsonl").st_mtime_ns == before


def test_a_comparison_run_made_with_other_settings_starts_over(tmp_path):
    from benchmarks.compare import prepare_run_dir

    run_dir = tmp_path / "skd" / "seed0"
    assert prepare_run_dir(run_dir, ["--steps=3"], fresh=False) is None  # a new run
    (run_dir / "checkpoints" / "step_000001").mkdir(parents=True)
    torch.save({"step": 1}, run_dir / "checkpoints" / "step_000001" / "trainer_state.pt")
    (run_dir / "metrics.jsonl").write_text("{}\n")
    assert prepare_run_dir(run_dir, ["--steps=3"], fresh=False).name == "step_000001"  # continued
    assert prepare_run_dir(run_dir, ["--steps=3"], fresh=True) is None  # --fresh
    assert not (run_dir / "metrics.jsonl").exists()
    (run_dir / "checkpoints" / "step_000001").mkdir(parents=True)
    torch.save({"step": 1}, run_dir / "checkpoints" / "step_000001" / "trainer_state.pt")
    assert prepare_run_dir(run_dir, ["--steps=9"], fresh=False) is None  # another budget: over again
    assert not (run_dir / "checkpoints").exists()
    (run_dir / "metrics.jsonl").write_text("{}\n")  # stopped before its first checkpoint: nothing to keep
    assert prepare_run_dir(run_dir, ["--steps=9"], fresh=False) is None
    assert not (run_dir / "metrics.jsonl").exists()
