"""Prometheus metrics of the teacher service, in a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.protocol import Usage, VerifyResponse


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("skd_requests", "HTTP requests", ["route", "status"], registry=r)
        self.items = Counter("skd_items", "Items processed", ["route"], registry=r)
        self.latency = Histogram(
            "skd_request_latency_seconds",
            "Request latency",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.committed = Counter("skd_tokens_committed", "Tokens committed by /verify", registry=r)
        self.drafted = Counter("skd_draft_tokens", "Draft tokens proposed to /verify", registry=r)
        self.accepted = Counter("skd_draft_tokens_accepted", "Draft tokens accepted by /verify", registry=r)
        self.acceptance = Gauge("skd_acceptance_rate", "Accepted / proposed draft tokens so far", registry=r)
        self.computed = Counter("skd_teacher_tokens_computed", "Teacher tokens computed", registry=r)
        self.prompt_tokens = Counter(
            "skd_teacher_prompt_tokens", "Prompt tokens sent to the engine", registry=r
        )
        self.cached_tokens = Counter(
            "skd_teacher_cached_tokens", "Prompt tokens read from the cache", registry=r
        )
        self.engine_requests = Counter("skd_engine_requests", "Engine requests", registry=r)
        self.refused = Counter(
            "skd_requests_refused",
            "Compute requests refused before any work: overloaded (503), body_too_large (413)",
            ["reason"],
            registry=r,
        )
        self.admitted = Gauge(
            "skd_requests_admitted", "Compute requests admitted now (in flight + waiting)", registry=r
        )
        self._drafted = self._accepted = 0

    def record_usage(self, usage: Usage) -> None:
        self.computed.inc(usage.teacher_tokens_computed)
        self.prompt_tokens.inc(usage.prompt_tokens)
        self.cached_tokens.inc(usage.cached_tokens)
        self.engine_requests.inc(usage.engine_requests)

    def record_verify(self, resp: VerifyResponse, drafted: int) -> None:
        accepted = sum(r.num_accepted for r in resp.items)
        self.drafted.inc(drafted)
        self.accepted.inc(accepted)
        self.committed.inc(sum(len(r.token_ids) for r in resp.items))
        self._drafted += drafted
        self._accepted += accepted
        if self._drafted:
            self.acceptance.set(self._accepted / self._drafted)
