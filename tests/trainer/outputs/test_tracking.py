"""Experiment trackers (trainer/outputs/tracking.py) with the real backends, read back with each backend's own
reader: every finite value of metrics.jsonl, at its step, and nothing else. No model, no server.

W&B and trackio run in a child process: wandb starts its service and wraps stdout, and trackio fixes its
storage directory when first imported; the pytest process stays as it was.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT
from trainer.outputs.metrics import MetricsLog
from trainer.outputs.tracking import BACKENDS, Trackers, check_available, mlflow_key

CONFIG = {
    "student": "tiny-student",
    "lr": 1e-4,
    "lora_rank": None,
    "report_to": ["tensorboard", "mlflow"],
    "loss": {"name": "skd", "top_k": 8},
    "output_dir": "outputs/run",
}


def records(steps: range, shift: float = 0.0) -> list[tuple[int, dict]]:
    """Metrics records shaped like the trainer's: floats, ints, None, NaN, a list, eval every other step."""
    out = []
    for step in steps:
        values: dict = {
            "train/loss": 2.0 / step + 0.1 + shift,  # not exact in float32
            "train/grad_norm": float("nan") if step == 2 else 0.3 * step,
            "perf/time_train_s": 1.25 + step / 7,
            "data/tokens": 96 * step,
            "data/trained_positions": [3, 4, 5],
            "eval/acceptance": None,
        }
        if step % 2 == 0:
            values |= {"eval/acceptance": 0.5 + step / 100, "eval/pass@1": 1 / 3}
        out.append((step, values))
    return out


def log_both(out: Path, trackers: Trackers, recs: list[tuple[int, dict]]) -> None:
    log = MetricsLog(out / "metrics.jsonl")
    for step, values in recs:
        log.write(step, values)
        trackers.log(step, values)


def expected(out: Path) -> dict[str, dict[int, float]]:
    """{key: {step: value}} of the finite numbers in metrics.jsonl."""
    series: dict[str, dict[int, float]] = {}
    for record in MetricsLog(out / "metrics.jsonl").read():
        for key, value in record.items():
            if key not in ("step", "time") and isinstance(value, (int, float)) and math.isfinite(value):
                series.setdefault(key, {})[record["step"]] = float(value)
    return series


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No tracker reads the user's settings or writes to the home directory."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")  # recorded, so that the value Trackers sets is undone
    for name in list(os.environ):
        if name.startswith(("WANDB_", "MLFLOW_", "TRACKIO_", "HF_")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    return home


def tensorboard_scalars(logdir: Path) -> tuple[dict[str, dict[int, float]], list[str]]:
    """Scalars as TensorBoard's UI reads them (the plugin accumulator, which applies the restart purge),
    and the config texts."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    acc.Reload()
    series: dict[str, dict[int, float]] = {}
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars":
            events = acc.Tensors(tag)
            assert len({e.step for e in events}) == len(events), f"{tag}: a step twice"
            series[tag] = {e.step: tensor_util.make_ndarray(e.tensor_proto).item() for e in events}
    texts = [
        tensor_util.make_ndarray(e.tensor_proto).item().decode() for e in acc.Tensors("config/text_summary")
    ]
    return series, texts


def mlflow_series(client, run_id: str, keys) -> dict[str, dict[int, list[float]]]:
    return {
        key: _by_step(client.get_metric_history(run_id, mlflow_key(key)))
        for key in keys
        if client.get_metric_history(run_id, mlflow_key(key))
    }


def _by_step(history) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for m in sorted(history, key=lambda m: (m.step, m.timestamp)):
        out.setdefault(m.step, []).append(m.value)
    return out


def test_tensorboard_and_mlflow_hold_exactly_the_metrics(env, tmp_path):
    out = tmp_path / "run"
    with Trackers(
        ["tensorboard", "mlflow"], output_dir=out, config=CONFIG, run_name="r1", project="skd", resume=False
    ) as trackers:
        log_both(out, trackers, records(range(1, 6)))
    want = expected(out)
    assert set(want) == {"train/loss", "train/grad_norm", "perf/time_train_s", "data/tokens"} | {
        "eval/acceptance",
        "eval/pass@1",
    }
    assert 2 not in want["train/grad_norm"]  # NaN skipped

    scalars, texts = tensorboard_scalars(out / "tensorboard")
    assert scalars == want  # float64: equal, not approximately
    assert len(texts) == 1 and json.loads(texts[0].removeprefix("```json\n").removesuffix("\n```")) == CONFIG

    from mlflow.tracking import MlflowClient

    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"  # MLflow 3 refuses the file store without it
    client = MlflowClient("file:" + str((out / "mlruns").resolve()))
    run_id = json.loads((out / "tracking.json").read_text())["mlflow"]
    run = client.get_run(run_id)
    assert run.info.run_name == "r1" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "skd"
    assert run.data.params == {
        "student": "tiny-student",
        "lr": "0.0001",
        "lora_rank": "None",
        "report_to": "['tensorboard', 'mlflow']",
        "loss.name": "skd",
        "loss.top_k": "8",
        "output_dir": "outputs/run",
    }
    assert mlflow_key("eval/pass@1") == "eval/pass_1"  # "@" is refused; "/" is kept
    assert set(run.data.metrics) == {mlflow_key(k) for k in want}
    assert mlflow_series(client, run_id, want) == {
        k: {s: [v] for s, v in by.items()} for k, by in want.items()
    }


def test_resume_continues_the_mlflow_run_and_tensorboard_drops_the_steps_after_the_checkpoint(env, tmp_path):
    out = tmp_path / "run"
    kw = dict(output_dir=out, config=CONFIG, run_name=None, project="skd")
    with (
        pytest.raises(KeyboardInterrupt),
        Trackers(["tensorboard", "mlflow"], resume=False, **kw) as trackers,
    ):
        log_both(out, trackers, records(range(1, 6)))
        raise KeyboardInterrupt  # killed after step 5; the last checkpoint was step 3
    first_id = json.loads((out / "tracking.json").read_text())["mlflow"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient("file:" + str((out / "mlruns").resolve()))
    assert client.get_run(first_id).info.status == "FAILED"
    assert client.get_run(first_id).info.run_name == "run"  # output_dir's name

    MetricsLog(out / "metrics.jsonl").keep_until(3)  # what the trainer does on --resume
    with Trackers(["tensorboard", "mlflow"], resume=True, start_step=3, **kw) as trackers:
        log_both(out, trackers, records(range(4, 8), shift=10.0))
    want = expected(out)
    assert want["train/loss"][3] < 10 < want["train/loss"][4]

    assert json.loads((out / "tracking.json").read_text())["mlflow"] == first_id
    assert client.get_run(first_id).info.status == "FINISHED"
    scalars, texts = tensorboard_scalars(out / "tensorboard")
    assert scalars == want  # steps 4, 5 of the killed run purged
    assert len(texts) == 2  # the config at each start
    # MLflow keeps every value: steps 4 and 5 hold the killed run's value, then the resumed run's
    history = mlflow_series(client, first_id, want)
    for key, by_step in want.items():
        for step, value in by_step.items():
            assert history[key][step][-1] == value
    assert len(history["train/loss"][4]) == 2 and len(history["train/loss"][6]) == 1

    # a fresh run in the same directory is a new MLflow run
    with Trackers(["mlflow"], resume=False, **kw) as trackers:
        assert trackers.trackers["mlflow"].run_id != first_id


def test_mlflow_tracking_uri_from_the_environment(env, tmp_path, monkeypatch):
    store = tmp_path / "elsewhere"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:" + str(store))
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    out = tmp_path / "run"
    with Trackers(["mlflow"], output_dir=out, config={}, run_name="x", project="p", resume=False) as t:
        t.log(1, {"train/loss": 0.5, "eval/none": None})
    assert not (out / "mlruns").exists()
    from mlflow.tracking import MlflowClient

    run = MlflowClient(f"file:{store}").get_run(json.loads((out / "tracking.json").read_text())["mlflow"])
    assert run.data.metrics == {"train/loss": 0.5}


def test_check_available_names_the_missing_package_and_its_extra(monkeypatch):
    check_available(list(BACKENDS))  # all installed in the dev environment
    find_spec = importlib.util.find_spec
    for backend, extra in [("wandb", "skd[wandb]"), ("trackio", "skd[trackio]"), ("mlflow", "skd[tracking]")]:
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda n, *a, b=backend: None if n == b else find_spec(n)
        )
        message = f"report_to={backend} needs the {backend} package: pip install '{extra}'"
        with pytest.raises(ValueError, match=re.escape(message)):
            check_available(["tensorboard", backend])
    with pytest.raises(ValueError, match="unknown tracker 'comet'"):
        check_available(["comet"])


# A child process: runs Trackers twice (a killed run, then a resume from step 3) with Python's name lookups
# made to fail and recorded: any attempt to reach the network from this process fails the test.
CHILD = textwrap.dedent(
    """
    import json, socket, sys
    from pathlib import Path

    lookups = []

    def no_network(*args, **kwargs):
        lookups.append(args[:2])
        raise OSError("no network in this test")

    socket.getaddrinfo = no_network
    sys.path.insert(0, sys.argv[1])
    from tests.trainer.outputs.test_tracking import CONFIG, log_both, records
    from trainer.outputs.metrics import MetricsLog
    from trainer.outputs.tracking import Trackers

    backend, out = sys.argv[2], Path(sys.argv[3])
    kw = dict(output_dir=out, config=CONFIG, run_name="r1", project="skd")
    with Trackers([backend], resume=False, **kw) as trackers:
        log_both(out, trackers, records(range(1, 6)))
    MetricsLog(out / "metrics.jsonl").keep_until(3)
    if backend == "wandb":  # offline run dirs are named by their start second: keep the two apart
        import time
        time.sleep(1.05 - time.time() % 1)
    with Trackers([backend], resume=True, start_step=3, **kw) as trackers:
        log_both(out, trackers, records(range(4, 8), shift=10.0))
    assert not lookups, f"network lookups: {lookups}"  # a library may catch the error, not this
    if backend == "trackio":
        from trackio.sqlite_storage import SQLiteStorage

        print("RESULT", json.dumps({
            "runs": SQLiteStorage.get_runs("skd"),
            "logs": SQLiteStorage.get_logs("skd", "r1"),
            "config": SQLiteStorage.get_run_config("skd", "r1"),
        }))
    """
)


def run_child(backend: str, out: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), backend, str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def wandb_records(path: Path):
    """The records of a .wandb file. wandb 0.31 has no Python reader (its Go core writes the file): a
    LevelDB log, ':W&B' + 3 header bytes, then 32 KiB blocks of chunks (crc32 u32, length u16, type u8:
    1 full, 2 first, 3 middle, 4 last) whose payloads form wandb_internal_pb2.Record messages."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, payload = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zero padding
            pos += left
            continue
        payload += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(payload)
            payload = b""
            yield record


def test_wandb_offline_writes_the_metrics_without_a_key_or_network(env, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    out = tmp_path / "run"
    run_child("wandb", out)
    run_id = json.loads((out / "tracking.json").read_text())["wandb"]
    # offline, a resumed run is a second directory of the same run id (`wandb sync` sends both)
    killed, resumed = sorted((out / "wandb").glob(f"offline-run-*-{run_id}"))

    def history(run_dir: Path) -> tuple[dict[str, dict[int, float]], list]:
        series: dict[str, dict[int, float]] = {}
        runs = []
        for record in wandb_records(run_dir / f"run-{run_id}.wandb"):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                runs.append(record.run)
            elif kind == "history":
                step = record.history.step.num
                for item in record.history.item:
                    key = "/".join(item.nested_key) or item.key
                    if not key.startswith("_"):
                        series.setdefault(key, {})[step] = json.loads(item.value_json)
        return series, runs

    first, runs = history(killed)
    second, _ = history(resumed)
    (run,) = runs
    assert (run.run_id, run.display_name, run.project) == (run_id, "r1", "skd")
    assert {u.key: json.loads(u.value_json) for u in run.config.update if u.key != "_wandb"} == CONFIG
    # metrics.jsonl after the resume = the killed run's steps <= 3 + the resumed run's
    merged = {k: {s: v for s, v in first.get(k, {}).items() if s <= 3} | second.get(k, {}) for k in first}
    assert merged == expected(out)
    assert max(first["train/loss"]) == 5 and min(second["train/loss"]) == 4


def test_trackio_logs_locally_without_network(env, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    out = tmp_path / "run"
    stdout = run_child("trackio", out)
    result = json.loads(
        next(line for line in stdout.splitlines() if line.startswith("RESULT ")).split(" ", 1)[1]
    )
    assert result["runs"] == ["r1"]  # resumed by name: one run
    assert json.loads((out / "tracking.json").read_text()) == {"trackio": "r1"}
    assert {k: v for k, v in result["config"].items() if not k.startswith("_")} == CONFIG
    # the killed run's steps 4, 5 stay: trackio keeps every value logged, like MLflow
    series: dict[str, dict[int, list[float]]] = {}
    for row in result["logs"]:
        for key, value in row.items():
            if key not in ("step", "timestamp"):
                series.setdefault(key, {}).setdefault(row["step"], []).append(value)
    want = expected(out)
    assert set(series) == set(want)
    for key, by_step in want.items():
        for step, value in by_step.items():
            assert series[key][step][-1] == value
    assert len(series["train/loss"][4]) == 2
    assert (tmp_path / "trackio" / "skd.db").exists()
    assert not (env / "hf").exists()
