"""Two paths against independent dense references (transformers fp32, full vocabulary, one sequence alone):

- the rollout actor's draft -> verify -> commit loop (a real Ray actor with its vLLM student engine, the real
  teacher server) against the SKD rule computed densely: greedy student drafts, teacher top-K acceptance up
  to the first rejection, the teacher's argmax in its place, the rest discarded, no bonus token;
- the learner's response-loss target alignment (`collate` + `ResponseLoss` over a padded batch) against each
  sample's losses recomputed alone from a plain forward of the model, the divergences written out by hand.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

import numpy as np
import pytest
import ray
import torch

from tests.reference import TOL, DenseTeacher, near_boundary, strict_rank
from trainer.config import RunConfig
from trainer.learner.loss import ResponseLoss, collate
from trainer.records import Prompt, Sample

# --- the rollout loop ---------------------------------------------------------------------------------------

# K = the test teacher's max_logprobs (64): /verify decides acceptance by the exact top-K comparison
# (shared.skd.in_top_k with the K-th log-prob known). Acceptance is ~10% here: rounds with accepted tokens
# and replacements both occur.
K = 64
MAX_NEW = 20
NUM_TARGETS = 20  # RunConfig.num_logprobs (default): the teacher top-k targets every committed token carries
# Chosen (with the dense reference below) so that no decision is within 10 x TOL of flipping, and together
# they cover: a draft token ranked exactly K-th (accepted) and one ranked K+1-th (rejected), a round whose
# whole draft is kept (no bonus token), drafted EOS tokens the teacher rejects, responses ending at an
# accepted EOS and at the length limit (drafts cut to the tokens left). The test asserts all of that of the
# reference, so a change to the tiny models that loses it fails loudly instead of testing less.
PROMPTS = [
    [438, 289, 375, 381, 7, 485, 27, 431],
    [337, 378, 398, 199, 327, 66, 376, 125],
    [15, 180, 372, 180, 253],
    [27, 355, 127, 194],
]


def _gap(row: np.ndarray, n: int) -> float:
    """Log-prob gap between the n-th and (n+1)-th most probable tokens."""
    top = np.sort(row)[::-1]
    return float(top[n - 1] - top[n])


@dataclass
class DenseRollout:
    response: list[int] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)  # the teacher's dense row of each committed token
    drafted: int = 0
    accepted: int = 0
    rounds: list[tuple[int, int]] = field(default_factory=list)  # (drafted, accepted) per round
    ranks: list[int] = field(default_factory=list)  # strict teacher rank of every draft token checked
    rejected_eos: int = 0  # drafted EOS tokens the teacher rejected
    close_calls: list[str] = field(default_factory=list)  # decisions fp32 noise could flip


def dense_skd(
    student: DenseTeacher, teacher: DenseTeacher, prompt: list[int], *, k: int, gamma: int, eos: frozenset
) -> DenseRollout:
    """The SKD rule, greedy on both sides, one sequence, recomputing every row from scratch."""
    out = DenseRollout()
    while len(out.response) < MAX_NEW and not (out.response and out.response[-1] in eos):
        ctx = prompt + out.response
        draft: list[int] = []
        for _ in range(min(gamma, MAX_NEW - len(out.response))):  # a draft stops after EOS
            row = student.logprobs(ctx + draft)[-1]
            if _gap(row, 1) <= 10 * TOL:
                out.close_calls.append(f"student argmax after {ctx + draft}: gap {_gap(row, 1):.1e}")
            draft.append(int(row.argmax()))
            if draft[-1] in eos:
                break
        rows = teacher.logprobs(ctx + draft)[len(ctx) - 1 :]  # rows[j] predicts draft[j]
        n = 0
        while n < len(draft):
            out.ranks.append(strict_rank(rows[n], draft[n]))
            if near_boundary(rows[n], draft[n], k, 10 * TOL):
                out.close_calls.append(f"top-{k} test of {draft[n]} after {ctx + draft[:n]}")
            if out.ranks[-1] >= k:  # k or more tokens strictly more probable: rejected
                out.rejected_eos += draft[n] in eos
                break
            n += 1
        tokens = draft[:n]
        if n < len(draft):  # the teacher's argmax replaces the first rejected token; the rest is discarded
            if _gap(rows[n], 1) <= 10 * TOL:
                out.close_calls.append(f"teacher argmax after {ctx + draft[:n]}: gap {_gap(rows[n], 1):.1e}")
            tokens.append(int(rows[n].argmax()))
        for j in range(len(tokens)):
            if _gap(rows[j], NUM_TARGETS) <= 10 * TOL:
                out.close_calls.append(f"top-{NUM_TARGETS} targets after {ctx + tokens[:j]}")
        out.response += tokens
        out.rows += list(rows[: len(tokens)])
        out.drafted += len(draft)
        out.accepted += n
        out.rounds.append((len(draft), n))
    return out


def test_rollout_loop_commits_what_a_dense_skd_computation_commits(
    ray_cluster, tiny_models, teacher_server, hf_teacher, http
):
    """Greedy student and teacher make SKD deterministic: the actor's samples (tokens, draft counts, the
    teacher's top-k targets) equal the dense computation's, up to fp32 noise in the log-probs."""
    from ray.util.queue import Queue

    from trainer.rollout.worker import rollout_actor

    eos = frozenset(http.get("/info").json()["eos_token_ids"])  # what the driver hands the actors
    cfg = RunConfig(student_dtype="float32", student_kv_cache_gib=0.25, max_new_tokens=MAX_NEW,
                    max_prompt_len=32, student_temperature=0, teacher_temperature=0, top_k=K,
                    num_logprobs=NUM_TARGETS, max_inflight_per_actor=len(PROMPTS),
                    adaptive_gamma=False)  # fmt: skip
    assert http.get("/info").json()["max_logprobs"] >= K  # the exact top-K path (see K)

    student = DenseTeacher(tiny_models["student"])  # any causal LM: fp32, full-vocabulary log-softmax
    refs = [dense_skd(student, hf_teacher, p, k=K, gamma=cfg.gamma, eos=eos) for p in PROMPTS]
    close = [c for r in refs for c in r.close_calls]
    assert not close, f"decisions within fp32 noise of flipping (choose other prompts): {close}"
    # what these prompts are here to exercise (see PROMPTS)
    ranks = {x for r in refs for x in r.ranks}
    assert {K - 1, K} <= ranks, "no draft token at the top-K boundary"
    assert any(d == n for r in refs for d, n in r.rounds), "no round kept its whole draft"
    assert any(0 < n < d for r in refs for d, n in r.rounds), "no round of accepted tokens + a replacement"
    assert any(r.rejected_eos for r in refs), "no drafted EOS rejected"
    assert any(r.response[-1] in eos for r in refs), "no response ending at EOS"
    assert any(len(r.response) == MAX_NEW and r.response[-1] not in eos for r in refs), "none at the limit"

    prompt_q, sample_q = Queue(), Queue()
    prompt_q.put_nowait_batch([Prompt(index=i, prompt_ids=p) for i, p in enumerate(PROMPTS)])
    actor = rollout_actor(cfg).remote(
        cfg, str(tiny_models["student"]), [teacher_server.url], (prompt_q, sample_q), 0, sorted(eos)
    )
    try:
        run = actor.run.remote()
        samples = sorted((sample_q.get(timeout=120) for _ in PROMPTS), key=lambda s: s.index)
        ray.get(actor.stop.remote())
        assert ray.get(run, timeout=60)["samples"] == len(PROMPTS)
    finally:
        ray.kill(actor)

    for s, ref in zip(samples, refs):
        where = f"prompt {PROMPTS[s.index]}"
        assert s.method == "skd" and s.prompt_ids == PROMPTS[s.index]
        assert s.response_ids == ref.response, where
        assert (s.num_drafted, s.num_accepted) == (ref.drafted, ref.accepted), where
        assert len(s.teacher_topk_ids) == len(s.teacher_topk_logprobs) == len(ref.response), where
        for j, (ids, lps, row) in enumerate(zip(s.teacher_topk_ids, s.teacher_topk_logprobs, ref.rows)):
            dense_top = np.argsort(-row, kind="stable")[:NUM_TARGETS]
            assert sorted(ids) == sorted(dense_top.tolist()), f"{where}, token {j}: top-{NUM_TARGETS} ids"
            assert lps == sorted(lps, reverse=True), f"{where}, token {j}"
            np.testing.assert_allclose(lps, row[ids], rtol=0, atol=TOL, err_msg=f"{where}, token {j}")


# --- the response-loss alignment --------------------------------------------------------------------------

# (prompt length, response length, teacher targets per row; 0: an SFT sample): uneven, with a one-token prompt
# (its first response token is predicted at position 0), a one-token response and rows of fewer targets
# than the batch's widest (padded with -1 in the batch).
SHAPES = [(1, 5, 6), (7, 1, 6), (3, 12, 4), (9, 8, 6), (2, 3, 0), (5, 10, 6)]
# fp32 losses of size 0.04-8 from a padded batched forward against a float64 recomputation from an unpadded
# forward: measured <= 8e-7 relative here (a few fp32 ulps through the model and the log-softmax).
RTOL = 1e-5
BETA = 0.3


def _loss_samples(teacher: DenseTeacher) -> list[Sample]:
    """Random prompts and responses; KD targets are the teacher's top-k at each response token."""
    r = random.Random(0)
    samples = []
    for i, (n_prompt, n_response, k) in enumerate(SHAPES):
        prompt = [r.randrange(3, 512) for _ in range(n_prompt)]
        response = [r.randrange(3, 512) for _ in range(n_response)]
        rows = teacher.logprobs(prompt + response)[n_prompt - 1 : n_prompt + n_response - 1]
        ids = [np.argsort(-row, kind="stable")[:k].tolist() for row in rows]
        samples.append(
            Sample(
                index=i,
                method="test",
                kind="kd" if k else "sft",
                prompt_ids=prompt,
                response_ids=response,
                teacher_topk_ids=ids if k else [],
                teacher_topk_logprobs=[row[t].tolist() for row, t in zip(rows, ids)] if k else [],
                weight_version=0,
            )
        )
    return samples


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    return float((p * (np.log(p) - np.log(q))).sum())


def _dense_losses(lm, s: Sample, kind: str) -> np.ndarray:
    """One sample alone: a plain forward of prompt + response; response token j is predicted by the logits
    at position len(prompt) - 1 + j. KD over k + 1 buckets (the teacher's top-k tokens and the rest), as
    trainer.learner.divergences defines it; SFT: cross-entropy of the token. float64."""
    with torch.no_grad():
        logits = lm(torch.tensor([s.prompt_ids + s.response_ids])).logits[0]
    first = len(s.prompt_ids) - 1
    student = torch.log_softmax(logits.double(), -1).numpy()[first : first + len(s.response_ids)]
    out = []
    for j, token in enumerate(s.response_ids):
        if s.kind == "sft":
            out.append(-student[j, token])
            continue
        t = np.exp(np.asarray(s.teacher_topk_logprobs[j], dtype=np.float64))
        q = np.exp(student[j, s.teacher_topk_ids[j]])
        t, q = np.append(t, 1 - t.sum()), np.append(q, 1 - q.sum())
        if kind == "forward_kl":
            out.append(_kl(t, q))
        elif kind == "reverse_kl":
            out.append(_kl(q, t))
        else:
            m = BETA * t + (1 - BETA) * q
            out.append(BETA * _kl(t, m) + (1 - BETA) * _kl(q, m))
    return np.array(out)


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_response_loss_targets_align_with_a_per_sample_recomputation(tiny_models, hf_teacher, kind):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(str(tiny_models["student"]), dtype=torch.float32).eval()
    pad_id = AutoTokenizer.from_pretrained(str(tiny_models["student"])).pad_token_id
    samples = _loss_samples(hf_teacher)
    batch = collate(samples, pad_id)
    loss = ResponseLoss(lm, beta=BETA)
    with torch.no_grad():
        got = loss(batch, kind).double().numpy()
    want = np.concatenate([_dense_losses(lm, s, kind) for s in samples])
    assert got.shape == want.shape == (sum(n for _, n, _ in SHAPES),)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)
    # The comparison tells the alignment apart: the batch read one position early or late (the offset off
    # by one) gives no loss within the tolerance.
    for shift in (-1, 1):
        with torch.no_grad():
            wrong = loss(dataclasses.replace(batch, cols=batch.cols + shift), kind).double().numpy()
        assert not np.isclose(wrong, want, rtol=RTOL, atol=0).any(), shift
