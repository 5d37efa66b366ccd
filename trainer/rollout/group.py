"""The driver's handle on the rollout actors (trainer.rollout.worker): start them, push weights (through a
weight transport, trainer.weights.transport), stop them, and replace a dead one (up to
`max_actor_restarts`), which starts from the last pushed weights."""

from __future__ import annotations

import contextlib

from shared.engine_settings import engine_dtype
from trainer.config import RunConfig
from trainer.methods import Method
from trainer.rollout.worker import rollout_actor
from trainer.weights.choice import make_transport
from trainer.weights.transport import WeightTransport


class RolloutGroup:
    """The driver's handle on the rollout actors."""

    def __init__(
        self,
        cfg: RunConfig,
        student_path: str,
        urls: list[str],
        eos_ids: list[int],
        method: Method,
        queues: tuple,
        transport: WeightTransport | None = None,
    ):
        import torch

        dtype = engine_dtype(cfg.student_dtype, gpu=cfg.actor_num_gpus > 0)  # as the actors' engines do
        self.engine_dtype = getattr(torch, dtype, torch.float32)
        self.transport = transport or make_transport(cfg)
        actor_cls = rollout_actor(cfg)
        self.method = method  # a replacement actor gets it as it is then (its K included)
        self._new = lambda i, **weights: actor_cls.remote(
            cfg, student_path, urls, queues, i, eos_ids, method, transport=self.transport, **weights
        )
        self.actors = [self._new(i) for i in range(cfg.num_rollout_actors)]
        self.runs: list = []
        self.restarts_left = cfg.max_actor_restarts

    def start(self) -> None:
        self.runs = [a.run.remote() for a in self.actors]

    def push_weights(self, version: int, buckets) -> None:
        """The learner's weight buckets to every actor through the transport; they load them between
        rounds (not awaited here, so the trainer never waits for an actor's engine call in progress)."""
        self.transport.send(version, buckets, self.actors)

    def set_top_k(self, k: int) -> None:
        """target_acceptance: every actor's method takes K for its next rounds (not awaited)."""
        self.method.set_top_k(k)
        for a in self.actors:
            a.set_top_k.remote(k)

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
        version, weights = self.transport.latest() or (0, None)
        self.actors[i] = self._new(i, weights_version=version, weights=weights)
        self.runs[i] = self.actors[i].run.remote()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Let the actors finish their round and exit; kill any that do not."""
        import ray

        with contextlib.suppress(Exception):
            ray.get([a.stop.remote() for a in self.actors], timeout=timeout_s)
            ray.get(self.runs, timeout=timeout_s)
        self.transport.close()
        for a in self.actors:
            ray.kill(a)
