"""N learner workers as Ray actors joined by torch.distributed, behind the `Learner` protocol.

The way OpenRLHF and verl build theirs: the driver places N actors in a placement group, rank 0 names the
rendezvous (its node address and a free port), every actor joins one process group (NCCL on GPUs, gloo on
CPU) and builds a `trainer.learner.local.LocalLearner` whose model FSDP2 shards (or DDP replicates). Each
call is made on every rank at once, since the collectives inside need all of them: the driver splits each
micro-batch into N shards (rank r takes sequences r, r + N, ...), the gradients are reduced by FSDP/DDP,
rank 0 exports the weights (as object-store buckets the actors fetch directly) and writes checkpoints.

`make_learner` picks the path: one worker keeps the in-driver learner (no Ray actor, no process group);
`check_fits` says, before any work, whether the chosen learner and the rollout actors fit the device and the
cluster.
"""

from __future__ import annotations

from pathlib import Path

import ray
import torch

from trainer.config import LearnerConfig, RunConfig
from trainer.learner.interface import Learner
from trainer.learner.local import LocalLearner, micro_batches, resolve_device
from trainer.learner.model import check_dtype_supported
from trainer.records import Sample


def _rendezvous() -> tuple[str, int]:
    """This node's address and a free port on it: where rank 0 listens for the others."""
    from trainer.cluster import free_port

    return ray.util.get_node_ip_address(), free_port("")


class LearnerWorker:
    """Body of one learner actor: one rank."""

    def __init__(
        self, cfg: RunConfig, model_path: str, checkpoint: str | None, rank: int, world: int, master
    ):
        import datetime

        from trainer.logs import configure

        configure(cfg.log_level)
        torch.set_num_threads(cfg.trainer_threads or max(int(cfg.learner_num_cpus), 1))  # its Ray CPUs
        cuda = cfg.learner_num_gpus > 0 and torch.cuda.is_available()
        device = torch.device("cuda", 0) if cuda else torch.device("cpu")  # Ray sets CUDA_VISIBLE_DEVICES
        if cuda:
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(
            "nccl" if cuda else "gloo",
            init_method=f"tcp://{master[0]}:{master[1]}",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(minutes=30),
        )
        ckpt = Path(checkpoint) if checkpoint else None
        self.learner = LocalLearner(cfg, model_path, ckpt, rank=rank, world_size=world, device=device)

    def train_shard(self, shard: list[list[Sample]], total_tokens: int) -> dict:
        return self.learner.train_shard(shard, total_tokens)

    def kl_sums(self, samples: list[Sample]) -> tuple[float, int]:
        return self.learner.kl_sums(samples)

    def export(self, dtype: torch.dtype) -> list:
        """Rank 0: object refs of the weight buckets, put as they are made (other ranks: [])."""
        return [ray.put(b) for b in self.learner.weight_buckets(dtype)]

    def save(self, directory: str, extra: dict) -> str:
        return str(self.learner.save(Path(directory), extra))

    def load_state(self, checkpoint: str) -> dict:
        return self.learner.load_state(Path(checkpoint))

    def step(self) -> int:
        return self.learner.step


def check_fits(cfg: RunConfig, cluster: dict[str, float] | None) -> None:
    """Learner settings this machine or cluster cannot run raise ValueError naming the fields: bf16 where
    the device lacks it, more learner workers and actors than the cluster has resources for (`cluster`:
    what it has in all; None: not known yet, checked once connected)."""
    if cfg.num_learner_workers == 1 or cfg.learner_num_gpus == 0:
        device = resolve_device(cfg.trainer_device) if cfg.num_learner_workers == 1 else torch.device("cpu")
        check_dtype_supported(cfg.part(LearnerConfig), device)
    if cluster is not None:
        check_resources(cfg, cluster)


def check_resources(cfg: RunConfig, cluster: dict[str, float]) -> None:
    """LocalLearner workers and rollout actors must fit the cluster: an error naming the fields otherwise."""
    for res, per_learner, per_actor in (
        ("CPU", cfg.learner_num_cpus, cfg.actor_num_cpus),
        ("GPU", cfg.learner_num_gpus, cfg.actor_num_gpus),
    ):
        learners = cfg.num_learner_workers * per_learner if cfg.num_learner_workers > 1 else 0.0
        need = learners + cfg.num_rollout_actors * per_actor
        have = cluster.get(res, 0.0)
        if need > have + 1e-9:
            r = res.lower()
            learner_fix = f"--learner_num_{r}s=S " if learners else ""
            users = (cfg.num_learner_workers if learners else 0) + cfg.num_rollout_actors
            share = int(have / users * 100) / 100 if users else 0.0
            fix = (
                f"fractional shares fit them: {learner_fix}--actor_num_{r}s=S with S <= {share:g} "
                f"(Ray counts the shares; the processes share the {r.upper()}s)"
                if share > 0
                else f"this cluster has no {res}s; set the *_num_{r}s to 0 or join a cluster that has them"
            )
            raise ValueError(
                f"num_learner_workers ({cfg.num_learner_workers}) x learner_num_{r}s ({per_learner}) "
                f"+ num_rollout_actors ({cfg.num_rollout_actors}) x actor_num_{r}s ({per_actor}) "
                f"= {need:g} {res}s, more than the Ray cluster's {have:g}. Fix: {fix}, or fewer "
                "num_learner_workers / num_rollout_actors, or a bigger cluster (--ray_address)"
            )


class LearnerGroup:
    """The driver's handle on N learner workers (a `Learner`)."""

    def __init__(self, cfg: RunConfig, model_path: str | Path, checkpoint: Path | None = None):
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
        from transformers import AutoTokenizer

        self.cfg, n = cfg, cfg.num_learner_workers
        bundle = {k: v for k, v in {"CPU": cfg.learner_num_cpus, "GPU": cfg.learner_num_gpus}.items() if v}
        self.pg = placement_group([bundle] * n, strategy="PACK") if bundle else None
        if self.pg is not None:
            ray.get(self.pg.ready(), timeout=300)

        def on(rank: int, num_cpus: float = cfg.learner_num_cpus, num_gpus: float = cfg.learner_num_gpus):
            if self.pg is None:
                return {"num_cpus": num_cpus, "num_gpus": num_gpus}
            strategy = PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=rank)
            return {"num_cpus": num_cpus, "num_gpus": num_gpus, "scheduling_strategy": strategy}

        master = ray.get(ray.remote(_rendezvous).options(**on(0, 0, 0)).remote())  # on rank 0's node
        actor = ray.remote(LearnerWorker)
        ckpt = str(checkpoint) if checkpoint else None
        self.workers = [
            actor.options(**on(r)).remote(cfg, str(model_path), ckpt, r, n, master) for r in range(n)
        ]
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint or model_path)
        self.step = ray.get(self.workers[0].step.remote())

    def _all(self, method: str, *per_rank_args) -> list:
        """Call `method` on every rank (rank r gets the r-th of each per-rank argument list)."""
        calls = [
            getattr(w, method).remote(*(args[r] for args in per_rank_args))
            for r, w in enumerate(self.workers)
        ]
        return ray.get(calls)

    def _shards(self, samples: list[Sample]) -> list[list[Sample]]:
        n = len(self.workers)
        return [samples[r::n] for r in range(n)]

    def train_step(self, batch: list[Sample]) -> dict[str, float]:
        total = sum(len(s.response_ids) for s in batch)
        per_rank = [[] for _ in self.workers]
        for mb in micro_batches(batch, self.cfg.batch_size):
            for r, shard in enumerate(self._shards(mb)):
                per_rank[r].append(shard)
        stats = self._all("train_shard", per_rank, [total] * len(self.workers))[0]
        self.step += 1
        return stats

    def kl_to_teacher(self, samples: list[Sample]) -> float:
        total, count = self._all("kl_sums", self._shards(samples))[0]
        return total / count if count else float("nan")

    def weight_buckets(self, dtype: torch.dtype) -> list:
        """Object refs of the weight buckets (made and put by rank 0)."""
        return self._all("export", [dtype] * len(self.workers))[0]

    def save(self, directory: Path, extra: dict) -> Path:
        return Path(self._all("save", [str(directory)] * len(self.workers), [extra] * len(self.workers))[0])

    def load_state(self, checkpoint: Path) -> dict:
        state = self._all("load_state", [str(checkpoint)] * len(self.workers))[0]
        self.step = state["step"]
        return state

    def shutdown(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for w in self.workers:
            ray.kill(w)
        if self.pg is not None:
            remove_placement_group(self.pg)


def make_learner(cfg: RunConfig, model_path: str | Path, checkpoint: Path | None = None) -> Learner:
    """`LocalLearner` in this process for one worker, else a `LearnerGroup` of Ray actors."""
    if cfg.num_learner_workers == 1:
        return LocalLearner(cfg, model_path, checkpoint)
    return LearnerGroup(cfg, model_path, checkpoint)
