"""A rollout actor: it hosts a vLLM student engine and turns prompts into training samples.

- `RolloutWorker`: the body of one Ray actor. It keeps up to `max_inflight_per_actor` sequences in flight,
  pulled from the shared prompt queue (pull-based: a faster actor takes more). A sequence starts once the
  loaded weights are at least its prompt's `min_version` (trainer.rollout.admission). One round groups the
  started ones by method and runs each group's step (`trainer.methods`) concurrently; finished sequences go
  on the sample queue tagged with the weight version that started them. New weights arrive between rounds:
  the actor awaits a push's buckets (an async actor never blocks its event loop in `ray.get`), then loads
  them in one synchronous engine call, during which nothing else runs. With `overlap_groups` > 1 the
  sequences are split into that many overlap groups, each running its own rounds: while one group waits for
  the teacher, another drafts on the student engine.
- `rollout_actor`: the Ray actor class, with the resources and environment a student engine needs.

The driver's handle on all actors is trainer.rollout.group.RolloutGroup.
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

from trainer.config import RunConfig, TeacherConfig
from trainer.methods import METHODS, InFlight, Method, RolloutEnv, Speculative
from trainer.records import Prompt
from trainer.weights.buckets import iter_tensors, unpack
from trainer.weights.transport import ObjectStoreTransport, WeightTransport

logger = logging.getLogger(__name__)


def _totals(seqs: list[InFlight]) -> dict[str, int]:
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
        method: Method | None = None,
        weights_version: int = 0,
        weights: dict | None = None,
        transport: WeightTransport | None = None,
    ):
        from trainer.logs import configure
        from trainer.rollout.engine import StudentEngine
        from trainer.teacher.service import client as teacher_client

        configure(cfg.log_level)
        # The driver hands over the method object, so methods registered outside trainer/ run too.
        self.cfg, self.actor, self.method = cfg, actor, method or METHODS[cfg.method](cfg)
        self.prompts, self.samples = queues
        engine = StudentEngine(student_path, cfg, cfg.max_prompt_len + cfg.max_new_tokens + 1)
        client = teacher_client(cfg.part(TeacherConfig), teacher_urls)
        self.env = RolloutEnv(
            cfg, engine, client, np.random.default_rng([cfg.seed, actor]), frozenset(eos_ids)
        )
        self.version = 0  # the training step of the loaded weights
        self.transport = transport or ObjectStoreTransport()
        self.pending = (weights_version, weights) if weights else None  # a replacement actor's first weights
        self.received: tuple[int, list] | None = None  # taken from the transport, not loaded yet
        self._pins = 0  # evaluations reading the loaded weights: loads wait until they finish
        self.groups: list[list[InFlight]] = [[] for _ in range(cfg.overlap_groups)]
        self._refilling = asyncio.Lock()  # prompts taken from the queue are in a group when it is free
        self._loading = asyncio.Lock()  # one weight load at a time, in the order pushes arrive
        self.stopping = False
        self.stats = {"samples": 0, "rounds": 0, "drafted": 0, "accepted": 0, "tokens": 0, "weight_loads": 0}

    # --- control -----------------------------------------------------------------------------------

    async def update_weights(self, version: int, parts: list | dict, apply_now: bool = False) -> float:
        """A push's weights as its transport handed them (trainer.weights.transport); they take effect
        before the next round (never inside one), or now; returns the load time if now (0 while an
        evaluation pins the loaded weights). Ray does not order an async actor's calls: a push older than
        one already here is dropped."""
        if version < self.version or any(
            held is not None and version < held[0] for held in (self.pending, self.received)
        ):
            return 0.0
        self.pending = (version, parts)
        return await self._apply_pending_weights() if apply_now else 0.0

    async def _apply_pending_weights(self) -> float:
        """Take the pending push from its transport and load it (the time taken: fetching and loading),
        unless an evaluation pins the loaded weights: then the push waits, received, and the newest one
        loads once the evaluation ends. Other coroutines run while the buckets are fetched; the load itself
        is one engine call, which blocks the event loop, so no group's round is at an engine call then."""
        async with self._loading:
            start = time.perf_counter()
            if self.pending is not None:  # a collective push must be received while its broadcast runs
                (version, parts), self.pending = self.pending, None
                parts = await self.transport.receive(parts)
                if parts is not None:  # None: a collective push that failed here; another way brings it
                    self.received = (version, parts)
            if self.received is None or self._pins:
                return 0.0
            (version, parts), self.received = self.received, None
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

    def set_top_k(self, k: int) -> None:
        """target_acceptance: the K for the method's next verification rounds (sequences in flight too)."""
        self.method.set_top_k(k)

    def stop(self) -> None:
        self.stopping = True

    # --- the loop -----------------------------------------------------------------------------------

    def _start(self, prompt: Prompt) -> InFlight:
        method = self.method.route(self.env.rng)
        method.check_reference(prompt)
        return InFlight(prompt, method)

    def _ready(self, seqs: list[InFlight]) -> list[InFlight]:
        """The sequences that may take a round: those started, and those whose prompt's `min_version` the
        loaded weights meet, which start now, on these weights (admission: trained within the staleness
        bound of them). The others wait for newer weights."""
        for s in seqs:
            if s.version is None and s.prompt.min_version <= self.version:
                s.version = self.version
        return [s for s in seqs if s.version is not None]

    @property
    def active(self) -> list[InFlight]:
        return [s for group in self.groups for s in group]

    def _capacity(self, group: int) -> int:
        """The overlap group's share of max_inflight_per_actor (the first groups take the remainder)."""
        share, extra = divmod(self.cfg.max_inflight_per_actor, len(self.groups))
        return share + (group < extra)

    async def _refill(self, group: int) -> None:
        """Pull prompts from the shared queue up to the overlap group's capacity."""
        from ray.util.queue import Empty

        room = self._capacity(group) - len(self.groups[group])
        if room <= 0:
            return
        async with self._refilling:
            available = await self.prompts.actor.qsize.remote()
            if available:
                with contextlib.suppress(Empty):  # the driver emptied the queue meanwhile
                    new = await self.prompts.actor.get_nowait_batch.remote(min(room, available))
                    self.groups[group] += [self._start(p) for p in new]

    async def run(self) -> dict:
        """Produce samples until stopped (every overlap group's loop); returns the actor's counters."""
        await asyncio.gather(*(self._run_group(i) for i in range(len(self.groups))))
        self.env.student.close()
        return self.stats

    async def _run_group(self, group: int) -> None:
        seqs = self.groups[group]
        while not self.stopping:
            await self._apply_pending_weights()  # between this group's rounds
            await self._refill(group)
            ready = self._ready(seqs)
            if not ready:
                await asyncio.sleep(0.05)
                continue
            await self.round(ready)
            finished = [s for s in seqs if s.done]
            if finished:  # still in the group until queued, so `held_positions` never misses them
                await self.samples.actor.put_nowait_batch.remote([s.sample(self.actor) for s in finished])
                seqs[:] = [s for s in seqs if not s.done]
                self.stats["samples"] += len(finished)

    async def round(self, seqs: list[InFlight]) -> None:
        """Advance these sequences by one step of their methods, the methods' steps concurrently."""
        by_method: dict[Method, list[InFlight]] = defaultdict(list)
        for s in seqs:
            by_method[s.method].append(s)
        before = _totals(seqs)
        await asyncio.gather(*(method.step(group, self.env) for method, group in by_method.items()))
        self.stats["rounds"] += 1
        for key, value in _totals(seqs).items():
            self.stats[key] += value - before[key]

    # --- evaluation support -------------------------------------------------------------------------

    async def _weights_of(self, version: int, timeout_s: float = 600.0) -> None:
        """Apply pending weights; with `version`, until weights of that step (or newer) are loaded: Ray
        does not order an async actor's calls, so the push's call may come after this one."""
        await self._apply_pending_weights()
        deadline = time.monotonic() + timeout_s
        while self.version < version:
            if time.monotonic() > deadline:
                raise TimeoutError(f"actor {self.actor}: weights of step {version} never arrived")
            await asyncio.sleep(0.01)
            await self._apply_pending_weights()

    async def generate_greedy(
        self, prompts: list[list[int]], max_tokens: int, min_version: int = 0
    ) -> tuple[int, list[list[int]]]:
        """The student's greedy responses with its current weights (applied first; at least those of step
        `min_version`), and their version."""
        await self._weights_of(min_version)
        return self.version, self.env.student.greedy(prompts, max_tokens)

    async def skd_acceptance(self, prompts: list[list[int]], min_version: int = 0) -> tuple[int, float]:
        """SKD rollouts of these prompts with the current weights, kept out of training and of the stats:
        the fraction of draft tokens the teacher accepted (the paper's acceptance rate), and the version."""
        await self._weights_of(min_version)
        async with self._loading:  # no load in progress: the weights stay these until the rollouts end
            self._pins += 1
            version = self.version
        try:
            skd = Speculative(self.cfg.model_copy(update={"adaptive_gamma": False}))  # the rate at gamma
            seqs = [InFlight(Prompt(index=-1, prompt_ids=p), skd, version) for p in prompts]
            while active := [s for s in seqs if not s.done]:
                await skd.step(active, self.env)
        finally:
            self._pins -= 1
        totals = _totals(seqs)
        return version, totals["accepted"] / max(totals["drafted"], 1)

    async def held_positions(self) -> list[int]:
        """Stream positions of the prompts this actor holds (taken from the queue, not yet queued back as
        samples); a refill in progress completes first."""
        async with self._refilling:
            return [s.prompt.position for s in self.active if s.prompt.position is not None]

    def get_stats(self) -> dict:
        return {**self.stats, "version": self.version, "active": len(self.active), "pinned": self._pins}


def rollout_actor(cfg: RunConfig, worker: type[RolloutWorker] = RolloutWorker):
    """The Ray actor class (of `worker`, `RolloutWorker` or a subclass of it) with the resources and
    environment a student engine needs."""

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
