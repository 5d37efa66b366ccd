"""/score and /generate against the dense reference."""

from __future__ import annotations

import numpy as np

from tests.reference import TOL


def test_score_matches_dense_and_survives_cache_hits(http, hf_teacher):
    rng = np.random.default_rng(1)
    items = [
        {"token_ids": rng.integers(3, 512, size=n).tolist(), "start": s}
        for n, s in [(40, 1), (70, 64), (100, 33)]
    ]
    first = http.post("/score", json={"items": items, "num_logprobs": 5}).json()
    # The same sequences again hit the prefix cache up to the scored rows: results must not change.
    again = http.post("/score", json={"items": items, "num_logprobs": 5}).json()
    assert again["usage"]["cached_tokens"] > 0
    for item, a, b in zip(items, first["items"], again["items"]):
        ids, s = item["token_ids"], item["start"]
        dense = hf_teacher.logprobs(ids)[s - 1 : -1]
        assert len(a["teacher_token_logprobs"]) == len(ids) - s
        np.testing.assert_allclose(
            a["teacher_token_logprobs"], dense[np.arange(len(ids) - s), ids[s:]], atol=TOL
        )
        np.testing.assert_allclose(a["teacher_topk_logprobs"], np.sort(dense, -1)[:, ::-1][:, :5], atol=TOL)
        np.testing.assert_allclose(a["teacher_token_logprobs"], b["teacher_token_logprobs"], atol=TOL)


def test_generate_greedy_matches_dense_and_carries_targets(http, hf_teacher):
    prompt = np.random.default_rng(2).integers(3, 512, size=20).tolist()
    body = {"items": [{"prompt_ids": prompt}], "max_tokens": 12, "temperature": 0.0, "num_logprobs": 4}
    res = http.post("/generate", json=body).json()["items"][0]
    tokens = res["token_ids"]
    dense = hf_teacher.logprobs(prompt + tokens)[len(prompt) - 1 : -1]
    for j, t in enumerate(tokens):
        if t == 2:
            break
        assert t == int(np.argmax(dense[j]))  # greedy
    np.testing.assert_allclose(res["teacher_token_logprobs"], dense[np.arange(len(tokens)), tokens], atol=TOL)
    np.testing.assert_allclose(res["teacher_topk_logprobs"], np.sort(dense, -1)[:, ::-1][:, :4], atol=TOL)


def test_generate_stops_at_eos_or_length(http):
    rng = np.random.default_rng(3)
    items = [{"prompt_ids": rng.integers(3, 512, size=8).tolist()} for _ in range(128)]
    body = {"items": items, "max_tokens": 48, "temperature": 1.5, "num_logprobs": 0, "seed": 9}
    results = http.post("/generate", json=body).json()["items"]
    for res in results:
        tokens = res["token_ids"]
        assert 2 not in tokens[:-1]  # nothing after EOS
        if res["finish_reason"] == "stop":
            assert tokens[-1] == 2
        else:
            assert res["finish_reason"] == "length" and len(tokens) == 48 and tokens[-1] != 2
        assert res["teacher_topk_ids"] == [[] for _ in tokens]
    reasons = [res["finish_reason"] for res in results]  # both ends happened, so both were checked above
    assert reasons.count("stop") >= 2 and reasons.count("length") >= 2, reasons
