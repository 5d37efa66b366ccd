"""The run's metrics: every name a record carries (one place: the loop, the evaluator, the report, the
plots and the trackers read them from here) and `metrics.jsonl` (one JSON object per event, flushed as
written, and the same record to each tracker).

A step record (`step_record`) holds `train/*` (the learner's stats, the batch's acceptance and samples per
method), `perf/*` (throughput, where the step's wall time went, staleness) and `data/*` (stream positions:
exact resume is checked with them); an evaluation record holds `eval/*` (trainer.evaluate).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

from trainer.records import Sample, batch_acceptance

TRAIN, EVAL, PERF, DATA = "train/", "eval/", "perf/", "data/"

LOSS = "train/loss"  # one of the learner's stats, each logged as train/<stat>
BATCH_ACCEPTANCE = "train/batch_acceptance"  # accepted / drafted tokens of the step's batch
TOP_K = "train/top_k"  # target_acceptance: the K the rollouts get after this step
SAMPLES = "train/samples_{method}"  # the batch's samples made by each method

ROLLOUT_TOKENS_PER_S = "perf/rollout_tokens_per_s"
TRAIN_TOKENS_PER_S = "perf/train_tokens_per_s"
BUSY_FRACTION = "perf/busy_fraction"  # of the wall time so far, the share not spent waiting for samples
STEP_BUSY_S = "perf/step_busy_s"
STEP_IDLE_S = "perf/step_idle_s"
PHASE_S = "perf/time_{phase}_s"  # wall time per phase since the previous record
MEAN_STALENESS = "perf/mean_staleness"
DROPPED_STALE_TOTAL = "perf/dropped_stale_total"
WEIGHT_PUSH_S = "perf/weight_push_s"

TRAINED_POSITIONS = "data/trained_positions"  # stream positions trained at this step
TRAINED_LENGTHS = "data/trained_lengths"  # response lengths of the batch
GENERATED_LENGTHS = "data/generated_lengths"  # response lengths of the samples received since the last step
DROPPED_LENGTHS = "data/dropped_lengths"  # response lengths of the stale samples dropped since the last step
RESPONSE_TOKENS = "train/response_tokens"  # the batch's mean response length
END_TEACHER_PROB = "train/end_teacher_prob"  # the teacher's probability of the token ending a short response
POSITION = "data/position"  # the feeder's next stream position

EVAL_ACCEPTANCE = "eval/acceptance"  # SKD rollouts on held-out prompts: accepted / drafted
EVAL_GREEDY_ACCEPTANCE = "eval/greedy_acceptance"
EVAL_KL = "eval/kl"
EVAL_RESPONSE_TOKENS = "eval/response_tokens"
EVAL_TEACHER_RESPONSE_TOKENS = "eval/teacher_response_tokens"  # the teacher's greedy responses, same prompts
EVAL_KL_ON_TEACHER = "eval/kl_on_teacher_responses"  # the student's KL along the teacher's greedy responses
EVAL_REPEATED_NGRAMS = "eval/repeated_4grams"  # share of 4-grams repeated within the student's responses
EVAL_TEACHER_REPEATED_NGRAMS = "eval/teacher_repeated_4grams"  # the same of the teacher's responses
EVAL_WEIGHT_VERSION = "eval/weight_version"
EVAL_TASK = "eval/{name}"  # each task metric (trainer.data.tasks)
EVAL_TIME = "perf/eval_{part}_s"  # the evaluation's parts (trainer.evaluate): the loop's time in them
EVAL_ROLLOUTS_S = "perf/held_out_rollouts_s"  # an evaluation's start to its acceptance rollouts collected


def step_record(
    stats: dict[str, float],
    batch: list[Sample],
    *,
    step: int,
    phases: dict[str, float],
    busy_fraction: float,
    received_tokens: int,
    position: int,
    dropped: int,
    lengths: tuple[list[int], list[int]] = ([], []),
    top_k: int | None = None,
    max_new_tokens: int | None = None,
) -> dict:
    """The record of optimizer step `step`: `phases` is the wall time per phase since the previous record,
    `received_tokens` the rollout tokens received in that time, `lengths` the response lengths of the samples
    received and dropped in that time, `top_k` the K target_acceptance set; with `max_new_tokens`, the
    mean teacher probability of the last token of the responses that ended before it (an end the teacher
    would not make, accepted because it is in the teacher's top-K, shows as a low value)."""
    elapsed = sum(phases.values())
    trained = [len(s.response_ids) for s in batch]
    return {
        **{f"{TRAIN}{k}": v for k, v in stats.items()},
        TRAINED_POSITIONS: sorted(s.position for s in batch),
        TRAINED_LENGTHS: trained,
        GENERATED_LENGTHS: lengths[0],
        DROPPED_LENGTHS: lengths[1],
        RESPONSE_TOKENS: sum(trained) / len(trained),
        BATCH_ACCEPTANCE: batch_acceptance(batch),
        **{SAMPLES.format(method=method): n for method, n in Counter(s.method for s in batch).items()},
        ROLLOUT_TOKENS_PER_S: received_tokens / max(elapsed, 1e-9),
        TRAIN_TOKENS_PER_S: stats["tokens"] / max(phases.get("train", 0.0), 1e-9),
        BUSY_FRACTION: busy_fraction,
        STEP_BUSY_S: elapsed - phases.get("wait", 0.0),
        STEP_IDLE_S: phases.get("wait", 0.0),
        **{PHASE_S.format(phase=phase): seconds for phase, seconds in phases.items()},
        MEAN_STALENESS: sum(step - 1 - s.weight_version for s in batch) / len(batch),
        DROPPED_STALE_TOTAL: dropped,
        WEIGHT_PUSH_S: phases.get("push"),
        POSITION: position,
        **({TOP_K: top_k} if top_k is not None else {}),
        **({END_TEACHER_PROB: end} if (end := end_teacher_prob(batch, max_new_tokens)) is not None else {}),
    }


def end_teacher_prob(batch: list[Sample], max_new_tokens: int | None) -> float | None:
    """Mean over the KD samples that ended before `max_new_tokens` of the teacher's probability of their
    last token (0 where it is outside the teacher's top-k); None if there are none."""
    probs = []
    for s in batch:
        if max_new_tokens is None or not s.teacher_topk_ids or len(s.response_ids) >= max_new_tokens:
            continue
        last = dict(zip(s.teacher_topk_ids[-1], s.teacher_topk_logprobs[-1]))
        probs.append(math.exp(last[s.response_ids[-1]]) if s.response_ids[-1] in last else 0.0)
    return sum(probs) / len(probs) if probs else None


def evaluations(records: list[dict]) -> list[dict]:
    """The evaluation records of a run, in order."""
    return [r for r in records if EVAL_ACCEPTANCE in r]


def last_evaluation(records: list[dict]) -> dict[str, float]:
    """The newest held-out metrics (`eval/*`) of a run."""
    return {k: v for r in records if EVAL_KL in r for k, v in r.items() if k.startswith(EVAL)}


class MetricsLog:
    """metrics.jsonl, and the same records to each sink (experiment trackers: `sink.log(step, values)`)."""

    def __init__(self, path: Path, sinks: list | None = None):
        self.path = path
        self.sinks = sinks or []
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, step: int, values: dict) -> None:
        record = {"step": step, "time": time.time(), **values}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for sink in self.sinks:
            sink.log(step, values)

    def keep_until(self, step: int) -> int:
        """Drop the records after `step`, and a line cut short by a kill: a run resumed from the checkpoint
        of `step` writes those steps again. Rewritten atomically; returns how many lines were dropped."""
        if not self.path.exists():
            return 0
        lines = self.path.read_text().splitlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("step", 0) <= step:
                kept.append(line)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        tmp.replace(self.path)
        return len(lines) - len(kept)

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
