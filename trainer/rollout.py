"""Rollout actors: each hosts a vLLM student engine and turns prompts into training samples.

- `RolloutWorker`: the body of one Ray actor. It keeps up to `max_inflight_per_actor` sequences in flight,
  pulled from the shared prompt queue (pull-based: a faster actor takes more). One round groups them by
  method and runs each group's step (`trainer.methods`) concurrently; finished sequences go on the sample
  queue tagged with the weight version that started them. New weights arrive between rounds: the actor
  awaits a push's buckets (an async actor never blocks its event loop in `ray.get`), then loads them in one
  synchronous engine call, during which nothing else runs. With
  `overlap_groups` > 1 the sequences are split into that many lanes, each running its own rounds: while
  one lane waits for the teacher, another drafts on the student engine.
- `RolloutGroup`: the driver's handle on all actors: start them, push weights, stop them, and replace a
  dead one (up to `max_actor_restarts`), which starts from the current weights.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import defaultdict

import numpy as np
import ray

from trainer.config import RunConfig
from trainer.methods import METHODS, RolloutEnv, RolloutMethod, Sequence, Speculative
from trainer.types import Prompt
from trainer.weights import iter_tensors, unpack

logger = logging.getLogger(__name__)


async def _fetched(parts: list) -> list[dict]:
    """A push's buckets: object refs awaited (views of the object store, not copies), packed dicts as is."""

    async def one(part):
        return await part if isinstance(part, ray.ObjectRef) else part

    return list(await asyncio.gather(*map(one, parts)))


def _totals(seqs: list[Sequence]) -> dict[str, int]:
    return {
        "tokens": sum(len(s.response) for s in seqs),
        "drafted": sum(s.drafted for s in seqs),
        "accepted": sum(s.accepted for s in seqs),
    }


class RolloutWorker:
    """Body of the Ray actor (see `rollout_actor`); a plain class so it reads and tests on its own."""

    def __init__(
        self,
        cfg: RunConfig,
        student_path: str,
        teacher_urls: list[str],
        queues,
        actor: int,
        eos_ids: list[int],
        method: RolloutMethod | None = None,
        weights_version: int = 0,
        weights: dict | None = None,
    ):
        from trainer.logs import configure
        from trainer.student_engine import StudentEngine

        configure(cfg.log_level)
        # The driver hands over the method object, so methods registered outside trainer/ run too.
        self.cfg, self.actor, self.method = cfg, actor, method or METHODS[cfg.method](cfg)
        self.prompts, self.samples = queues
        engine = StudentEngine(student_path, cfg, cfg.max_prompt_len + cfg.max_new_tokens + 1)
        client = cfg.teacher_client(teacher_urls)
        self.env = RolloutEnv(
            cfg, engine, client, np.random.default_rng([cfg.seed, actor]), frozenset(eos_ids)
        )
        self.version = 0  # the training step of the loaded weights
        self.pending = (weights_version, weights) if weights else None  # a replacement actor's first weights
        self.lanes: list[list[Sequence]] = [[] for _ in range(cfg.overlap_groups)]
        self._refilling = asyncio.Lock()  # prompts taken from the queue are in a lane when it is free
        self._loading = asyncio.Lock()  # one weight load at a time, in the order pushes arrive
        self.stopping = False
        self.stats = {"samples": 0, "rounds": 0, "drafted": 0, "accepted": 0, "tokens": 0, "weight_loads": 0}

    # --- control -----------------------------------------------------------------------------------

    async def update_weights(self, version: int, parts: list | dict, apply_now: bool = False) -> float:
        """Weights as `trainer.weights` buckets (packed dicts or object refs of them, or one packed dict);
        they take effect before the next round (never inside one), or now; returns the load time if now."""
        self.pending = (version, parts)
        return await self._apply_pending_weights() if apply_now else 0.0

    async def _apply_pending_weights(self) -> float:
        """Load the pending weights, if any (the time taken: fetching and loading). Other coroutines run
        while the buckets are fetched; the load itself is one engine call, which blocks the event loop, so
        no lane's round is at an engine call meanwhile."""
        async with self._loading:
            if self.pending is None:
                return 0.0
            start = time.perf_counter()
            (version, parts), self.pending = self.pending, None
            parts = await _fetched(parts if isinstance(parts, list) else [parts])
            first = parts[0]
            if "adapter_config" in first:  # lora_transport=adapter
                self.env.student.load_adapter(version, unpack(first), first["adapter_config"])
            else:
                self.env.student.load_weights(iter_tensors(parts), partial=first.get("partial", False))
            self.version = version
            self.stats["weight_loads"] += 1
            elapsed = time.perf_counter() - start
        logger.debug("actor %d: loaded weights of step %d in %.3f s", self.actor, version, elapsed)
        return elapsed

    def stop(self) -> None:
        self.stopping = True

    # --- the loop -----------------------------------------------------------------------------------

    def _start(self, prompt: Prompt) -> Sequence:
        method = self.method.route(self.env.rng)
        if method.needs_reference and prompt.reference_ids is None:
            raise ValueError(f"prompt {prompt.index} has no reference, which method {method.name} needs")
        return Sequence(prompt, method, self.version)

    @property
    def active(self) -> list[Sequence]:
        return [s for lane in self.lanes for s in lane]

    def _capacity(self, lane: int) -> int:
        """The lane's share of max_inflight_per_actor (the first lanes take the remainder)."""
        share, extra = divmod(self.cfg.max_inflight_per_actor, len(self.lanes))
        return share + (lane < extra)

    async def _refill(self, lane: int) -> None:
        """Pull prompts from the shared queue up to the lane's capacity."""
        from ray.util.queue import Empty

        room = self._capacity(lane) - len(self.lanes[lane])
        if room <= 0:
            return
        async with self._refilling:
            available = await self.prompts.actor.qsize.remote()
            if available:
                with contextlib.suppress(Empty):  # the driver emptied the queue meanwhile
                    new = await self.prompts.actor.get_nowait_batch.remote(min(room, available))
                    self.lanes[lane] += [self._start(p) for p in new]

    async def run(self) -> dict:
        """Produce samples until stopped (every lane's loop); returns the actor's counters."""
        await asyncio.gather(*(self._run_lane(i) for i in range(len(self.lanes))))
        self.env.student.close()
        return self.stats

    async def _run_lane(self, lane: int) -> None:
        seqs = self.lanes[lane]
        while not self.stopping:
            await self._apply_pending_weights()  # between this lane's rounds
            await self._refill(lane)
            if not seqs:
                await asyncio.sleep(0.05)
                continue
            await self.round(seqs)
            finished = [s for s in seqs if s.done]
            if finished:  # still in the lane until queued, so `held_positions` never misses them
                await self.samples.actor.put_nowait_batch.remote([s.sample(self.actor) for s in finished])
                seqs[:] = [s for s in seqs if not s.done]
                self.stats["samples"] += len(finished)

    async def round(self, seqs: list[Sequence]) -> None:
        """Advance these sequences by one step of their methods, the methods' steps concurrently."""
        groups: dict[RolloutMethod, list[Sequence]] = defaultdict(list)
        for s in seqs:
            groups[s.method].append(s)
        before = _totals(seqs)
        await asyncio.gather(*(method.step(group, self.env) for method, group in groups.items()))
        self.stats["rounds"] += 1
        for key, value in _totals(seqs).items():
            self.stats[key] += value - before[key]

    # --- evaluation support -------------------------------------------------------------------------

    async def generate_greedy(self, prompts: list[list[int]], max_tokens: int) -> tuple[int, list[list[int]]]:
        """The student's greedy responses with its current weights (applied first), and their version."""
        await self._apply_pending_weights()
        return self.version, self.env.student.greedy(prompts, max_tokens)

    async def skd_acceptance(self, prompts: list[list[int]]) -> tuple[int, float]:
        """SKD rollouts of these prompts with the current weights, kept out of training and of the stats:
        the fraction of draft tokens the teacher accepted (the paper's acceptance rate), and the version."""
        await self._apply_pending_weights()
        skd = Speculative(self.cfg.model_copy(update={"adaptive_gamma": False}))  # the rate at gamma
        seqs = [Sequence(Prompt(index=-1, prompt_ids=p), skd, self.version) for p in prompts]
        while active := [s for s in seqs if not s.done]:
            await skd.step(active, self.env)
        totals = _totals(seqs)
        return self.version, totals["accepted"] / max(totals["drafted"], 1)

    async def held_positions(self) -> list[int]:
        """Stream positions of the prompts this actor holds (taken from the queue, not yet queued back as
        samples); a refill in progress completes first."""
        async with self._refilling:
            return [s.prompt.position for s in self.active if s.prompt.position is not None]

    def get_stats(self) -> dict:
        return {**self.stats, "version": self.version, "active": len(self.active)}


def rollout_actor(cfg: RunConfig, worker: type[RolloutWorker] = RolloutWorker):
    """The Ray actor class (of `worker`, `RolloutWorker` or a subclass of it) with the resources and
    environment a student engine needs."""
    import ray

    from trainer.logs import actor_env

    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", **actor_env(cfg.log_level)}
    if "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
        env["VLLM_CPU_OMP_THREADS_BIND"] = os.environ["VLLM_CPU_OMP_THREADS_BIND"]
    return ray.remote(worker).options(
        num_cpus=cfg.actor_num_cpus,
        num_gpus=cfg.actor_num_gpus,
        max_concurrency=4,
        runtime_env={"env_vars": env},
    )


class RolloutGroup:
    """The driver's handle on the rollout actors."""

    def __init__(self, cfg: RunConfig, student_path: str, urls: list[str], eos_ids, method, queues):
        import torch

        self.engine_dtype = getattr(torch, cfg.student_dtype, torch.float32)
        actor_cls = rollout_actor(cfg)
        self._new = lambda i, **weights: actor_cls.remote(
            cfg, student_path, urls, queues, i, eos_ids, method, **weights
        )
        self.actors = [self._new(i) for i in range(cfg.num_rollout_actors)]
        self.runs: list = []
        self.weights: tuple[int, list] | None = None  # the last push: (version, bucket object refs)
        self.restarts_left = cfg.max_actor_restarts

    def start(self) -> None:
        self.runs = [a.run.remote() for a in self.actors]

    def push_weights(self, version: int, buckets) -> None:
        """Weight buckets (`trainer.weights`: packed dicts, each put into the object store as it comes, or
        refs already there), shared zero-copy by every actor; they load them between rounds (not awaited
        here, so the trainer never waits for an actor's engine call in progress)."""
        import ray

        refs = [b if isinstance(b, ray.ObjectRef) else ray.put(b) for b in buckets]
        self.weights = (version, refs)
        for a in self.actors:
            a.update_weights.remote(version, refs)

    def dead(self) -> list[int]:
        """Actors whose loop ended because the actor died; any other end (an error) is raised here."""
        import ray
        from ray.exceptions import RayActorError

        ended = ray.wait(self.runs, num_returns=len(self.runs), timeout=0)[0] if self.runs else []
        dead = []
        for ref in ended:
            try:
                ray.get(ref)  # an error of the actor's own (e.g. TeacherUnavailable) is raised here
            except RayActorError:  # died, or unreachable: its node is gone
                dead.append(self.runs.index(ref))
                continue
            raise RuntimeError("a rollout actor stopped unexpectedly")
        return dead

    def held_positions(self, skip: list[int]) -> set[int]:
        """Stream positions held by the live actors (all but `skip`)."""
        import ray

        alive = [a for i, a in enumerate(self.actors) if i not in skip]
        return {pos for held in ray.get([a.held_positions.remote() for a in alive]) for pos in held}

    def replace(self, i: int) -> None:
        """A new actor in place of dead actor `i`, loaded with the last pushed weights before its first
        round; a run that has used up `max_actor_restarts` stops instead."""
        import ray

        if self.restarts_left <= 0:
            raise RuntimeError(f"rollout actor {i} died and max_actor_restarts is used up")
        self.restarts_left -= 1
        ray.kill(self.actors[i], no_restart=True)
        version, refs = self.weights if self.weights else (0, None)
        self.actors[i] = self._new(i, weights_version=version, weights=refs)
        self.runs[i] = self.actors[i].run.remote()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Let the actors finish their round and exit; kill any that do not."""
        import ray

        with contextlib.suppress(Exception):
            ray.get([a.stop.remote() for a in self.actors], timeout=timeout_s)
            ray.get(self.runs, timeout=timeout_s)
        for a in self.actors:
            ray.kill(a)
