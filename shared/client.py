"""Async HTTP client of the teacher service (httpx), typed by `shared.protocol`.

Requests are spread round-robin over one or more teacher URLs; a URL that fails to connect is skipped
for `cooldown_s` and the request goes to the next one. HTTP errors (4xx/5xx) are raised, not retried:
a bad request is the caller's bug, and retrying it elsewhere would only repeat it.
"""

from __future__ import annotations

import itertools
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


class TeacherUnavailable(RuntimeError):
    """No teacher URL accepted the connection."""


class TeacherClient:
    def __init__(
        self,
        urls: str | list[str],
        *,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        cooldown_s: float = 10.0,
        max_connections: int = 256,
    ):
        self.urls = [u.rstrip("/") for u in ([urls] if isinstance(urls, str) else urls)]
        if not self.urls:
            raise ValueError("TeacherClient needs at least one URL")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        self._turn = itertools.count()
        self._dead_until = [0.0] * len(self.urls)
        self.cooldown_s = cooldown_s

    async def _call(self, method: str, path: str, body: BaseModel | None, out: type[R]) -> R:
        content = body.model_dump_json() if body is not None else None
        now = time.monotonic()
        live = [i for i, t in enumerate(self._dead_until) if t <= now]
        dead = [i for i, t in enumerate(self._dead_until) if t > now]
        k = next(self._turn) % len(live) if live else 0
        errors = []
        # Round-robin over the live URLs only (so a dead one does not double its neighbour's load);
        # the rest are fallbacks for this request, dead ones last.
        for i in live[k:] + live[:k] + dead:
            try:
                resp = await self._http.request(
                    method, self.urls[i] + path, content=content, headers={"content-type": "application/json"}
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                self._dead_until[i] = time.monotonic() + self.cooldown_s
                errors.append(f"{self.urls[i]}: {e!r}")
                continue
            resp.raise_for_status()
            return out.model_validate_json(resp.content)
        raise TeacherUnavailable("no teacher reachable: " + "; ".join(errors))

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
