"""The training loop and the run it drives.

`setup` wires one job's components into a `Run` (each single-purpose, none aware of this module):

- rollout.RolloutGroup       Ray actors with vLLM student engines running the method (trainer.methods)
- rollout.PromptFeeder       the prompt stream -> the actors' prompt queue (exact resume)
- rollout.SampleBuffer       the actors' sample queue -> batches in stream order (never by length)
- rollout.RolloutSupervisor  keeps the queue topped up as far as admission allows (within max_staleness);
                             replaces dead actors, their prompts issued again
- learner (a Learner)        the student in transformers, in the driver or as N Ray workers
- evaluate.Evaluator         held-out acceptance rate, KL and task metrics
- rollout.AcceptanceTarget   target_acceptance: the rollouts' K from each batch's acceptance
- outputs.MetricsLog         metrics.jsonl and the experiment trackers

`train` is the loop: gather a fresh batch, step, push weights, log, evaluate, checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.config import RunConfig
from trainer.outputs import metrics as m
from trainer.outputs.checkpoints import checkpoint_dir, rotate_checkpoints
from trainer.outputs.responses import write_responses

if TYPE_CHECKING:  # the components import torch, vLLM or Ray: loaded in `setup`
    from shared.protocol import ServerInfo
    from trainer.evaluate import Evaluator, PendingEvaluation
    from trainer.learner.interface import Learner
    from trainer.outputs.metrics import MetricsLog
    from trainer.outputs.timing import PhaseTimer
    from trainer.records import Sample
    from trainer.rollout.acceptance_target import AcceptanceTarget
    from trainer.rollout.buffer import SampleBuffer
    from trainer.rollout.feeder import PromptFeeder
    from trainer.rollout.group import RolloutGroup
    from trainer.rollout.supervisor import RolloutSupervisor

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """The wired components of one job and the few actions that involve several of them."""

    cfg: RunConfig
    out: Path
    learner: Learner
    feeder: PromptFeeder
    rollout: RolloutGroup
    buffer: SampleBuffer
    supervisor: RolloutSupervisor
    evaluator: Evaluator
    log: MetricsLog
    steer: AcceptanceTarget | None = None  # target_acceptance
    tokens_seen: int = 0  # buffer.received_tokens at the previous step record
    pushed_step: int | None = None  # the learner step whose weights the actors have (None: the base's)
    evaluations: list[PendingEvaluation] = field(default_factory=list)  # rollouts still running

    def feed_rollouts(self) -> None:
        """While the learner waits: prompts the actors may start now to the queue, dead actors replaced."""
        self.supervisor(self.learner.step, self.pushed_step or 0)

    def push_weights(self) -> None:
        self.rollout.push_weights(self.learner.step, self.learner.weight_buckets(self.rollout.engine_dtype))
        self.pushed_step = self.learner.step

    def evaluate(self) -> None:
        """Start an evaluation of the current weights; its record is written when its acceptance rollouts
        end (`collect_evaluations`), at once unless `eval_async`."""
        if self.pushed_step != self.learner.step:  # pushed already by the loop, unless sync_every > 1
            self.push_weights()
        pending, responses = self.evaluator.start()
        write_responses(self.out, self.learner.step, responses)
        self.evaluations.append(pending)
        self.collect_evaluations(wait=not self.cfg.eval_async)

    def collect_evaluations(self, wait: bool) -> None:
        """Write the records of started evaluations whose rollouts have ended (all of them if `wait`), in
        the order they started."""
        while self.evaluations and (wait or self.evaluations[0].ready()):
            pending = self.evaluations.pop(0)
            metrics = pending.finish()
            self.log.write(pending.step, metrics)
            shown = ", ".join(f"{k.removeprefix(m.EVAL)} {v:.4f}" for k, v in metrics.items())
            logger.info("step %d: %s", pending.step, shown)

    def steer_acceptance(self, batch: list[Sample]) -> None:
        """target_acceptance: the K of the next rollouts, from this batch's acceptance (else nothing)."""
        if self.steer is not None:
            self.rollout.set_top_k(self.steer.update(batch))

    def checkpoint(self) -> Path:
        state = {"data": self.feeder.state(), "dropped": self.buffer.dropped}
        if self.steer is not None:
            state["top_k"] = self.steer.state()
        path = self.learner.save(self.out / "checkpoints", state)
        rotate_checkpoints(self.out / "checkpoints", self.cfg.save_total_limit)
        return path

    def log_step(self, stats: dict, batch: list[Sample], timer: PhaseTimer) -> None:
        received = self.buffer.received_tokens - self.tokens_seen
        self.tokens_seen = self.buffer.received_tokens
        record = m.step_record(
            stats,
            batch,
            step=self.learner.step,
            phases=timer.end_step(),
            busy_fraction=timer.busy_fraction,
            received_tokens=received,
            position=self.feeder.position,
            dropped=self.buffer.dropped,
            lengths=self.buffer.lengths(),
            top_k=self.steer.top_k if self.steer else None,
            max_new_tokens=self.cfg.max_new_tokens,
        )
        self.log.write(self.learner.step, record)

    def summary(self, timer: PhaseTimer, pushes: list[float]) -> dict:
        return {
            "steps": self.learner.step,
            "dropped_stale_samples": self.buffer.dropped,
            "trainer_busy_fraction": round(timer.busy_fraction, 3),
            "seconds_by_phase": {phase: round(s, 1) for phase, s in timer.total.items()},
            "mean_weight_push_s": round(sum(pushes) / len(pushes), 3) if pushes else None,
            "weight_transport": self.rollout.transport.name,
            **self.rollout.transport.counts(),
            "final_checkpoint": str(checkpoint_dir(self.out / "checkpoints", self.learner.step)),
        }

    def shutdown(self) -> None:
        self.rollout.stop()
        self.learner.shutdown()


def setup(
    cfg: RunConfig,
    out: Path,
    student_path: Path,
    checkpoint: Path | None,
    urls: list[str],
    info: ServerInfo,
    prompts: tuple,
    trackers=None,
) -> Run:
    """Build every component and start the actors (resumed weights are pushed before their first round).
    `prompts` is what trainer.data.prompts.load_prompts returned (loaded before anything started);
    `trackers` (trainer.outputs.tracking.Trackers) get every metrics record too."""
    from ray.util.queue import Queue

    from trainer.evaluate import Evaluator
    from trainer.learner.group import make_learner
    from trainer.methods import lookup
    from trainer.outputs.metrics import MetricsLog
    from trainer.rollout.acceptance_target import AcceptanceTarget
    from trainer.rollout.buffer import SampleBuffer
    from trainer.rollout.feeder import PromptFeeder
    from trainer.rollout.group import RolloutGroup
    from trainer.rollout.supervisor import RolloutSupervisor

    method = lookup(cfg.method)(cfg)
    learner = make_learner(cfg, student_path, checkpoint)
    state = learner.load_state(checkpoint) if checkpoint else {}
    train_prompts, eval_examples, eval_prompts = prompts
    feeder = PromptFeeder(train_prompts, cfg.seed, state.get("data"))
    steer = None
    if cfg.target_acceptance is not None:  # set before the actors start: they get the method as it is
        steer = AcceptanceTarget(cfg.target_acceptance, cfg.top_k, info.max_logprobs)
        steer.load_state(state.get("top_k"))
        method.set_top_k(steer.top_k)
    prompt_queue, sample_queue = Queue(), Queue()
    # Actors start from the base student (a path every node has); a resumed run's weights follow.
    rollout = RolloutGroup(
        cfg, str(student_path), urls, info.eos_token_ids, method, (prompt_queue, sample_queue)
    )
    release = lambda s: feeder.done(s.position)  # noqa: E731
    due = feeder.due if cfg.batch_order == "stream" else None
    buffer = SampleBuffer(sample_queue, cfg.max_staleness, release, due, state.get("dropped", 0))
    supervisor = RolloutSupervisor(cfg, feeder, prompt_queue, rollout, buffer)
    evaluator = Evaluator(lambda: rollout.actors[0], urls, learner, eval_examples, eval_prompts, cfg, info)
    log = MetricsLog(out / "metrics.jsonl", sinks=[trackers] if trackers else [])
    run = Run(cfg, out, learner, feeder, rollout, buffer, supervisor, evaluator, log, steer)
    if checkpoint:
        if dropped := run.log.keep_until(learner.step):
            logger.info("resuming at step %d: dropped %d later metrics lines", learner.step, dropped)
        run.push_weights()
    rollout.start()
    return run


def train(run: Run) -> dict:
    """The loop: gather a fresh batch, step, push weights, log, evaluate, checkpoint. Returns a summary."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from trainer.outputs.timing import PhaseTimer

    cfg, learner, timer = run.cfg, run.learner, PhaseTimer()
    need = cfg.batch_size * cfg.grad_accum
    pushes = []
    if cfg.eval_at_start and learner.step == 0:
        run.evaluate()
        timer.lap("eval")
    bar = tqdm(total=cfg.steps, initial=learner.step, desc="train", unit="step")
    with logging_redirect_tqdm(), bar:
        while learner.step < cfg.steps:
            batch = run.buffer.take(need, learner.step, while_waiting=run.feed_rollouts)
            timer.lap("wait")
            stats = learner.train_step(batch)
            run.feeder.done(*(s.position for s in batch))
            run.steer_acceptance(batch)
            timer.lap("train")
            if learner.step % cfg.sync_every == 0:
                run.push_weights()
                pushes.append(timer.lap("push"))
            run.log_step(stats, batch, timer)
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.3f}", busy=f"{timer.busy_fraction:.2f}")
            run.collect_evaluations(wait=False)  # those whose rollouts have ended
            timer.lap("log")
            evaluate = learner.step % cfg.eval_every == 0 or learner.step == cfg.steps
            checkpoint = learner.step % cfg.checkpoint_every == 0 or learner.step == cfg.steps
            if evaluate or checkpoint:
                if evaluate:
                    run.evaluate()
                if checkpoint:  # every evaluation before a checkpoint is in the log a resume keeps
                    run.collect_evaluations(wait=True)
                timer.lap("eval")
            if checkpoint:
                run.checkpoint()
                timer.lap("checkpoint")
    return run.summary(timer, pushes)
