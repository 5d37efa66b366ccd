"""One SKD training job, from a validated config to its report.

`run_job` reads top to bottom: where the run writes (and what it continues), every check that needs no
start-up, the models, the data, then the teacher (given URLs or a server it starts), Ray, the wired run
(trainer.loop), the report and the optional hub push. Whatever stops it raises `RunError` (one line);
what it started is stopped on the way out. The command line (trainer.cli) is the only caller that exits.

Its parts, each in its own room:
- models                   the embedded default teacher and pruned student; model names resolved
- data                     prompts tokenised with the chat template; tasks (loading, metrics); prompt sets
- teacher                  the teacher service (URLs or a started server) and pre-flight checks
- cluster                  the Ray cluster: which one, joining it, its resources
- methods, rollout         rollout methods; the Ray actors that run them and the queues around them
- learner, weights         the student in transformers (in the driver or N workers); how weights travel
- evaluate                 held-out metrics
- outputs                  run dir, checkpoints, metrics, report, trackers, dry run, hub push
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from trainer.config import OutputConfig, RolloutConfig, RunConfig, TeacherConfig
from trainer.errors import RunError

logger = logging.getLogger(__name__)


def run_job(cfg: RunConfig) -> Path | None:
    """Run the job `cfg` describes; returns its report (None for a dry run)."""
    from shared.client import TeacherUnavailable
    from trainer import cluster
    from trainer.loop import setup, train
    from trainer.models import check_compatible, resolve_models
    from trainer.outputs.checkpoints import checkpoint_step
    from trainer.outputs.hub import push
    from trainer.outputs.metrics import MetricsLog
    from trainer.outputs.report import write_report
    from trainer.outputs.run_dir import choose_run_dir
    from trainer.outputs.tracking import Trackers
    from trainer.teacher.service import teacher_service

    cfg, checkpoint = choose_run_dir(cfg)
    out = Path(cfg.output_dir)
    check_before_work(cfg, checkpoint)
    teacher_path, student_path = resolve_models(cfg)
    if cfg.dry_run:  # after every check a real run makes before its work, so it shows what would stop it
        from trainer.outputs.dry_run import describe

        print(describe(cfg, teacher_path, student_path, cfg.teacher_model, cfg.student_model), end="")
        return None
    prompts = load_run_prompts(cfg, checkpoint or student_path)  # bad data stops here, before any start-up
    out.mkdir(parents=True, exist_ok=True)
    trackers = Trackers(
        cfg.report_to,
        output_dir=out,
        config=cfg.model_dump(mode="json"),
        run_name=cfg.run_name,
        project=cfg.project,
        resume=checkpoint is not None,
        start_step=checkpoint_step(checkpoint) if checkpoint else 0,
    )
    with trackers, teacher_service(cfg, teacher_path, out / "teacher_server.log") as (urls, info):
        check_compatible(teacher_path, student_path, info, cfg.part(RolloutConfig))
        if cfg.preflight:
            from trainer.teacher.preflight import run_checks

            run_checks(
                cfg.part(TeacherConfig), teacher_path, student_path, urls, info.vocab_size, cfg.num_logprobs
            )
        cluster.connect(cfg.part(OutputConfig))
        check_learner(cfg, cluster.resources())
        run = setup(cfg, out, student_path, checkpoint, urls, info, prompts, trackers)
        try:
            summary = train(run)
        except TeacherUnavailable as e:  # raised between steps: the state is consistent
            path, why = run.checkpoint(), getattr(e, "cause", e)  # an actor's error: Ray wraps it
            raise RunError(f"teacher: {why}. Saved {path}; restart the teacher, --resume") from None
        finally:
            run.shutdown()
    records = MetricsLog(out / "metrics.jsonl").read()
    report = write_report(out, cfg.model_dump(mode="json"), records, summary)
    logger.info("done: %s", report)
    if cfg.push_to_hub:
        push(cfg, Path(summary["final_checkpoint"]), records)
    return report


def check_before_work(cfg: RunConfig, checkpoint: Path | None) -> None:
    """What would stop the run later stops it now, with one line: a method or task nobody registered, a
    checkpoint trained otherwise, a wrong Ray address, learner settings this machine cannot run, a missing
    tracker or COMET package, push_to_hub without a usable hub."""
    from trainer import cluster
    from trainer.data.tasks import lookup as task
    from trainer.learner.model import ADAPTER_DIR
    from trainer.methods import lookup as method
    from trainer.outputs.hub import check_push
    from trainer.outputs.tracking import check_available

    try:
        if cfg.target_acceptance is not None and not method(cfg.method).steers_k:
            raise ValueError(
                f"target_acceptance adapts a top-K; method {cfg.method} has none (skd, mixed_skd)"
            )
        method(cfg.method)
        task(cfg.task)
        check_available(cfg.report_to)
    except ValueError as e:
        raise RunError(f"invalid configuration: {e}") from None
    if checkpoint is not None and (checkpoint / ADAPTER_DIR).is_dir() != (cfg.lora_rank > 0):
        trained = "with" if cfg.lora_rank == 0 else "without"
        raise RunError(f"--resume: {checkpoint} was trained {trained} LoRA; resume with its lora_rank")
    if address := cluster.ray_address(cfg.part(OutputConfig)):
        cluster.probe(address)  # a wrong address fails here, before the teacher starts
    check_learner(cfg, None if cluster.ray_address(cfg.part(OutputConfig)) else local_cluster())
    if cfg.comet_model and importlib.util.find_spec("comet") is None:
        raise RunError("invalid configuration: comet_model needs unbabel-comet: pip install 'skd[comet]'")
    if cfg.push_to_hub:
        check_push(cfg)


def check_learner(cfg: RunConfig, cluster: dict[str, float] | None) -> None:
    """The learner and the actors fit the device and `cluster` (None: not known yet), or one line says why."""
    from trainer.learner.group import check_fits

    try:
        check_fits(cfg, cluster)
    except ValueError as e:
        raise RunError(f"invalid configuration: {e}") from None


def local_cluster() -> dict[str, float]:
    """What the local cluster a job starts would have."""
    import torch

    from trainer.cluster import local_cpus

    return {"CPU": float(local_cpus()), "GPU": float(torch.cuda.device_count())}


def load_run_prompts(cfg: RunConfig, tokenizer_path: Path) -> tuple:
    """The run's prompts, tokenised with the student's tokenizer: (train prompts, held-out examples, their
    prompt ids). A bad row stops the run here with one line naming it."""
    from transformers import AutoTokenizer

    from trainer.data.prompts import load_prompts

    return load_prompts(cfg, AutoTokenizer.from_pretrained(tokenizer_path))
