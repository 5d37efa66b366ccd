"""SKD training job: `python trainer/main.py [--config run.yaml] [--key=value ...]`.

With no arguments it runs the embedded default (SmolLM2-135M-Instruct teacher, a layer-pruned student, the
shipped prompt set) end to end on this machine. Under `ray job submit ... -- python trainer/main.py` it joins
that cluster. The parts, each in its own module and none aware of this one:

- config.RunConfig        what to run (validated before any work starts)
- models                  the embedded default teacher and the pruned student
- teacher_service         the teacher: given URLs, or a `python -m rollout_server` it starts and stops
- preflight               checks on a probe before any work: templates, a sane teacher, replicas agree
- prompts, tasks          prompts tokenised with the chat template; data loading (files, hub
                          datasets, chat rows), held-out split, task metrics
- feeder.PromptFeeder     the prompt stream -> the actors' prompt queue (exact resume)
- rollout.RolloutGroup    Ray actors with vLLM student engines running a method (methods.METHODS)
- buffer.SampleBuffer     the actors' sample queue -> fresh batches (stale samples dropped and counted)
- learner.Learner         the student in transformers: loss, AdamW, checkpoints (student_model: dtype, LoRA,
                          FSDP/DDP; response_loss: the chunked loss; weights: how weights travel)
- learner_group           N learner workers on Ray joined by torch.distributed, or the Learner in-process
- evaluate.Evaluator      held-out acceptance rate, KL and task metric
- timing.PhaseTimer       where the wall time goes (busy / waiting for samples)
- report                  metrics.jsonl, plots, report.md
- tracking.Trackers       the same records to TensorBoard / MLflow / wandb / trackio (`report_to`)
- dry_run, hub_push       `--dry_run`'s report; `push_to_hub` (access checked first, model card at the end)

Models are named as directories or hub ids (shared.hub, as the teacher server resolves them). `setup` wires
the parts into a `Run`; `train` drives it in one loop; `main` does the rest.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # `python trainer/main.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.config import RunConfig, parse_args

if TYPE_CHECKING:  # the components import torch, vLLM or Ray: loaded in `setup`, after the config is valid
    from trainer.buffer import SampleBuffer
    from trainer.evaluate import Evaluator
    from trainer.feeder import PromptFeeder
    from trainer.learner import Learner
    from trainer.learner_group import LearnerGroup
    from trainer.report import MetricsLog
    from trainer.rollout import RolloutGroup
    from trainer.timing import PhaseTimer

logger = logging.getLogger("trainer.main")


# --- wiring ------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """The wired components of one job and the few actions that involve several of them."""

    cfg: RunConfig
    out: Path
    learner: Learner | LearnerGroup
    feeder: PromptFeeder
    rollout: RolloutGroup
    buffer: SampleBuffer
    evaluator: Evaluator
    log: MetricsLog
    prompt_queue: object  # ray.util.queue.Queue
    tokens_seen: int = 0  # buffer.received_tokens at the previous step record

    def keep_fed(self) -> None:
        """While waiting for samples: top up the prompt queue; replace actors that died."""
        capacity = self.cfg.num_rollout_actors * self.cfg.max_inflight_per_actor
        self.feeder.fill(self.prompt_queue, 2 * capacity)
        if dead := self.rollout.dead():
            self.recover(dead)

    def recover(self, dead: list[int]) -> None:
        """Replace dead actors and issue again the prompts only they held. Everything handed out is
        somewhere downstream of the queue; looking upstream first (the queue, emptied here, then the live
        actors, then the samples queued) finds every prompt still held, as prompts only move downstream."""
        waiting = self.prompt_queue.get_nowait_batch(self.prompt_queue.qsize())
        held = self.rollout.held_positions(skip=dead)
        self.buffer.drain()
        seen = {p.position for p in waiting} | held | {s.position for s in self.buffer.samples}
        lost = [pos for pos in self.feeder.in_flight if pos not in seen]
        for i in dead:
            self.rollout.replace(i)
        self.feeder.reissue(lost)
        if waiting:
            self.prompt_queue.put_nowait_batch(waiting)
        logger.warning("rollout actor(s) %s died: replaced; %d prompts issued again", dead, len(lost))

    def push_weights(self) -> None:
        self.rollout.push_weights(self.learner.step, self.learner.weight_buckets(self.rollout.engine_dtype))

    def evaluate(self) -> None:
        self.push_weights()
        metrics = self.evaluator()
        self.log.write(self.learner.step, metrics)
        logger.info(
            "step %d: %s", self.learner.step, ", ".join(f"{k[5:]} {v:.4f}" for k, v in metrics.items())
        )

    def checkpoint(self) -> Path:
        from trainer.learner import rotate_checkpoints

        state = {"data": self.feeder.state(), "dropped": self.buffer.dropped}
        path = self.learner.save(self.out / "checkpoints", state)
        rotate_checkpoints(self.out / "checkpoints", self.cfg.save_total_limit)
        return path

    def log_step(self, stats: dict, batch: list, timer: PhaseTimer) -> None:
        """One metrics record per step; `perf/time_<phase>_s` is the wall time since the previous record."""
        phases = timer.end_step()
        elapsed = sum(phases.values())
        drafted = sum(s.num_drafted for s in batch)
        received = self.buffer.received_tokens - self.tokens_seen
        self.tokens_seen = self.buffer.received_tokens
        self.log.write(self.learner.step, {
            **{f"train/{k}": v for k, v in stats.items()},
            "data/trained_positions": sorted(s.position for s in batch),
            "train/batch_acceptance": sum(s.num_accepted for s in batch) / drafted if drafted else None,
            **{f"train/samples_{method}": n for method, n in Counter(s.method for s in batch).items()},
            "perf/rollout_tokens_per_s": received / max(elapsed, 1e-9),
            "perf/train_tokens_per_s": stats["tokens"] / max(phases.get("train", 0.0), 1e-9),
            "perf/busy_fraction": timer.busy_fraction,
            "perf/step_busy_s": elapsed - phases.get("wait", 0.0),
            "perf/step_idle_s": phases.get("wait", 0.0),
            **{f"perf/time_{phase}_s": seconds for phase, seconds in phases.items()},
            "perf/mean_staleness": sum(self.learner.step - 1 - s.weight_version for s in batch) / len(batch),
            "perf/dropped_stale_total": self.buffer.dropped,
            "perf/weight_push_s": phases.get("push"),
            "data/position": self.feeder.position,
        })  # fmt: skip

    def summary(self, timer: PhaseTimer, pushes: list[float]) -> dict:
        return {
            "steps": self.learner.step,
            "dropped_stale_samples": self.buffer.dropped,
            "trainer_busy_fraction": round(timer.busy_fraction, 3),
            "seconds_by_phase": {phase: round(s, 1) for phase, s in timer.total.items()},
            "mean_weight_push_s": round(sum(pushes) / len(pushes), 3) if pushes else None,
            "final_checkpoint": str(self.out / "checkpoints" / f"step_{self.learner.step:06d}"),
        }

    def shutdown(self) -> None:
        self.rollout.stop()
        self.learner.shutdown()


def setup(
    cfg: RunConfig,
    out: Path,
    student_path: Path,
    checkpoint: Path | None,
    urls,
    info,
    prompts: tuple,
    trackers=None,
) -> Run:
    """Build every component and start the actors (resumed weights are pushed before their first round).
    `prompts` is what trainer.prompts.load_prompts returned (loaded before anything started);
    `trackers` (trainer.tracking.Trackers) get every metrics record too."""
    from ray.util.queue import Queue

    from trainer.buffer import SampleBuffer
    from trainer.evaluate import Evaluator
    from trainer.feeder import PromptFeeder
    from trainer.learner_group import make_learner
    from trainer.methods import METHODS
    from trainer.report import MetricsLog
    from trainer.rollout import RolloutGroup

    method = METHODS[cfg.method](cfg)
    learner = make_learner(cfg, student_path, checkpoint)
    state = learner.load_state(checkpoint) if checkpoint else {}
    train_prompts, eval_examples, eval_prompts = prompts
    feeder = PromptFeeder(train_prompts, cfg.seed, state.get("data"))
    prompt_queue, sample_queue = Queue(), Queue()
    # Actors start from the base student (a path every node has); a resumed run's weights follow.
    rollout = RolloutGroup(
        cfg, str(student_path), urls, info.eos_token_ids, method, (prompt_queue, sample_queue)
    )
    buffer = SampleBuffer(
        sample_queue, cfg.max_staleness, lambda s: feeder.done(s.position), state.get("dropped", 0)
    )
    evaluator = Evaluator(lambda: rollout.actors[0], urls, learner, eval_examples, eval_prompts, cfg, info)
    log = MetricsLog(out / "metrics.jsonl", sinks=[trackers] if trackers else [])
    run = Run(cfg, out, learner, feeder, rollout, buffer, evaluator, log, prompt_queue)
    if checkpoint:
        if dropped := run.log.keep_until(learner.step):
            logger.info("resuming at step %d: dropped %d later metrics lines", learner.step, dropped)
        run.push_weights()
    rollout.start()
    return run


# --- driving -----------------------------------------------------------------------------------------------


def train(run: Run) -> dict:
    """The loop: gather a fresh batch, step, push weights, log, evaluate, checkpoint. Returns a summary."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from trainer.timing import PhaseTimer

    cfg, learner, timer = run.cfg, run.learner, PhaseTimer()
    need = cfg.batch_size * cfg.grad_accum
    pushes = []
    if cfg.eval_at_start and learner.step == 0:
        run.evaluate()
        timer.lap("eval")
    bar = tqdm(total=cfg.steps, initial=learner.step, desc="train", unit="step")
    with logging_redirect_tqdm(), bar:
        while learner.step < cfg.steps:
            batch = run.buffer.take(need, learner.step, while_waiting=run.keep_fed)
            timer.lap("wait")
            stats = learner.train_step(batch)
            run.feeder.done(*(s.position for s in batch))
            timer.lap("train")
            if learner.step % cfg.sync_every == 0:
                run.push_weights()
                pushes.append(timer.lap("push"))
            run.log_step(stats, batch, timer)
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.3f}", busy=f"{timer.busy_fraction:.2f}")
            timer.lap("log")
            if learner.step % cfg.eval_every == 0 or learner.step == cfg.steps:
                run.evaluate()
                timer.lap("eval")
            if learner.step % cfg.checkpoint_every == 0 or learner.step == cfg.steps:
                run.checkpoint()
                timer.lap("checkpoint")
    return run.summary(timer, pushes)


# --- the job -----------------------------------------------------------------------------------------------


def resolve_models(cfg: RunConfig) -> tuple[Path, Path]:
    """Local dirs of the teacher and the student: the embedded defaults, model dirs, or hub ids
    `org/name[@revision]` resolved through the Hugging Face cache (shared.hub, as the teacher server does)."""
    from shared.hub import resolve_model
    from trainer.models import ensure_default_teacher, ensure_pruned_student

    def resolve(role: str, name: str) -> Path:
        local = Path(name).expanduser()
        if (local.is_absolute() or name.startswith((".", "~"))) and not local.is_dir():
            if role == "teacher" and cfg.teacher_urls:
                return local
            raise SystemExit(f"{role}_model {name} is not a Hugging Face model directory (no such directory)")
        try:
            path = resolve_model(name)
        except ValueError as e:
            if role == "teacher" and cfg.teacher_urls:
                return Path(name)  # served elsewhere: its tokenizer is compared only where it is at hand
            raise SystemExit(f"{role}_model: {e}") from None
        if not (path / "config.json").exists():
            where = name if str(path) == name else f"{name} ({path})"
            raise SystemExit(f"{role}_model {where} is not a Hugging Face model directory (no config.json)")
        return path

    if cfg.teacher_model == "default":
        teacher = ensure_default_teacher(cfg.cache_dir)
    else:
        teacher = resolve("teacher", cfg.teacher_model)
    if cfg.student_model == "default":
        student = ensure_pruned_student(teacher, cfg.prune_keep_every, cfg.cache_dir)
    else:
        student = resolve("student", cfg.student_model)
    return teacher, student


def check_compatible(teacher: Path, student: Path, info, cfg: RunConfig) -> None:
    """Teacher and student must share the vocabulary: SKD compares their token ids directly."""
    from transformers import AutoConfig, AutoTokenizer

    student_vocab = AutoConfig.from_pretrained(student).vocab_size
    if student_vocab != info.vocab_size:
        raise SystemExit(f"student vocabulary ({student_vocab}) != teacher vocabulary ({info.vocab_size})")
    if (teacher / "config.json").exists():
        vocab = AutoTokenizer.from_pretrained(teacher).get_vocab()
        if vocab != AutoTokenizer.from_pretrained(student).get_vocab():
            raise SystemExit("teacher and student tokenizers differ; SKD needs one shared tokenizer")
    if 0 < cfg.top_k < info.vocab_size and cfg.top_k > info.max_logprobs:
        raise SystemExit(f"top_k {cfg.top_k} exceeds the teacher's max_logprobs {info.max_logprobs}")
    if cfg.num_logprobs > info.max_logprobs:
        raise SystemExit(
            f"num_logprobs {cfg.num_logprobs} exceeds the teacher's max_logprobs {info.max_logprobs}"
        )


def _probe(address: str, timeout_s: float = 10.0) -> None:
    """Fail in seconds, not minutes, when a Ray head is unreachable (ray.init retries for a long time)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        return  # "auto" and the like: let Ray resolve them
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise SystemExit(f"Ray head not reachable at {address}: {e}") from None


def connect_ray(cfg: RunConfig) -> None:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():  # a caller (tests, notebooks) already connected
        return
    quiet = logging.DEBUG if cfg.log_level == "debug" else logging.WARNING
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS")  # set inside `ray job submit`
    if address:
        _probe(address)
        ray.init(address=address, logging_level=quiet)
    else:
        ray.init(address="local", include_dashboard=False, num_cpus=_local_cpus(), logging_level=quiet)


def _local_cpus() -> int:
    return max(os.cpu_count() or 1, 2)


def check_learner(cfg: RunConfig, cluster: dict[str, float] | None = None) -> None:
    """Learner settings this machine or cluster cannot run fail here, naming the fields: bf16 where the device
    lacks it, more learner workers than the cluster has resources for. Without `cluster`: before any work,
    against the local cluster the job would start (a given cluster is checked once connected)."""
    import torch

    from trainer.learner import resolve_device
    from trainer.learner_group import check_resources
    from trainer.student_model import check_dtype_supported

    try:
        if cfg.num_learner_workers == 1 or cfg.learner_num_gpus == 0:
            device = (
                resolve_device(cfg.trainer_device) if cfg.num_learner_workers == 1 else torch.device("cpu")
            )
            check_dtype_supported(cfg, device)
        if cluster is None and not (cfg.ray_address or os.environ.get("RAY_ADDRESS")):
            cluster = {"CPU": float(_local_cpus()), "GPU": float(torch.cuda.device_count())}
        if cluster is not None:
            check_resources(cfg, cluster)
    except ValueError as e:
        raise SystemExit(f"invalid configuration: {e}") from None


def ray_resources() -> dict[str, float]:
    import ray

    return ray.cluster_resources()


def _exit_on_sigterm() -> None:
    """`ray job stop`, `docker stop` and `kill` send SIGTERM: unwind (stop the actors and the teacher)."""

    def handler(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")

    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    from shared.client import TeacherUnavailable
    from trainer.learner import checkpoint_step
    from trainer.logs import configure
    from trainer.report import MetricsLog, write_report
    from trainer.teacher_service import TeacherError, teacher_service
    from trainer.tracking import Trackers

    configure(cfg.log_level)
    cfg, checkpoint = choose_run_dir(cfg)
    out = Path(cfg.output_dir)
    check_before_work(cfg, out, checkpoint)
    teacher_path, student_path = resolve_models(cfg)
    if cfg.dry_run:  # after every check a real run makes before its work, so it shows what would stop it
        from trainer.dry_run import describe

        print(describe(cfg, teacher_path, student_path, cfg.teacher_model, cfg.student_model), end="")
        return
    prompts = load_run_prompts(cfg, checkpoint or student_path)  # bad data stops here, before any start-up
    out.mkdir(parents=True, exist_ok=True)
    _exit_on_sigterm()
    trackers = Trackers(
        cfg.report_to,
        output_dir=out,
        config=cfg.model_dump(mode="json"),
        run_name=cfg.run_name,
        project=cfg.project,
        resume=checkpoint is not None,
        start_step=checkpoint_step(checkpoint) if checkpoint else 0,
    )
    try:
        with trackers, teacher_service(cfg, teacher_path, out / "teacher_server.log") as (urls, info):
            check_compatible(teacher_path, student_path, info, cfg)
            if cfg.preflight:
                from trainer.preflight import run_checks

                run_checks(cfg, teacher_path, student_path, urls, info.vocab_size)
            connect_ray(cfg)
            _exit_on_sigterm()  # again: ray.init installs its own bare sys.exit handler
            check_learner(cfg, ray_resources())
            run = setup(cfg, out, student_path, checkpoint, urls, info, prompts, trackers)
            try:
                summary = train(run)
            except TeacherUnavailable as e:  # raised between steps: the state is consistent
                path, why = run.checkpoint(), getattr(e, "cause", e)  # an actor's error: Ray wraps it
                raise SystemExit(f"teacher: {why}. Saved {path}; restart the teacher, --resume") from None
            finally:
                run.shutdown()
    except TeacherError as e:
        raise SystemExit(f"teacher: {e}") from None
    records = MetricsLog(out / "metrics.jsonl").read()
    report = write_report(out, cfg.model_dump(mode="json"), records, summary)
    logger.info("done: %s", report)
    if cfg.push_to_hub:
        push(cfg, Path(summary["final_checkpoint"]), records)


def load_run_prompts(cfg: RunConfig, tokenizer_path: Path) -> tuple:
    """The run's prompts, tokenised with the student's tokenizer: (train prompts, held-out examples, their
    prompt ids). A bad row stops the run here with one line naming it."""
    from transformers import AutoTokenizer

    from trainer.methods import METHODS
    from trainer.prompts import load_prompts

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    return load_prompts(cfg, tokenizer, METHODS[cfg.method].needs_reference)


def choose_run_dir(cfg: RunConfig) -> tuple[RunConfig, Path | None]:
    """Where this run writes, and the checkpoint it continues from. With resume=auto (the default) an
    unfinished run (a checkpoint before `steps`) is continued, so a second `make run` after an interrupted
    one goes on where it stopped. A dir that holds a finished run (or one stopped before its first
    checkpoint) is never written over: left at its default, the run goes to the next free `skd-default-N`
    (continuing an unfinished one there); given explicitly, that stops here with one line."""
    from trainer.learner import checkpoint_step, latest_checkpoint

    out = Path(cfg.output_dir)
    if cfg.resume is True:
        if (checkpoint := latest_checkpoint(out / "checkpoints")) is None:
            raise SystemExit(f"--resume: no checkpoint in {out / 'checkpoints'}")
        logger.info("continuing the run in %s from %s", out, checkpoint.name)
        return cfg, checkpoint
    candidates = [out] if "output_dir" in cfg.model_fields_set else _numbered(out)
    for run_dir in candidates:
        checkpoint = latest_checkpoint(run_dir / "checkpoints")
        if cfg.resume == "auto" and checkpoint is not None and checkpoint_step(checkpoint) < cfg.steps:
            logger.info("continuing the run in %s from %s (unfinished; --resume=false starts anew)", run_dir,
                        checkpoint.name)  # fmt: skip
            return cfg.model_copy(update={"output_dir": run_dir}), checkpoint
        if not (run_dir / "metrics.jsonl").exists():
            if run_dir != out:
                logger.info("%s holds an earlier run: this one goes to %s", out, run_dir)
            return cfg.model_copy(update={"output_dir": run_dir}), None
    if checkpoint is None:
        held, more = "a run stopped before its first checkpoint", ""
    elif checkpoint_step(checkpoint) < cfg.steps:
        held, more = f"an unfinished run ({checkpoint.name})", "; --resume continues it"
    else:
        held, more = f"a finished run ({checkpoint.name})", "; a larger --steps continues it"
    raise SystemExit(f"{out} already holds {held}: choose another --output_dir (or remove it){more}")


def _numbered(out: Path):
    """out, out-2, out-3, ...: the default output dir and the ones later runs made beside it."""
    yield out
    n = 2
    while True:
        yield out.with_name(f"{out.name}-{n}")
        n += 1


def check_before_work(cfg: RunConfig, out: Path, checkpoint: Path | None) -> None:
    """What would stop the run later stops it now, with one line: a checkpoint trained otherwise, a wrong
    Ray address, learner settings this machine cannot run, a missing tracker or COMET package, push_to_hub
    without a usable hub."""
    from trainer.student_model import ADAPTER_DIR
    from trainer.tracking import check_available

    if checkpoint is not None and (checkpoint / ADAPTER_DIR).is_dir() != (cfg.lora_rank > 0):
        trained = "with" if cfg.lora_rank == 0 else "without"
        raise SystemExit(f"--resume: {checkpoint} was trained {trained} LoRA; resume with its lora_rank")
    if address := cfg.ray_address or os.environ.get("RAY_ADDRESS"):
        _probe(address)  # a wrong address fails here, before the teacher starts
    check_learner(cfg)
    try:
        check_available(cfg.report_to)
    except ValueError as e:
        raise SystemExit(f"invalid configuration: {e}") from None
    if cfg.comet_model and importlib.util.find_spec("comet") is None:
        raise SystemExit("invalid configuration: comet_model needs unbabel-comet: pip install 'skd[comet]'")
    if cfg.push_to_hub:
        check_push(cfg)


def hub_repo(cfg: RunConfig) -> str:
    return cfg.hub_model_id or Path(cfg.output_dir).resolve().name


def check_push(cfg: RunConfig) -> None:
    """push_to_hub fails here, before any work, when the hub, a token or the repo is not usable."""
    from trainer.hub_push import check_hub_access

    try:
        check_hub_access(hub_repo(cfg), None)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None


def push(cfg: RunConfig, checkpoint: Path, records: list[dict]) -> None:
    """The final student and a model card with the last held-out metrics, to hub_model_id."""
    from trainer.hub_push import model_card, push_checkpoint

    metrics = {k: v for r in records if "eval/kl" in r for k, v in r.items() if k.startswith("eval/")}
    config = cfg.model_dump(mode="json")
    embedded = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the embedded defaults are made from
    student = embedded if cfg.student_model == "default" else cfg.student_model
    teacher = embedded if cfg.teacher_model == "default" else cfg.teacher_model
    card = model_card(hub_repo(cfg), student, teacher, cfg.method, metrics, config)
    try:
        url = push_checkpoint(checkpoint, hub_repo(cfg), None, card, private=cfg.hub_private)
    except RuntimeError as e:
        raise SystemExit(f"{e} (the checkpoint is kept at {checkpoint}; upload it by hand)") from None
    logger.info("pushed the student to %s", url)


def cli() -> None:
    """`skd-train`: the console script (same as `python trainer/main.py`)."""
    from shared import reaper

    reaper.start()  # the job's own processes die with it, however it dies
    main()


if __name__ == "__main__":
    cli()
