"""What keeps the server responsive under too much work: bounded admission, a body size limit, and JSON
bodies parsed off the event loop.

- `AdmissionMiddleware` (pure ASGI, before any body is read): a compute request (/verify, /score,
  /generate) whose `Content-Length` is above the body limit answers 413 at once, unread; one whose streamed
  (chunked) body grows past it answers 413 as soon as it does. At most `max_queued_requests` compute
  requests are admitted at once (in flight + waiting for the engine); one more answers 503 with
  `Retry-After`. /health, /info and /metrics are never refused.
- `OffLoopJsonRoute`: FastAPI parses and validates a body on the event loop (53 MiB: ~3 s during which
  /health cannot answer). This route class keeps FastAPI's request model (and so its OpenAPI schema) but
  parses with pydantic-core elsewhere: a small body in a worker thread; a large one in a worker process,
  because parsing holds the GIL throughout (a thread would block the loop just the same). The process sends
  the items back one pickle each, and they are unpickled here a slice at a time, letting the loop run
  between slices.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import anyio
from fastapi import HTTPException
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from rollout_server.metrics import Metrics
from rollout_server.validation import RequestRejected

COMPUTE_PATHS = frozenset({"/verify", "/score", "/generate"})
RETRY_AFTER_S = 1


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit (FastAPI re-raises HTTPExceptions)."""

    def __init__(self, limit: int):
        super().__init__(413, too_large_detail(f"request body > limit {limit} bytes"))


class InvalidBody(HTTPException):
    """A body that does not validate against the route's model (422, like FastAPI's own) or is over the
    server's limits (413/422 from `validation`). An HTTPException: FastAPI passes it on unchanged."""

    def __init__(self, errors: list[dict], status: int = 422):
        super().__init__(status, errors)


def too_large_detail(msg: str) -> list[dict]:
    return [{"loc": ["body"], "msg": msg + " (--max-body-mb)", "type": "too_large"}]


class AdmissionMiddleware:
    def __init__(self, app, *, max_body_bytes: int, max_queued_requests: int, metrics: Metrics):
        self.app = app
        self.max_body = max_body_bytes
        self.max_queued = max_queued_requests
        self.metrics = metrics
        self.admitted = 0  # one event loop: no lock needed

    async def __call__(self, scope, receive, send):
        path = scope.get("path")
        if scope["type"] != "http" or path not in COMPUTE_PATHS:
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            msg = f"Content-Length {length.decode(errors='replace')[:32]} > limit {self.max_body} bytes"
            await self._refuse(scope, receive, send, 413, "body_too_large", {"detail": too_large_detail(msg)})
            return
        if self.admitted >= self.max_queued:
            detail = (
                f"server busy: {self.admitted} requests admitted (--max-queued-requests "
                f"{self.max_queued}); retry after {RETRY_AFTER_S} s"
            )
            await self._refuse(
                scope,
                receive,
                send,
                503,
                "overloaded",
                {"detail": detail},
                {"Retry-After": str(RETRY_AFTER_S)},
            )
            return

        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)  # answered (and counted) by the app's handler
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        self.admitted += 1
        self.metrics.admitted.set(self.admitted)
        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge as exc:  # only if the app let it through
            if started:
                raise
            await self._refuse(scope, receive, send, 413, "body_too_large", {"detail": exc.detail})
        finally:
            self.admitted -= 1
            self.metrics.admitted.set(self.admitted)

    async def _refuse(self, scope, receive, send, status: int, reason: str, body: dict, headers=None):
        self.metrics.refused.labels(reason).inc()
        self.metrics.requests.labels(scope["path"], str(status)).inc()
        await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)


LARGE_BODY_BYTES = 1 << 20  # parsed in the worker process above this (below: ~30 ms in a thread)
_SLICE_BYTES = 256 << 10  # pickled items unpickled between two turns of the event loop
_pool: ProcessPoolExecutor | None = None


def _errors(e: ValidationError) -> list[dict]:
    return [{"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]} for err in e.errors()]


def _validate(model: type[BaseModel], body: bytes) -> BaseModel:
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        raise InvalidBody(_errors(e)) from None


def _die_with(server_pid: int) -> None:
    """In the worker process: killed when the server dies, however it dies (Linux parent-death signal;
    the worker would otherwise wait for work forever)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != server_pid:  # the server died before the signal was armed
        os._exit(1)


def _validate_in_worker(model: type[BaseModel], body: bytes, check) -> tuple[bytes, list[bytes]] | list[dict]:
    """In the worker process: the errors, or the model without its items and each item pickled. `check`
    (the server's limits) raises here too, so an oversized request's items are never rebuilt in the
    server process (thousands of objects: the garbage collector's pauses would block the loop)."""
    try:
        parsed = model.model_validate_json(body)
    except ValidationError as e:
        return _errors(e)
    if check is not None:
        check(parsed)
    items = getattr(parsed, "items", None)
    if not isinstance(items, list):
        return pickle.dumps(parsed), []
    return pickle.dumps(parsed.model_copy(update={"items": []})), [pickle.dumps(i) for i in items]


async def _validate_large(model: type[BaseModel], body: bytes, check) -> BaseModel:
    global _pool
    if _pool is None:  # started on the first large body; `spawn`: the server process has threads
        _pool = ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with, initargs=(os.getpid(),)
        )
    loop = asyncio.get_running_loop()
    try:
        result = await loop.run_in_executor(_pool, _validate_in_worker, model, body, check)
    except RequestRejected as e:
        raise InvalidBody(e.errors, e.status) from None
    if isinstance(result, list):
        raise InvalidBody(result)
    head, pickled_items = result
    parsed = pickle.loads(head)
    if pickled_items:
        items, size = [], 0
        for p in pickled_items:
            items.append(pickle.loads(p))
            size += len(p)
            if size >= _SLICE_BYTES:
                size = 0
                await asyncio.sleep(0)
        parsed.items = items  # validated in the worker
    return parsed


def shutdown_parser() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(cancel_futures=True)
        _pool = None


class _OffLoopJsonRequest(Request):
    def __init__(self, scope, receive, model: type[BaseModel]):
        super().__init__(scope, receive)
        self._model = model

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if len(body) > LARGE_BODY_BYTES:
                check = getattr(self.app.state, "check_body", None)  # picklable: see create_app
                self._json = await _validate_large(self._model, body, check)
            else:
                self._json = await anyio.to_thread.run_sync(_validate, self._model, body)
        return self._json  # a validated model: FastAPI's own validation of it is a no-op


class OffLoopJsonRoute(APIRoute):
    """A route whose pydantic body model is parsed and validated in a worker thread."""

    def get_route_handler(self):
        handler = super().get_route_handler()
        model = self.body_field.field_info.annotation if self.body_field else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return handler

        async def parse_off_loop(request: Request):
            return await handler(_OffLoopJsonRequest(request.scope, request.receive, model))

        return parse_off_loop
