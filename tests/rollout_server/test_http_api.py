"""HTTP surface: bad input gets a clear 4xx and changes nothing; auth; health, info, metrics, docs."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import API_KEY, MAX_MODEL_LEN

GOOD = {"context_ids": [5, 6, 7], "draft_ids": [8, 9]}


def _counter(http, name: str) -> float:
    text = http.get("/metrics").text
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def _engine_requests(http) -> float:
    return _counter(http, "skd_engine_requests_total")


BAD_VERIFY = [
    ("malformed json", b'{"items": [', 422, ["body"]),
    ("wrong type", {"items": [{"context_ids": "abc"}]}, 422, ["body", "items", 0, "context_ids"]),
    ("negative id", {"items": [GOOD, {"context_ids": [1, -3]}]}, 422, ["body", "items", 1, "context_ids", 1]),
    ("id outside vocab", {"items": [GOOD, {"context_ids": [1], "draft_ids": [4, 5, 512]}]}, 422,
     ["body", "items", 1, "draft_ids", 2]),
    ("too long", {"items": [{"context_ids": [5] * MAX_MODEL_LEN, "draft_ids": [6]}]}, 422,
     ["body", "items", 0, "draft_ids"]),
    ("empty context", {"items": [{"context_ids": []}]}, 422, ["body", "items", 0, "context_ids"]),
    ("negative K", {"items": [GOOD], "top_k": -1}, 422, ["body", "top_k"]),
    ("num_logprobs above limit", {"items": [GOOD], "num_logprobs": 65}, 422, ["body", "num_logprobs"]),
    ("bad top_p", {"items": [GOOD], "top_p": 0}, 422, ["body", "top_p"]),
    # ranges the engine accepts (vLLM's SamplingParams): refused here, not with a 500 from inside it
    ("temperature above 2", {"items": [GOOD], "temperature": 2.5}, 422, ["body", "temperature"]),
    ("temperature below 0.01", {"items": [GOOD], "temperature": 0.005}, 422, ["body", "temperature"]),
    ("temperature not finite", b'{"items": [{"context_ids": [1]}], "temperature": NaN}', 422,
     ["body", "temperature"]),
    ("seed above int64", {"items": [GOOD], "seed": 2**63}, 422, ["body", "seed"]),
    ("top_k above int64", {"items": [GOOD], "top_k": 2**64}, 422, ["body", "top_k"]),
    ("huge token id", {"items": [{"context_ids": [2**40]}]}, 422, ["body", "items", 0, "context_ids", 0]),
    ("empty items", {"items": []}, 422, ["body", "items"]),
    ("unknown field", {"items": [GOOD], "topk": 3}, 422, ["body", "topk"]),
    ("too many items", {"items": [{"context_ids": [1]}] * 4001}, 413, ["body", "items"]),
    ("too many tokens", {"items": [{"context_ids": [1] * 200}] * 1001}, 413, ["body", "items"]),
]  # fmt: skip


@pytest.mark.parametrize("name,body,status,loc", BAD_VERIFY, ids=[b[0] for b in BAD_VERIFY])
def test_bad_verify_input_is_rejected_and_changes_nothing(http, name, body, status, loc):
    before = _engine_requests(http)
    if isinstance(body, bytes):
        resp = http.post("/verify", content=body, headers={"content-type": "application/json"})
    else:
        resp = http.post("/verify", json=body)
    assert resp.status_code == status, resp.text
    detail = resp.json()["detail"]
    assert detail[0]["loc"] == loc and detail[0]["msg"]
    assert _engine_requests(http) == before


@pytest.mark.parametrize(
    "path,body,loc",
    [
        ("/score", {"items": [{"token_ids": [1, 2, 3], "start": 3}]}, ["body", "items", 0, "start"]),
        ("/score", {"items": [{"token_ids": [1, 999]}]}, ["body", "items", 0, "token_ids", 1]),
        ("/generate", {"items": [{"prompt_ids": [1] * MAX_MODEL_LEN}]}, ["body", "items", 0, "prompt_ids"]),
        ("/generate", {"items": [{"prompt_ids": [1]}], "max_tokens": 0}, ["body", "max_tokens"]),
        ("/generate", {"items": [{"prompt_ids": [1]}], "temperature": 3}, ["body", "temperature"]),
        ("/generate", {"items": [{"prompt_ids": [1]}], "num_logprobs": 65}, ["body", "num_logprobs"]),
        ("/score", {"items": [{"token_ids": [1, 2]}], "num_logprobs": -1}, ["body", "num_logprobs"]),
    ],
)
def test_bad_score_and_generate_input(http, path, body, loc):
    before = _engine_requests(http)
    resp = http.post(path, json=body)
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == loc
    assert _engine_requests(http) == before


def test_health_info_docs_metrics(http):
    assert http.get("/health").json() == {"status": "ok"}
    info = http.get("/info").json()
    assert info["vocab_size"] == 512 and info["max_model_len"] == MAX_MODEL_LEN and info["prefix_caching"]
    assert "/verify" in http.get("/openapi.json").json()["paths"]
    assert http.get("/docs").status_code == 200
    committed = _counter(http, "skd_tokens_committed_total")
    resp = http.post("/verify", json={"items": [GOOD], "top_k": 10**6})  # K beyond the vocabulary: all kept
    assert resp.status_code == 200, resp.text
    (item,) = resp.json()["items"]
    assert item["num_accepted"] == 2 and item["token_ids"] == GOOD["draft_ids"]
    assert _counter(http, "skd_tokens_committed_total") - committed == 2  # this request's 2 tokens
    text = http.get("/metrics").text
    for name in (
        "skd_requests_total",
        "skd_items_total",
        "skd_tokens_committed_total",
        "skd_acceptance_rate",
        "skd_teacher_tokens_computed_total",
        "skd_request_latency_seconds_bucket",
    ):
        assert name in text


def test_api_key_protects_everything_but_health(second_server, teacher_server):
    url = second_server.url
    assert httpx.get(url + "/health").status_code == 200
    for method, path in [("GET", "/info"), ("GET", "/metrics"), ("GET", "/docs"), ("GET", "/openapi.json"),
                         ("POST", "/verify"), ("POST", "/score"), ("POST", "/generate")]:  # fmt: skip
        body = {"items": [GOOD]} if method == "POST" else None
        assert httpx.request(method, url + path, json=body).status_code == 401, path
        wrong = {"Authorization": "Bearer nope"}
        assert httpx.request(method, url + path, json=body, headers=wrong).status_code == 401, path
    key = {"Authorization": f"Bearer {API_KEY}"}
    ok = httpx.post(url + "/verify", json={"items": [GOOD]}, headers=key, timeout=60)  # 1st pass
    assert ok.status_code == 200 and len(ok.json()["items"]) == 1
    # the scheme is case-insensitive (RFC 7235); the key is not, nor is another scheme accepted
    for scheme in ("bearer", "BEARER"):
        assert httpx.get(url + "/info", headers={"Authorization": f"{scheme} {API_KEY}"}).status_code == 200
    for bad in (f"Basic {API_KEY}", f"Bearer {API_KEY.upper()}", f"Bearer{API_KEY}", API_KEY):
        assert httpx.get(url + "/info", headers={"Authorization": bad}).status_code == 401, bad
    # without --api-key the same routes are open
    assert httpx.get(teacher_server.url + "/info").status_code == 200


def test_temperature_below_the_engine_minimum_says_why(http):
    """vLLM would silently raise 0 < T < 0.01 to 0.01 (a warning in the server log only)."""
    for path, item in (("/verify", GOOD), ("/generate", {"prompt_ids": [1]})):
        resp = http.post(path, json={"items": [item], "temperature": 1e-3})
        assert resp.status_code == 422
        assert "0 (greedy)" in resp.json()["detail"][0]["msg"] and "0.01" in resp.json()["detail"][0]["msg"]
    for t in (0.0, 0.01, 2.0):  # the bounds themselves are served
        assert http.post("/verify", json={"items": [GOOD], "temperature": t, "seed": 1}).status_code == 200
        body = {"items": [{"prompt_ids": [1]}], "temperature": t, "max_tokens": 2}
        resp = http.post("/generate", json=body)
        assert resp.status_code == 200
