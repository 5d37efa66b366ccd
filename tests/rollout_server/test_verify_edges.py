"""/verify edge cases: K = 0, K >= vocab, empty drafts, max length, EOS, mixed batches, determinism."""

from __future__ import annotations

import asyncio

import numpy as np

from shared.client import TeacherClient
from shared.protocol import VerifyRequest
from tests.conftest import MAX_MODEL_LEN
from tests.reference import TOL

EOS = 2


def _ctx(n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(3, 512, size=n).tolist()


def _assert_same(a: list[dict], b: list[dict]) -> None:
    """Same decisions, tokens and top-k ids; log-probs equal up to fp32 noise (batch shapes differ)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for key in ("num_accepted", "replacement_id", "token_ids", "teacher_topk_ids"):
            assert x[key] == y[key], key
        for key in ("teacher_token_logprobs", "teacher_topk_logprobs"):
            np.testing.assert_allclose(x[key], y[key], rtol=0, atol=TOL)


def _verify(http, items, **kw):
    resp = http.post("/verify", json={"items": items, **kw})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_k_zero_rejects_every_draft_token(http, hf_teacher):
    items = [{"context_ids": _ctx(20 + i, i), "draft_ids": _ctx(5, 100 + i)} for i in range(6)]
    for res, item in zip(_verify(http, items, top_k=0, seed=1)["items"], items):
        assert res["num_accepted"] == 0 and res["token_ids"] == [res["replacement_id"]]
        row = hf_teacher.row(item["context_ids"], len(item["context_ids"]))
        assert abs(res["teacher_token_logprobs"][0] - row[res["replacement_id"]]) < TOL


def test_k_at_least_vocab_accepts_every_draft_token(http, hf_teacher):
    items = [{"context_ids": _ctx(30, i), "draft_ids": _ctx(6, 50 + i)} for i in range(4)]
    for k in (hf_teacher.vocab_size, 10**9):
        for res, item in zip(_verify(http, items, top_k=k)["items"], items):
            assert res["num_accepted"] == 6 and res["replacement_id"] is None
            assert res["token_ids"] == item["draft_ids"]
            dense = hf_teacher.logprobs(item["context_ids"] + item["draft_ids"])[29:-1]
            got = res["teacher_token_logprobs"]
            np.testing.assert_allclose(got, dense[np.arange(6), item["draft_ids"]], atol=TOL)


def test_empty_draft_returns_one_teacher_token_with_targets(http, hf_teacher):
    ctx = _ctx(40, 3)
    res = _verify(http, [{"context_ids": ctx, "draft_ids": []}], num_logprobs=7, seed=5)["items"][0]
    assert res["num_accepted"] == 0 and len(res["token_ids"]) == 1
    row = hf_teacher.row(ctx, len(ctx))
    np.testing.assert_allclose(res["teacher_topk_logprobs"][0], np.sort(row)[::-1][:7], atol=TOL)
    assert abs(res["teacher_token_logprobs"][0] - row[res["replacement_id"]]) < TOL


def test_draft_reaching_max_length(http, hf_teacher):
    ctx, draft = _ctx(MAX_MODEL_LEN - 5, 4), _ctx(5, 9)
    res = _verify(http, [{"context_ids": ctx, "draft_ids": draft}], top_k=10**9)["items"][0]
    assert res["token_ids"] == draft  # the committed sequence is exactly max_model_len long
    dense = hf_teacher.logprobs(ctx + draft)[len(ctx) - 1 : -1]
    np.testing.assert_allclose(res["teacher_token_logprobs"], dense[np.arange(5), draft], atol=TOL)
    over = http.post("/verify", json={"items": [{"context_ids": [*ctx, 7], "draft_ids": draft}]})
    assert over.status_code == 422 and over.json()["detail"][0]["loc"] == ["body", "items", 0, "draft_ids"]


def test_eos_in_draft_ends_the_sequence(http):
    ctx = _ctx(25, 5)
    res = _verify(http, [{"context_ids": ctx, "draft_ids": [7, EOS, 9, 10]}], top_k=10**9)["items"][0]
    assert res["token_ids"] == [7, EOS] and res["num_accepted"] == 2 and res["replacement_id"] is None


def test_same_seed_same_result(http):
    items = [{"context_ids": _ctx(10 + 7 * i, i), "draft_ids": _ctx(i % 6, 40 + i)} for i in range(12)]
    body = {"items": items, "top_k": 25, "temperature": 1.0, "seed": 42}
    first = http.post("/verify", json=body).json()["items"]
    again = http.post("/verify", json=body).json()["items"]  # now through the prefix cache
    _assert_same(first, again)
    other = http.post("/verify", json={**body, "seed": 43}).json()["items"]
    assert [r["token_ids"] for r in other] != [r["token_ids"] for r in first]


def test_concurrent_requests_match_sequential(teacher_server):
    reqs = [
        VerifyRequest(
            items=[
                {"context_ids": _ctx(15 + 9 * i + j, i * 10 + j), "draft_ids": _ctx(5, 70 + j)}
                for j in range(4)
            ],
            top_k=25,
            temperature=[1.0, 0.6][i % 2],
            top_p=[1.0, 0.9][i % 2],
            seed=i,
        )
        for i in range(10)
    ]

    async def run():
        async with TeacherClient(teacher_server.url) as client:
            sequential = [await client.verify(r) for r in reqs]
            concurrent = await asyncio.gather(*(client.verify(r) for r in reqs))
        return sequential, concurrent

    sequential, concurrent = asyncio.run(run())
    for a, b in zip(sequential, concurrent):
        _assert_same([i.model_dump() for i in a.items], [i.model_dump() for i in b.items])


def test_client_spreads_requests_over_urls_and_skips_a_dead_one(teacher_server):
    """Round-robin over the live teacher URLs; a URL that refuses connections is tried once, then
    skipped for its cool-down, and every request still succeeds with the same result."""
    port = teacher_server.url.rsplit(":", 1)[1]
    urls = ["http://127.0.0.1:9", f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
    req = VerifyRequest.model_validate(
        {"items": [{"context_ids": _ctx(20, 5), "draft_ids": _ctx(5, 6)}], "top_k": 25, "seed": 3}
    )
    attempts: list[str] = []

    async def record(request) -> None:
        attempts.append(f"{request.url.host}:{request.url.port}")

    async def run():
        async with TeacherClient(teacher_server.url) as direct:
            expected = await direct.verify(req)
        async with TeacherClient(urls, cooldown_s=600) as client:
            client._http.event_hooks["request"].append(record)
            return expected, [await client.verify(req) for _ in range(6)]

    expected, results = asyncio.run(run())
    for r in results:
        _assert_same([i.model_dump() for i in expected.items], [i.model_dump() for i in r.items])
    assert attempts.count("127.0.0.1:9") == 1
    served = [a for a in attempts if a != "127.0.0.1:9"]
    assert len(served) == 6 and served.count(f"localhost:{port}") == served.count(f"127.0.0.1:{port}") == 3
