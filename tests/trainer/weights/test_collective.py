"""The collective weight transport (weight_transport=collective), on CPU with gloo: the flat bucket format,
the process group's broadcast and timeouts (two processes), and real rollout actors (Ray, vLLM student
engines) taking pushes by broadcast: the same engine weights and greedy outputs as the object-store path,
a dead actor's push carried by the object store instead, and a new group with its replacement."""

from __future__ import annotations

import pickle
import socket
import time

import pytest
import ray
import torch

from tests.reference import dense_greedy
from tests.trainer.weights.test_weight_push import NO_TEACHER, PROMPTS
from trainer.config import RunConfig
from trainer.rollout.worker import RolloutWorker, rollout_actor
from trainer.weights.buckets import buckets, iter_tensors, unpack
from trainer.weights.choice import make_transport
from trainer.weights.collective import (
    CollectiveTransport,
    GroupInfo,
    WeightGroup,
    flatten,
    layout,
    unflatten,
)
from trainer.weights.transport import ObjectStoreTransport


def test_a_bucket_travels_as_one_flat_tensor_and_comes_back_exact():
    named = [("a", torch.randn(4, 3)), ("b", torch.randn(7)), ("c", torch.randn(2, 2, 2))]
    for dtype in (torch.float32, torch.bfloat16):
        (bucket,) = buckets(named, dtype, bucket_bytes=1e9, partial=True)
        spec = layout(bucket)
        assert spec["tensors"] == [("a", (4, 3)), ("b", (7,)), ("c", (2, 2, 2))] and spec["partial"]
        flat = flatten(bucket)
        assert flat.dtype == dtype and flat.numel() == 12 + 7 + 8
        back = unflatten(spec, flat.clone())
        for name, t in unpack(bucket).items():
            assert torch.equal(back[name], t)  # bit for bit, bf16 included
        assert dict(iter_tensors([{"tensors": back}])).keys() == {"a", "b", "c"}
        with pytest.raises(ValueError, match="layout covers"):
            unflatten(spec, torch.cat([flat, flat[:1]]))


def test_a_member_that_never_joins_fails_the_group_within_the_timeout():
    """(Members that do join and receive exactly: the actors' test below.)"""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    t0 = time.perf_counter()
    with pytest.raises(Exception):  # noqa: B017 (torch raises DistStoreError / RuntimeError by version)
        WeightGroup(GroupInfo("127.0.0.1", sock.getsockname()[1], 0, 2, "gloo", 2.0, 1), listen_socket=sock)
    assert time.perf_counter() - t0 < 15


def test_the_transport_picks_by_device_and_reaches_actors_light():
    assert isinstance(make_transport(RunConfig()), ObjectStoreTransport)  # CPU, auto: the object store
    chosen = make_transport(RunConfig(weight_transport="collective", collective_timeout_s=7))
    assert isinstance(chosen, CollectiveTransport) and chosen.backend == "gloo" and chosen.timeout_s == 7
    copy = pickle.loads(pickle.dumps(chosen))  # what an actor gets: settings, no group, thread or buckets
    assert (copy.backend, copy.timeout_s, copy._last, copy._group) == ("gloo", 7, None, None)


class ProbedWorker(RolloutWorker):
    """The rollout actor, unchanged, plus a look at its engine's weights."""

    def weight_sums(self) -> dict[str, float]:
        sums = self.env.student.llm.apply_model(
            lambda model: {n: float(p.double().sum()) for n, p in model.named_parameters()}
        )
        return sums[0]


def test_actors_take_pushes_by_broadcast_as_by_the_object_store_and_survive_a_dead_member(
    ray_cluster, tiny_models
):
    from ray.util.queue import Queue

    from trainer.learner.local import LocalLearner

    cfg = RunConfig(student_dtype="float32", student_kv_cache_gib=0.25, max_new_tokens=4, max_prompt_len=32,
                    enforce_eager=True, weight_transport="collective", collective_timeout_s=30)  # fmt: skip
    transport = CollectiveTransport("gloo", cfg.collective_timeout_s)
    student = str(tiny_models["student"])

    def actor(i):
        return rollout_actor(cfg, ProbedWorker).remote(
            cfg, student, [NO_TEACHER], (Queue(), Queue()), i, [2], transport=transport
        )

    actors = [actor(0), actor(1)]
    learner = LocalLearner(cfg, student)
    torch.manual_seed(0)
    with torch.no_grad():  # a model visibly different from the engines' start
        for p in learner.lm.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    pushed = list(learner.weight_buckets(torch.float32))
    ray.get([a.get_stats.remote() for a in actors])  # their engines are up

    # a push by broadcast to both actors: the learner's model, served
    transport.send(1, pushed, actors)
    greedy = ray.get([a.generate_greedy.remote(PROMPTS, 4, min_version=1) for a in actors])  # both receive
    transport.wait()
    assert transport.broadcasts == 1 and transport.failures == 0
    assert greedy[0] == greedy[1] and greedy[0][0] == 1
    assert greedy[0][1] == dense_greedy(learner.lm, PROMPTS, 4)
    by_broadcast = ray.get([a.weight_sums.remote() for a in actors])
    assert by_broadcast[0] == by_broadcast[1]
    # the same weights through the object store: the engine holds exactly what the broadcast gave it
    ObjectStoreTransport().send(2, [ray.put(b) for b in pushed], actors[:1])
    assert ray.get(actors[0].generate_greedy.remote(PROMPTS, 4, min_version=2)) == (2, greedy[0][1])
    assert ray.get(actors[0].weight_sums.remote()) == by_broadcast[0]

    # a second push goes to the group already formed
    with torch.no_grad():
        for p in learner.lm.parameters():
            p.mul_(1.01)
    transport.send(3, list(learner.weight_buckets(torch.float32)), actors)
    second = ray.get([a.generate_greedy.remote(PROMPTS, 4, min_version=3) for a in actors])
    transport.wait()
    assert transport.broadcasts == 2 and [s[0] for s in second] == [3, 3]
    assert second[0][1] == second[1][1] == dense_greedy(learner.lm, PROMPTS, 4)  # (x1.01: the same argmax)
    sums = ray.get([a.weight_sums.remote() for a in actors])
    assert sums[0] == sums[1] != by_broadcast[0]

    # a member dies: the broadcast fails, the survivor gets the push by the object store
    ray.kill(actors[1], no_restart=True)
    with torch.no_grad():
        for p in learner.lm.parameters():
            p.mul_(0.99)
    third = list(learner.weight_buckets(torch.float32))
    t0 = time.perf_counter()
    transport.send(4, third, actors)
    version, survivor = ray.get(actors[0].generate_greedy.remote(PROMPTS, 4, min_version=4))
    transport.wait()
    assert transport.failures == 1 and time.perf_counter() - t0 < cfg.collective_timeout_s + 30
    assert version == 4 and survivor == dense_greedy(learner.lm, PROMPTS, 4)

    # its replacement starts from the last push (object store), and the next push forms a new group
    replacement = actor(1)
    version, weights = transport.latest()
    assert version == 4
    ray.get(replacement.update_weights.remote(version, weights, True))  # (after its engine is up)
    transport.send(5, third, [actors[0], replacement])
    fifth = ray.get([a.generate_greedy.remote(PROMPTS, 4, min_version=5) for a in (actors[0], replacement)])
    transport.wait()
    assert transport.broadcasts == 3 and fifth[0] == fifth[1] == (5, survivor)
    transport.close()
    for a in (actors[0], replacement):
        ray.kill(a)
