"""Experiment trackers (`report_to`): each step's metrics record, as written to metrics.jsonl, mirrored to
TensorBoard, MLflow, Weights & Biases and/or trackio.

Only finite numbers are logged (None, NaN, inf, lists and strings are skipped), at the record's step, as
float64: a tracker shows the same values as metrics.jsonl. Each backend is imported only when chosen;
`check_available` says which pip extra is missing before any work starts. The ids that let `resume=True`
continue the same MLflow / W&B / trackio run are kept in `output_dir/tracking.json`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import numbers
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

BACKENDS = ("tensorboard", "mlflow", "wandb", "trackio")

# backend -> (modules it needs, the pip extra that installs them)
_REQUIRES = {
    "tensorboard": (("tensorboard",), "skd[tracking]"),
    "mlflow": (("mlflow",), "skd[tracking]"),
    "wandb": (("wandb",), "skd[wandb]"),
    "trackio": (("trackio",), "skd[trackio]"),
}


def check_available(report_to: list[str]) -> None:
    """Fail before any work starts when a chosen backend is unknown or its package is not installed (found
    with `find_spec`, nothing imported: mlflow alone takes seconds to import)."""
    for name in report_to:
        if name not in _REQUIRES:
            raise ValueError(f"report_to: unknown tracker {name!r}; choose from {', '.join(BACKENDS)}")
        modules, extra = _REQUIRES[name]
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(
                f"report_to={name} needs the {', '.join(missing)} package: pip install '{extra}'"
            )


def scalars(values: dict) -> dict[str, float]:
    """The values a tracker can plot: finite real numbers (bools as 0/1), as floats."""
    out = {}
    for key, value in values.items():
        if isinstance(value, numbers.Real):
            value = float(value)
            if math.isfinite(value):
                out[key] = value
    return out


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """Nested keys joined by "." (MLflow params are flat)."""
    out: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class RunIds:
    """`output_dir/tracking.json`: each backend's run id, so that a resumed trainer continues the same run.
    Rewritten atomically on every change; a fresh run (resume=False) starts from an empty record."""

    def __init__(self, path: Path, resume: bool):
        self.path = path
        self.ids: dict[str, str] = json.loads(path.read_text()) if resume and path.exists() else {}

    def get(self, backend: str) -> str | None:
        return self.ids.get(backend)

    def set(self, backend: str, run_id: str) -> None:
        self.ids[backend] = run_id
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.ids, indent=2) + "\n")
        tmp.replace(self.path)


@dataclass
class RunInfo:
    output_dir: Path
    config: dict
    run_name: str
    project: str
    resume: bool
    start_step: int
    ids: RunIds


class Tracker(Protocol):
    def log(self, step: int, values: dict[str, float]) -> None: ...

    def finish(self, failed: bool = False) -> None: ...


class TensorBoardTracker:
    """Event files under `output_dir/tensorboard/`.

    Scalars are float64 tensor summaries: the legacy `simple_value` is float32 and would not match
    metrics.jsonl. Every writer opens with a session-start event (`purge_step`): TensorBoard takes the
    first as the run's start and each later one as a restart that hides the steps >= it, so a run
    resumed from the checkpoint of step S drops the steps after S it is about to log again. The config
    is logged as text (JSON in a markdown code block) under "config".
    """

    def __init__(self, run: RunInfo):
        from torch.utils.tensorboard import SummaryWriter

        purge_step = run.start_step + 1 if run.resume else 0
        self.writer = SummaryWriter(log_dir=str(run.output_dir / "tensorboard"), purge_step=purge_step)
        text = "```json\n" + json.dumps(run.config, indent=2) + "\n```"
        self.writer.add_text("config", text, global_step=run.start_step)
        self.writer.flush()

    def log(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, global_step=step, new_style=True, double_precision=True)
        self.writer.flush()  # a step takes seconds; a killed run keeps what it logged

    def finish(self, failed: bool = False) -> None:
        self.writer.close()


def mlflow_tracking_uri(output_dir: Path) -> str:
    """$MLFLOW_TRACKING_URI, else a file store in `output_dir/mlruns`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or "file:" + str((output_dir / "mlruns").resolve())


def mlflow_key(key: str) -> str:
    """A metric or param name MLflow accepts. It takes "/" (and alphanumerics, _ - . : space); other
    characters become "_"; empty, "." and ".." path parts are dropped (MLflow rejects names that a path
    normalisation would change); cut to MLflow's 250 characters."""
    key = re.sub(r"[^/\w.\- :]", "_", key)
    return "/".join(part for part in key.split("/") if part not in ("", ".", ".."))[:250] or "_"


class MLflowTracker:
    """A run in the experiment named `project`, in the store at `mlflow_tracking_uri`.

    MLflow 3 refuses the file store unless MLFLOW_ALLOW_FILE_STORE=true (its new default, sqlite, needs
    SQLAlchemy and alembic, which mlflow-skinny does not install): we set it, unless the user did, when the
    store is a local path. MlflowClient rather than the fluent API: no process-wide active run. The config
    is the run's params (flattened, values as strings cut to MLflow's limit); a resumed run keeps its
    params and only adds new keys (MLflow refuses to change a param). MLflow keeps every value logged at a
    step: a resumed run's steps after the checkpoint are in the history twice.
    """

    def __init__(self, run: RunInfo):
        from urllib.parse import urlparse

        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        uri = mlflow_tracking_uri(run.output_dir)
        if urlparse(uri).scheme in ("", "file"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id = None
        if run.resume and (run_id := run.ids.get("mlflow")):
            try:
                logged = self.client.get_run(run_id).data.params
                self.client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
            except MlflowException:  # not in this store (another tracking URI): a new run
                pass
        if self.run_id is None:
            experiment = self.client.get_experiment_by_name(run.project)
            experiment_id = (
                experiment.experiment_id if experiment else self.client.create_experiment(run.project)
            )
            self.run_id = self.client.create_run(experiment_id, run_name=run.run_name).info.run_id
            run.ids.set("mlflow", self.run_id)
            logged = {}
        params = {}
        for key, value in flatten(run.config).items():
            key = mlflow_key(key)
            if key not in logged:
                params[key] = Param(key, str(value)[:MAX_PARAM_VAL_LENGTH])
        params_list = list(params.values())
        for i in range(0, len(params_list), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=params_list[i : i + 100])

    def log(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_key(k), v, now, step) for k, v in values.items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def finish(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


class WandbTracker:
    """`wandb.init` in `output_dir/wandb/`, with the run id kept in tracking.json and resume="allow", so
    that a resumed trainer continues the same W&B run.

    Mode, entity, API key and server come from wandb's own settings and environment (WANDB_MODE=offline
    needs neither a key nor a network; online without a key fails at init). W&B ignores a step lower than
    the run's last one: online, a resumed run's steps up to where it stopped are not rewritten.
    """

    def __init__(self, run: RunInfo):
        import wandb

        run_id = (run.resume and run.ids.get("wandb")) or uuid.uuid4().hex[:12]
        run.ids.set("wandb", run_id)
        self.run = wandb.init(
            project=run.project,
            name=run.run_name,
            config=run.config,
            dir=str(run.output_dir),
            id=run_id,
            resume="allow",
        )

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def finish(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class TrackioTracker:
    """A trackio run in its local sqlite store: $TRACKIO_DIR, else $HF_HOME/trackio (trackio reads these when
    first imported). trackio sends nothing to a Space or server unless TRACKIO_SPACE_ID / TRACKIO_SERVER_URL
    ask it to (though with a Hugging Face token and without HF_HUB_OFFLINE=1, `trackio.init` asks the hub
    who the user is). trackio resumes runs by name: the name is kept in tracking.json.
    """

    def __init__(self, run: RunInfo):
        import trackio

        name = run.resume and run.ids.get("trackio")
        self.run = trackio.init(
            project=run.project,
            name=name or run.run_name,
            config=run.config,
            resume="allow" if name else "never",
        )
        run.ids.set("trackio", self.run.name)

    def log(self, step: int, values: dict[str, float]) -> None:
        import trackio

        trackio.log(values, step=step)

    def finish(self, failed: bool = False) -> None:
        import trackio

        trackio.finish()


_TRACKERS: dict[str, type] = {
    "tensorboard": TensorBoardTracker,
    "mlflow": MLflowTracker,
    "wandb": WandbTracker,
    "trackio": TrackioTracker,
}


class Trackers:
    """The trackers named in `report_to`, fed the same records as metrics.jsonl.

    `run_name` defaults to output_dir's name. With `resume=True`, `start_step` is the step of the checkpoint
    resumed from: the records after it are about to be logged again. A tracker's error propagates: the
    caller decides whether a tracker may stop training. Use as a context manager or call `finish`.
    """

    def __init__(
        self,
        report_to: list[str],
        *,
        output_dir: Path,
        config: dict,
        run_name: str | None,
        project: str,
        resume: bool,
        start_step: int = 0,
    ):
        check_available(report_to)
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        run = RunInfo(
            output_dir=output_dir,
            config=json.loads(json.dumps(config, default=str)),  # Paths and the like as strings
            run_name=run_name or output_dir.resolve().name,
            project=project,
            resume=resume,
            start_step=start_step,
            ids=RunIds(output_dir / "tracking.json", resume),
        )
        self.trackers: dict[str, Tracker] = {}
        self._finished = False
        try:
            for name in dict.fromkeys(report_to):
                self.trackers[name] = _TRACKERS[name](run)
        except BaseException:
            self.finish(failed=True)
            raise

    def log(self, step: int, values: dict) -> None:
        numbers_only = scalars(values)
        if numbers_only and not self._finished:
            for tracker in self.trackers.values():
                tracker.log(step, numbers_only)

    def finish(self, failed: bool = False) -> None:
        """Close every tracker (idempotent); `failed` marks the run failed where the backend can."""
        if self._finished:
            return
        self._finished = True
        errors = []
        for tracker in self.trackers.values():
            try:
                tracker.finish(failed)
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish(failed=exc_type is not None)
