"""Rollout actors: each hosts a vLLM student engine and turns prompts into training samples.

An actor keeps up to `max_inflight_per_actor` sequences in flight. One SKD round drafts `gamma` tokens for
every active sequence in one engine call, sends one batched /verify for all of them, and appends what the
teacher committed (with its top-k targets). Finished sequences go on the sample queue tagged with the
student weight version that started them. New weights arrive between rounds (`update_weights`), are loaded
into the engine and the prefix cache is reset (cached KV of old weights would be stale).

Methods, all through this one loop (`Sequence.method` picks the round):
- skd: drafts verified under top-K;   on_policy: the same with K = infinity (the student's own output)
- teacher_sampling: /generate (K = 0 without the round trips);   supervised_kd: /score on the reference
- sft: the reference alone (cross-entropy);   mixed: supervised_kd with probability lambda, else skd
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel

from shared.client import TeacherClient
from shared.protocol import GenerateItem, GenerateRequest, ScoreItem, ScoreRequest, VerifyItem, VerifyRequest
from trainer.config import RunConfig
from trainer.weights import unpack

ON_POLICY_K = 2**31 - 1  # >= any vocabulary: every draft token accepted


class Prompt(BaseModel):
    index: int
    prompt_ids: list[int]
    reference_ids: list[int] | None = None


class Sample(BaseModel):
    """One finished sequence: what the trainer needs and how it was made."""

    index: int
    method: str
    kind: Literal["kd", "sft"]
    prompt_ids: list[int]
    response_ids: list[int]
    teacher_topk_ids: list[list[int]] = []
    teacher_topk_logprobs: list[list[float]] = []
    weight_version: int
    num_drafted: int = 0
    num_accepted: int = 0
    actor: int = 0


@dataclass
class Sequence:
    prompt: Prompt
    method: str
    version: int
    response: list[int] = field(default_factory=list)
    topk_ids: list[list[int]] = field(default_factory=list)
    topk_logprobs: list[list[float]] = field(default_factory=list)
    drafted: int = 0
    accepted: int = 0
    done: bool = False

    @property
    def context(self) -> list[int]:
        return self.prompt.prompt_ids + self.response

    def sample(self, actor: int) -> Sample:
        return Sample(
            index=self.prompt.index,
            method=self.method,
            kind="sft" if self.method == "sft" else "kd",
            prompt_ids=self.prompt.prompt_ids,
            response_ids=self.response,
            teacher_topk_ids=self.topk_ids,
            teacher_topk_logprobs=self.topk_logprobs,
            weight_version=self.version,
            num_drafted=self.drafted,
            num_accepted=self.accepted,
            actor=actor,
        )


def _totals(seqs: list[Sequence]) -> dict[str, int]:
    return {
        "tokens": sum(len(s.response) for s in seqs),
        "drafted": sum(s.drafted for s in seqs),
        "accepted": sum(s.accepted for s in seqs),
    }


def make_student_engine(path: str, cfg: RunConfig, max_model_len: int):
    """An in-process vLLM engine (on CPU: one process, explicit KV cache, whole-prompt prefill)."""
    from vllm import LLM
    from vllm.platforms import current_platform

    on_cpu = current_platform.is_cpu()
    if on_cpu:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return LLM(
        model=path,
        dtype=cfg.student_dtype,
        max_model_len=max_model_len,
        kv_cache_memory_bytes=int(cfg.student_kv_cache_gib * 2**30),
        distributed_executor_backend="uni",
        block_size=32 if on_cpu else None,
        enable_chunked_prefill=False if on_cpu else None,
        max_num_batched_tokens=max(max_model_len, 4096) if on_cpu else None,
        seed=cfg.seed,
        gpu_memory_utilization=0.5,
    )


class RolloutWorker:
    """Body of the Ray actor (`RolloutActor` below); a plain class so it reads and tests on its own."""

    def __init__(
        self, cfg: RunConfig, student_path: str, teacher_urls: list[str], queues, actor: int, eos_ids
    ):
        self.cfg = cfg
        self.actor = actor
        self.prompts, self.samples = queues
        self.eos_ids = set(eos_ids)
        self.max_len = cfg.max_prompt_len + cfg.max_new_tokens + 1
        self.llm = make_student_engine(student_path, cfg, self.max_len)
        self.client = TeacherClient(teacher_urls, api_key=cfg.teacher_api_key)
        self.rng = np.random.default_rng([cfg.seed, actor])
        self.version = 0  # the training step of the loaded weights
        self.pending: tuple[int, object] | None = None
        self.active: list[Sequence] = []
        self.stopping = False
        self.stats = {"samples": 0, "rounds": 0, "drafted": 0, "accepted": 0, "tokens": 0, "weight_loads": 0}

    # --- control -----------------------------------------------------------------------------------

    def update_weights(self, version: int, packed: dict, apply_now: bool = False) -> float:
        """`trainer.weights.pack`ed weights; they take effect before the next round (never inside one), or
        now; returns the load time if now."""
        self.pending = (version, packed)
        return self._apply_pending_weights() if apply_now else 0.0

    def _apply_pending_weights(self) -> float:
        if self.pending is None:
            return 0.0
        start = time.perf_counter()
        version, packed = self.pending
        self.pending = None
        weights = list(unpack(packed).items())
        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True}
        )
        self.llm.reset_prefix_cache()  # KV computed by the old weights must not be reused
        self.version = version
        self.stats["weight_loads"] += 1
        return time.perf_counter() - start

    def stop(self) -> None:
        self.stopping = True

    # --- the loop -----------------------------------------------------------------------------------

    def _method_for(self, prompt: Prompt) -> str:
        method = self.cfg.method
        if method == "mixed":
            method = "supervised_kd" if self.rng.random() < self.cfg.mixed_lambda else "skd"
        if method in ("supervised_kd", "sft") and prompt.reference_ids is None:
            raise ValueError(f"prompt {prompt.index} has no reference, which method {method} needs")
        return method

    async def _refill(self) -> None:
        """Pull prompts from the shared queue up to capacity (pull-based: idle actors take more)."""
        room = self.cfg.max_inflight_per_actor - len(self.active)
        if room <= 0:
            return
        available = await self.prompts.actor.qsize.remote()
        if available:
            new = await self.prompts.actor.get_nowait_batch.remote(min(room, available))
            self.active += [Sequence(p, self._method_for(p), self.version) for p in new]

    async def run(self) -> dict:
        """Produce samples until stopped; returns the actor's counters."""
        while not self.stopping:
            self._apply_pending_weights()
            await self._refill()
            if not self.active:
                await asyncio.sleep(0.05)
                continue
            await self.round()
            finished = [s for s in self.active if s.done]
            if finished:
                self.active = [s for s in self.active if not s.done]
                await self.samples.actor.put_nowait_batch.remote([s.sample(self.actor) for s in finished])
                self.stats["samples"] += len(finished)
        return self.stats

    async def round(self) -> None:
        """Advance every active sequence by one step of its method (batched per method)."""
        by_method: dict[str, list[Sequence]] = {}
        for s in self.active:
            by_method.setdefault(s.method, []).append(s)
        self.stats["rounds"] += 1
        before = _totals(self.active)
        jobs = []
        if "skd" in by_method or "on_policy" in by_method:
            jobs.append(self._speculative(by_method.get("skd", []), by_method.get("on_policy", [])))
        if "teacher_sampling" in by_method:
            jobs.append(self._teacher_sampling(by_method["teacher_sampling"]))
        if "supervised_kd" in by_method:
            jobs.append(self._supervised(by_method["supervised_kd"]))
        for s in by_method.get("sft", []):
            s.response, s.done = list(s.prompt.reference_ids or []), True
        await asyncio.gather(*jobs)
        for key, value in _totals(self.active).items():
            self.stats[key] += value - before[key]

    def _draft(self, seqs: list[Sequence], max_tokens: list[int]) -> list[list[int]]:
        from vllm import SamplingParams

        params = [
            SamplingParams(
                max_tokens=n,
                temperature=self.cfg.student_temperature,
                top_p=self.cfg.student_top_p,
                detokenize=False,
                seed=int(self.rng.integers(2**31)),
            )
            for n in max_tokens
        ]
        outs = self.llm.generate([{"prompt_token_ids": s.context} for s in seqs], params, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]

    async def _speculative(self, skd: list[Sequence], on_policy: list[Sequence]) -> None:
        """One draft call for all sequences, one /verify per method (K differs)."""
        seqs = skd + on_policy
        remaining = [self.cfg.max_new_tokens - len(s.response) for s in seqs]
        # on_policy accepts everything: draft the whole rest of the response in one go
        budget = [min(self.cfg.gamma, r) for r in remaining[: len(skd)]] + remaining[len(skd) :]
        drafts = self._draft(seqs, budget)
        groups = [(skd, drafts[: len(skd)], self.cfg.top_k), (on_policy, drafts[len(skd) :], ON_POLICY_K)]
        await asyncio.gather(*(self._verify(g, d, k) for g, d, k in groups if g))

    async def _verify(self, seqs: list[Sequence], drafts: list[list[int]], top_k: int) -> None:
        req = VerifyRequest(
            items=[VerifyItem(context_ids=s.context, draft_ids=d) for s, d in zip(seqs, drafts)],
            top_k=top_k,
            temperature=self.cfg.teacher_temperature,
            top_p=self.cfg.teacher_top_p,
            num_logprobs=self.cfg.num_logprobs,
            seed=int(self.rng.integers(2**31)),
        )
        resp = await self.client.verify(req)
        for s, d, res in zip(seqs, drafts, resp.items):
            self._append(s, res.token_ids, res.teacher_topk_ids, res.teacher_topk_logprobs)
            s.drafted += len(d)
            s.accepted += res.num_accepted

    def _append(self, s: Sequence, tokens, topk_ids, topk_logprobs) -> None:
        s.response += tokens
        s.topk_ids += topk_ids
        s.topk_logprobs += topk_logprobs
        if len(s.response) >= self.cfg.max_new_tokens or (s.response and s.response[-1] in self.eos_ids):
            s.done = True

    async def _teacher_sampling(self, seqs: list[Sequence]) -> None:
        req = GenerateRequest(
            items=[GenerateItem(prompt_ids=s.context) for s in seqs],
            max_tokens=self.cfg.max_new_tokens,
            temperature=self.cfg.teacher_temperature,
            top_p=self.cfg.teacher_top_p,
            num_logprobs=self.cfg.num_logprobs,
            seed=int(self.rng.integers(2**31)),
        )
        resp = await self.client.generate(req)
        for s, res in zip(seqs, resp.items):
            self._append(s, res.token_ids, res.teacher_topk_ids, res.teacher_topk_logprobs)
            s.done = True

    async def _supervised(self, seqs: list[Sequence]) -> None:
        refs = [list(s.prompt.reference_ids or [])[: self.cfg.max_new_tokens] for s in seqs]
        req = ScoreRequest(
            items=[
                ScoreItem(token_ids=s.prompt.prompt_ids + r, start=len(s.prompt.prompt_ids))
                for s, r in zip(seqs, refs)
            ],
            num_logprobs=self.cfg.num_logprobs,
        )
        resp = await self.client.score(req)
        for s, r, res in zip(seqs, refs, resp.items):
            self._append(s, r, res.teacher_topk_ids, res.teacher_topk_logprobs)
            s.done = True

    # --- evaluation support -------------------------------------------------------------------------

    def generate_greedy(self, prompts: list[list[int]], max_tokens: int) -> tuple[int, list[list[int]]]:
        """The student's greedy responses with its current weights (applied first), and their version."""
        from vllm import SamplingParams

        self._apply_pending_weights()
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, detokenize=False)
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return self.version, [list(o.outputs[0].token_ids) for o in outs]

    async def skd_acceptance(self, prompts: list[list[int]]) -> tuple[int, float]:
        """SKD rollouts of these prompts with the current weights, kept out of training and of the stats:
        the fraction of draft tokens the teacher accepted (the paper's acceptance rate), and the version."""
        self._apply_pending_weights()
        seqs = [Sequence(Prompt(index=-1, prompt_ids=p), "skd", self.version) for p in prompts]
        while active := [s for s in seqs if not s.done]:
            await self._speculative(active, [])
        totals = _totals(seqs)
        return self.version, totals["accepted"] / max(totals["drafted"], 1)

    def get_stats(self) -> dict:
        return {**self.stats, "version": self.version, "active": len(self.active)}


def rollout_actor(cfg: RunConfig):
    """The Ray actor class with the resources and environment a student engine needs."""
    import ray

    env = {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
    }
    if "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
        env["VLLM_CPU_OMP_THREADS_BIND"] = os.environ["VLLM_CPU_OMP_THREADS_BIND"]
    return ray.remote(RolloutWorker).options(
        num_cpus=cfg.actor_num_cpus,
        num_gpus=cfg.actor_num_gpus,
        max_concurrency=4,
        runtime_env={"env_vars": env},
    )
