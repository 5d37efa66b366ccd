"""HTTP clients of the teacher service (httpx), typed by `shared.protocol`: every call to a teacher goes
through here. `TeacherEndpoint` is one server, synchronous and without retries: the checks a job makes once
at start-up. `TeacherClient` is the async client of the rollout, described below.

Requests are spread round-robin over one or more teacher URLs. A teacher that is away (transport error:
refused, reset, dropped mid-request; or 502/503/504) does not fail the caller: the request goes to the next
URL at once, and once every URL has failed it is retried with bounded exponential backoff and jitter,
honouring a server's `Retry-After`, until the outage has lasted `outage_s`. Retrying is safe: a request
is deterministic given its seed. A URL that failed is tried again after `cooldown_s` (so a restarted
teacher comes back, including one that was down when the run started). Each outage and each recovery is
logged once, not per request. Other HTTP errors (4xx, 500) are raised at once: a bad request or a server
bug would only repeat elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import subprocess
import time
from typing import TypeVar

import httpx
from pydantic import BaseModel

from shared.protocol import (
    GenerateRequest,
    GenerateResponse,
    ScoreRequest,
    ScoreResponse,
    ServerInfo,
    VerifyRequest,
    VerifyResponse,
)

R = TypeVar("R", bound=BaseModel)
logger = logging.getLogger(__name__)
RETRYABLE_STATUS = frozenset({502, 503, 504})


class TeacherUnavailable(RuntimeError):
    """No teacher answered within the outage limit."""


class TeacherRefused(RuntimeError):
    """A teacher answered a start-up check with an error status."""

    def __init__(self, url: str, status: int, text: str):
        super().__init__(f"{url} answered {status}: {text[:500]}")
        self.status = status


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The bearer header of a teacher protected by an API key (none without a key)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class TeacherEndpoint:
    """One teacher server, synchronously and without retries, for checks where an answer now is what
    counts: is it up, what does it serve, a probe's log-probs. Transport errors (nothing answers) are
    httpx's; an error status raises `TeacherRefused`."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 10.0):
        self.url = url.rstrip("/")
        self._http = httpx.Client(headers=auth_headers(api_key), timeout=timeout_s)

    def healthy(self) -> bool:
        return self._http.get(self.url + "/health").status_code == 200

    def info(self) -> ServerInfo:
        return ServerInfo.model_validate_json(self._checked(self._http.get(self.url + "/info")).content)

    def metrics(self) -> str:
        """The server's Prometheus exposition (`/metrics`)."""
        return self._checked(self._http.get(self.url + "/metrics")).text

    def score(self, req: ScoreRequest, timeout_s: float = 120.0) -> ScoreResponse:
        resp = self._http.post(
            self.url + "/score",
            content=req.model_dump_json(),
            headers={"content-type": "application/json"},
            timeout=timeout_s,
        )
        return ScoreResponse.model_validate_json(self._checked(resp).content)

    def _checked(self, resp: httpx.Response) -> httpx.Response:
        if resp.status_code != 200:
            raise TeacherRefused(str(resp.request.url), resp.status_code, resp.text)
        return resp

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TeacherEndpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def wait_until_healthy(url: str, started: subprocess.Popen | None = None, timeout_s: float = 600.0) -> None:
    """Until the server at `url` answers /health with 200 (a server loads its engine before it binds its
    port: refused connections mean "not yet"). `started`: the server's process, if the caller started it;
    its exit ends the wait. Raises TeacherUnavailable saying which."""
    deadline = time.monotonic() + timeout_s
    while True:
        if started is not None and started.poll() is not None:
            raise TeacherUnavailable(
                f"teacher server at {url} exited ({started.returncode}) before it was up"
            )
        with contextlib.suppress(httpx.TransportError), TeacherEndpoint(url, timeout_s=2) as teacher:
            if teacher.healthy():
                return
        if time.monotonic() > deadline:
            raise TeacherUnavailable(f"teacher server at {url} not healthy after {timeout_s:.0f} s")
        time.sleep(0.5)


class _Away(Exception):
    """One URL failed in a way worth retrying elsewhere or later."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


class TeacherClient:
    def __init__(
        self,
        urls: str | list[str],
        *,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        cooldown_s: float = 5.0,
        outage_s: float = 600.0,
        backoff_s: tuple[float, float] = (0.25, 10.0),
        max_connections: int = 256,
    ):
        self.urls = [u.rstrip("/") for u in ([urls] if isinstance(urls, str) else urls)]
        if not self.urls:
            raise ValueError("TeacherClient needs at least one URL")
        self._http = httpx.AsyncClient(
            headers=auth_headers(api_key),
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        self._turn = itertools.count()
        self._dead_until = [0.0] * len(self.urls)
        self._down_reason: list[str | None] = [None] * len(self.urls)  # logged once per outage of a URL
        self._outage_since: float | None = None  # every URL failing since then
        self.cooldown_s, self.outage_s, self.backoff_s = cooldown_s, outage_s, backoff_s
        self.retries = 0  # requests sent again after a failure (a counter for metrics and tests)

    def _order(self) -> list[int]:
        """Round-robin over the live URLs (a dead one does not double its neighbour's load); the rest are
        fallbacks for this request, those whose cooldown ends soonest first."""
        now = time.monotonic()
        live = [i for i, t in enumerate(self._dead_until) if t <= now]
        dead = sorted(
            (i for i, t in enumerate(self._dead_until) if t > now), key=self._dead_until.__getitem__
        )
        k = next(self._turn) % len(live) if live else 0
        return live[k:] + live[:k] + dead

    def _mark_down(self, i: int, reason: str) -> None:
        self._dead_until[i] = time.monotonic() + self.cooldown_s
        if self._down_reason[i] is None:
            self._down_reason[i] = reason
            logger.warning("teacher %s is away (%s); retrying elsewhere or later", self.urls[i], reason)

    def _mark_up(self, i: int) -> None:
        self._dead_until[i] = 0.0
        if self._down_reason[i] is not None:
            self._down_reason[i] = None
            logger.warning("teacher %s is back", self.urls[i])
        if self._outage_since is not None:
            logger.warning("teacher outage over after %.1f s", time.monotonic() - self._outage_since)
            self._outage_since = None

    async def _send(self, i: int, method: str, path: str, content: str | None) -> httpx.Response:
        try:
            resp = await self._http.request(
                method, self.urls[i] + path, content=content, headers={"content-type": "application/json"}
            )
        except httpx.TransportError as e:  # refused, reset, dropped mid-request, timed out
            raise _Away(type(e).__name__) from None
        if resp.status_code in RETRYABLE_STATUS:
            raise _Away(f"HTTP {resp.status_code}", _retry_after(resp))
        return resp

    async def _call(self, method: str, path: str, body: BaseModel | None, out: type[R]) -> R:
        content = body.model_dump_json() if body is not None else None
        for attempt in itertools.count():
            waits = []
            for i in self._order():
                try:
                    resp = await self._send(i, method, path, content)
                except _Away as e:
                    self._mark_down(i, str(e))
                    waits.append(e.retry_after)
                    self.retries += 1
                    continue
                self._mark_up(i)
                resp.raise_for_status()
                return out.model_validate_json(resp.content)
            await self._wait_out(attempt, waits)
        raise AssertionError("unreachable")

    async def _wait_out(self, attempt: int, retry_after: list[float | None]) -> None:
        """Every URL failed: back off (exponential, full jitter, at least a server's Retry-After) or give up
        once the outage has lasted `outage_s`."""
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            logger.warning("no teacher reachable; waiting up to %.0f s for one to return", self.outage_s)
        elapsed = now - self._outage_since
        if elapsed >= self.outage_s:
            reasons = "; ".join(f"{u}: {r}" for u, r in zip(self.urls, self._down_reason) if r)
            raise TeacherUnavailable(f"no teacher reachable for {elapsed:.0f} s ({reasons})")
        low, high = self.backoff_s
        delay = random.uniform(low, min(high, low * 2**attempt))
        hinted = [r for r in retry_after if r is not None]
        if hinted and len(hinted) == len(retry_after):  # every URL asked to come back later
            delay = max(delay, min(hinted))
        await asyncio.sleep(min(delay, self.outage_s - elapsed))

    async def verify(self, req: VerifyRequest) -> VerifyResponse:
        return await self._call("POST", "/verify", req, VerifyResponse)

    async def score(self, req: ScoreRequest) -> ScoreResponse:
        return await self._call("POST", "/score", req, ScoreResponse)

    async def generate(self, req: GenerateRequest) -> GenerateResponse:
        return await self._call("POST", "/generate", req, GenerateResponse)

    async def info(self) -> ServerInfo:
        return await self._call("GET", "/info", None, ServerInfo)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> TeacherClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
