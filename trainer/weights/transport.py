"""How a push's weights travel from the learner to the rollout actors.

A transport has two sides: the driver's `send` hands one push (its version and weight buckets, as the
learner exports them: trainer.weights.buckets) to every actor without waiting for their loads, and keeps
the last push for an actor that starts later; an actor's `receive` turns what it was handed into the
packed buckets its engine loads (between rounds, never inside one).

- ObjectStoreTransport   each bucket put into Ray's object store once, shared zero-copy by the actors of
                         a node and fetched by each (the default, any cluster)

- CollectiveTransport    (trainer.weights.collective) the learner's rank 0 and the engines in one process
                         group, each bucket broadcast into them: gloo on CPU, NCCL on GPUs

trainer.weights.choice.make_transport picks one from `weight_transport`. Callers use only the protocol:
its counters (`counts`) and lifecycle (`close`) included, no-ops where a transport has nothing to count or
release.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol


class WeightTransport(Protocol):
    name: str  # as `weight_transport` names it: reported in the run summary

    def send(self, version: int, buckets: Iterable[Any], actors: list) -> None:
        """Hand the weights of `version` to every actor (their `update_weights`); returns at once."""
        ...

    def latest(self) -> tuple[int, Any] | None:
        """The last push as a new actor takes it (`weights_version`, `weights`), or None before any."""
        ...

    async def receive(self, handle: Any) -> list[dict] | None:
        """On an actor: the packed buckets of the push it was handed (None: it could not take this push;
        the transport sends it again another way)."""
        ...

    def wait(self) -> None:
        """Until the last push has left the driver (a broadcast in flight has ended)."""
        ...

    def counts(self) -> dict[str, int]:
        """Pushes by how they travelled, for the run summary."""
        ...

    def close(self) -> None:
        """The run ends: release what the transport holds (a process group, a thread in flight)."""
        ...


class ObjectStoreTransport:
    """Buckets in Ray's object store: put as the learner yields them (or refs a learner worker already put
    there), so no process holds a second full copy; each actor awaits them (views of the store, not
    copies) without blocking its event loop."""

    name = "object_store"

    def __init__(self) -> None:
        self._last: tuple[int, list] | None = None
        self.pushes = 0

    def send(self, version: int, buckets: Iterable[Any], actors: list) -> None:
        import ray

        refs = [b if isinstance(b, ray.ObjectRef) else ray.put(b) for b in buckets]
        self._last = (version, refs)
        self.pushes += 1
        for actor in actors:
            actor.update_weights.remote(version, refs)

    def latest(self) -> tuple[int, list] | None:
        return self._last

    def wait(self) -> None:
        """Nothing in flight: `send` has put every bucket before it returns."""

    def counts(self) -> dict[str, int]:
        return {"pushes": self.pushes}

    def close(self) -> None:
        """Nothing to release: the store frees a push's buckets when no reference is left."""

    async def receive(self, handle: list | dict) -> list[dict]:
        import ray

        async def one(part):
            return await part if isinstance(part, ray.ObjectRef) else part

        return list(await asyncio.gather(*map(one, handle if isinstance(handle, list) else [handle])))
