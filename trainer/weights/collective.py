"""The collective weight transport: the learner's rank 0 (the driver) and every rollout actor's engine join
one extra process group, and a push broadcasts each bucket from rank 0 into the engines: gloo on CPU, NCCL
on GPUs, the same code (the backend follows the device, `collective_backend`).

Why: the object store moves each bucket learner -> CPU numpy -> store -> every actor; a broadcast moves it
once over the fastest link there is (NCCL: NVLink / InfiniBand), as TRL's `vllm_serve` and verl do.

- `WeightGroup`          one stateless torch process group (vLLM's
                         `stateless_init_torch_distributed_process_group`, which leaves torch.distributed's
                         global group to the learner's own), every call bounded by `collective_timeout_s`
- `layout`, `flatten`, `unflatten`   a packed bucket <-> one flat tensor (one broadcast per bucket)
- `CollectiveTransport`  the `WeightTransport` (trainer.weights.transport). Driver side: forms the group with
                         the actors there are (again after a replacement), announces each push to them and
                         broadcasts it from a background thread; actor side: joins, receives a push whole.

Each engine runs in its actor's process (vLLM's in-process engine core, `distributed_executor_backend="uni"`),
so the actor process is the engine worker: it receives the buckets and loads them with the same one-pass
`reload_weights` as an object-store push (trainer.rollout.engine), and vLLM's worker extension hook is not
needed (a tensor-parallel engine, whose workers are other processes, would join through
`worker_extension_cls` instead: not built).

Faults. A broadcast that fails (an actor died, or stayed inside one engine call past the timeout) is logged,
the group is closed, and that push goes to the live actors through the object store; the next push forms a
new group with the actors there are then. An actor whose receive fails (or that is not in the push's group)
keeps its weights and takes the object-store push that follows. A push is received whole before it is
loaded, so a failed broadcast never leaves an engine half loaded. Pushes the object store must carry anyway
go there: a new actor's first weights (`latest`), LoRA adapters, and a learner group's object refs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import threading
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import torch

from shared.errors import first_line
from trainer.weights.buckets import unpack
from trainer.weights.transport import ObjectStoreTransport

logger = logging.getLogger(__name__)


def collective_backend(trainer_on_cuda: bool, actors_on_gpus: bool) -> str:
    """NCCL when both ends are on GPUs, gloo otherwise (gloo moves CPU tensors; the engine copies them)."""
    return "nccl" if trainer_on_cuda and actors_on_gpus else "gloo"


@dataclass(frozen=True)
class GroupInfo:
    """What a member needs to join: the rendezvous address, its rank, the group's size and generation."""

    host: str
    port: int
    rank: int
    world_size: int
    backend: str
    timeout_s: float
    generation: int


class WeightGroup:
    """One member's handle on the process group; rank 0 broadcasts, the others receive."""

    def __init__(self, info: GroupInfo, listen_socket: socket.socket | None = None):
        from vllm.distributed.utils import stateless_init_torch_distributed_process_group

        self.info, self.timeout = info, timedelta(seconds=info.timeout_s)
        self.device = torch.device("cuda", torch.cuda.current_device()) if info.backend == "nccl" else None
        self.pg = stateless_init_torch_distributed_process_group(
            info.host,
            info.port,
            info.rank,
            info.world_size,
            backend=info.backend,
            listen_socket=listen_socket,
            timeout=self.timeout,
        )

    def broadcast(self, flat: torch.Tensor) -> None:
        """From rank 0 into `flat` on every other rank; returns once this rank's part is done."""
        self.pg.broadcast(flat, root=0, timeout=self.timeout).wait()

    def close(self) -> None:
        from vllm.distributed.utils import stateless_destroy_torch_distributed_process_group

        with contextlib.suppress(Exception):
            stateless_destroy_torch_distributed_process_group(self.pg)


def layout(bucket: dict) -> dict:
    """A packed bucket's dtype and (name, shape) list: what a receiver allocates and cuts its tensor by."""
    return {
        "dtype": bucket["dtype"],
        "tensors": [(name, tuple(a.shape)) for name, a in bucket["arrays"].items()],
        "partial": bucket.get("partial", False),
    }


def flatten(bucket: dict, device: torch.device | None = None) -> torch.Tensor:
    """A packed bucket as one flat tensor in its dtype (the order of `layout`)."""
    flat = torch.cat([t.reshape(-1) for t in unpack(bucket).values()])
    return flat if device is None else flat.to(device)


def unflatten(spec: dict, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Views of `flat` by the layout's names and shapes."""
    out, offset = {}, 0
    for name, shape in spec["tensors"]:
        n = math.prod(shape)
        out[name] = flat[offset : offset + n].view(shape)
        offset += n
    if offset != flat.numel():
        raise ValueError(f"layout covers {offset} elements, the bucket has {flat.numel()}")
    return out


class CollectiveTransport:
    """A `WeightTransport` over one process group: rank 0 is this driver, rank 1 + i actor i."""

    name = "collective"

    def __init__(self, backend: str = "gloo", timeout_s: float = 120.0):
        self.backend, self.timeout_s = backend, timeout_s
        self._store = ObjectStoreTransport()  # what the group cannot carry, and failed pushes
        self._last: tuple[int, list[dict]] | None = None  # packed buckets, put in the store on demand
        self._last_refs: tuple[int, list] | None = None
        self._group: WeightGroup | None = None  # the driver's (rank 0)
        self._members: tuple = ()
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._probes: dict = {}  # actor id -> its readiness ref (started once per actor)
        self.broadcasts = self.failures = 0
        self._mine: WeightGroup | None = None  # an actor's

    def __reduce__(self):  # an actor's copy: the settings, not the thread, the group or the buckets
        return (CollectiveTransport, (self.backend, self.timeout_s))

    # --- the driver's side ------------------------------------------------------------------------------

    def send(self, version: int, buckets, actors: list) -> None:
        """Announce the push to every actor and broadcast it from a background thread; waits first for
        the previous broadcast, whose actors must all have taken it (backpressure, never a dropped push)."""
        import ray

        buckets = list(buckets)
        self.wait()
        if not buckets or any(isinstance(b, ray.ObjectRef) or "adapter_config" in b for b in buckets):
            self._last = None
            self._store.send(version, buckets, actors)  # refs from learner workers, adapters
            return
        self._last, self._last_refs = (version, buckets), None
        ready = self._ready(actors)
        if late := [a for a in actors if a not in ready]:  # still starting: the store, until they are up
            self._store.send(version, [ray.put(b) for b in buckets], late)
        if not ready:
            return
        actors = ready
        form = self._group is None or self._members != tuple(a._actor_id for a in actors)
        listen, info = self._form(actors) if form else (None, self._group.info)
        push = {"generation": info.generation, "layouts": [layout(b) for b in buckets]}
        for i, actor in enumerate(actors):  # a new group's members join as they take the push
            join = {"join": replace(info, rank=1 + i)} if form else {}
            actor.update_weights.remote(version, {"collective": {**push, **join}})
        self._thread = threading.Thread(
            target=self._broadcast, args=(version, buckets, actors, listen, info), daemon=True
        )
        self._thread.start()

    def _ready(self, actors: list) -> list:
        """The actors whose constructor has finished (their engine is up): a group waits for all its
        members, so one still starting joins the group after it is up."""
        import ray

        new = [a for a in actors if a._actor_id not in self._probes]
        for a in new:
            self._probes[a._actor_id] = a.__ray_ready__.remote()
        refs = [self._probes[a._actor_id] for a in actors]
        wait_s = 1.0 if new else 0.0  # an actor that is up answers a new probe within milliseconds
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=wait_s, fetch_local=False)
        return [a for a, ref in zip(actors, refs) if ref in done]

    def _form(self, actors: list) -> tuple[socket.socket, GroupInfo]:
        """A new group: its rendezvous socket bound here (the driver joins in the broadcast thread, the
        actors as they take the push that tells them to: Ray does not order an async actor's calls)."""
        import ray

        self._close_group()
        self._generation += 1
        host = ray.util.get_node_ip_address()
        listen = socket.socket()
        listen.bind((host, 0))
        listen.listen()
        info = GroupInfo(
            host, listen.getsockname()[1], 0, 1 + len(actors), self.backend, self.timeout_s, self._generation
        )
        self._members = tuple(a._actor_id for a in actors)
        return listen, info

    def _broadcast(self, version: int, buckets: list[dict], actors: list, listen, info: GroupInfo) -> None:
        import ray

        try:
            if listen is not None:
                self._group = WeightGroup(info, listen_socket=listen)  # until every actor has joined
            for bucket in buckets:
                self._group.broadcast(flatten(bucket, self._group.device))
            self.broadcasts += 1
        except Exception as e:  # a dead or stuck actor: the object store carries this push
            self.failures += 1
            logger.warning("weight push %d: broadcast failed (%s); sent through the object store", version,
                           first_line(e))  # fmt: skip
            self._close_group()
            self._store.send(version, [ray.put(b) for b in buckets], actors)

    def wait(self) -> None:
        """Until the push in flight is broadcast (or failed over to the object store)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _close_group(self) -> None:
        if self._group is not None:
            self._group.close()
        self._group, self._members = None, ()

    def latest(self) -> tuple[int, list] | None:
        """The last push for a new actor, through the object store (put there once, on first demand)."""
        import ray

        if self._last is None:
            return self._store.latest()
        if self._last_refs is None or self._last_refs[0] != self._last[0]:
            version, buckets = self._last
            self._last_refs = (version, [ray.put(b) for b in buckets])
        return self._last_refs

    def counts(self) -> dict[str, int]:
        return {"pushes_broadcast": self.broadcasts, "pushes_failed_over": self.failures}

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop: a broadcast still in flight (its actors stopped before taking it) is abandoned after
        `timeout_s` (the thread is a daemon), and the group closed."""
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("a weight broadcast still in flight at shutdown was abandoned")
            self._thread = None
        self._close_group()

    # --- an actor's side ------------------------------------------------------------------------------

    async def join(self, info: GroupInfo) -> None:
        """Leave the previous group and join this one: in a thread (the rendezvous waits for every
        member), so the actor's other overlap groups run on meanwhile."""
        self.leave()
        try:
            self._mine = await asyncio.get_running_loop().run_in_executor(None, WeightGroup, info)
        except Exception as e:
            logger.warning("rank %d: could not join weight group %d (%s)", info.rank, info.generation,
                           first_line(e))  # fmt: skip

    def leave(self) -> None:
        if self._mine is not None:
            self._mine.close()
            self._mine = None

    async def receive(self, handle: Any) -> list[dict] | None:
        """The push's buckets (`tensors`: name -> tensor); None when this actor cannot take it from the
        group (the object store brings it next). Object-store handles are fetched as ObjectStoreTransport
        does."""
        if not (isinstance(handle, dict) and "collective" in handle):
            return await self._store.receive(handle)
        push = handle["collective"]
        if (info := push.get("join")) and (self._mine is None or self._mine.info != info):
            await self.join(info)  # the first push of a new group
        group = self._mine
        if group is None or group.info.generation != push["generation"]:
            logger.warning("weight push of group %d missed (not a member): waiting for the object store",
                           push["generation"])  # fmt: skip
            return None
        received = []
        try:
            for spec in push["layouts"]:  # a fresh tensor per bucket: the engine holds views until loaded
                numel = sum(math.prod(shape) for _, shape in spec["tensors"])
                flat = torch.empty(numel, dtype=getattr(torch, spec["dtype"]), device=group.device)
                group.broadcast(flat)
                received.append({"tensors": unflatten(spec, flat), "partial": spec["partial"]})
        except Exception as e:
            logger.warning("weight push: receive failed (%s); waiting for the object store", first_line(e))
            self.leave()
            return None
        return received
