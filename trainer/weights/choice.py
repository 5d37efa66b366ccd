"""Which weight transport a run uses (`weight_transport`): object_store, collective, or auto (collective
when the learner and the actors are on GPUs: NCCL; the object store on CPU, measured faster there:
BENCHMARKS.md)."""

from __future__ import annotations

from trainer.weights.transport import ObjectStoreTransport, WeightTransport


def make_transport(cfg) -> WeightTransport:
    """The transport `cfg.weight_transport` names; `auto` decides by where the learner and actors run."""
    from trainer.weights.collective import CollectiveTransport, collective_backend  # torch.distributed

    on_cuda = cfg.trainer_device.startswith("cuda") or (cfg.trainer_device == "auto" and _cuda())
    backend = collective_backend(on_cuda, cfg.actor_num_gpus > 0)
    kind = cfg.weight_transport
    if kind == "auto":
        kind = "collective" if backend == "nccl" else "object_store"
    if kind == "object_store":
        return ObjectStoreTransport()
    return CollectiveTransport(backend, cfg.collective_timeout_s)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
