"""The HTTP layer: FastAPI routes over one TeacherEngine. Thin by design: parse, check limits, call the
engine, record metrics. The engine is loaded once, at start-up, inside the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hmac
import time
from contextlib import asynccontextmanager

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from rollout_server.config import ServerConfig
from rollout_server.engine import TeacherEngine
from rollout_server.limits import (
    RETRY_AFTER_S,
    AdmissionMiddleware,
    BodyTooLarge,
    InvalidBody,
    OffLoopJsonRoute,
    shutdown_parser,
)
from rollout_server.metrics import Metrics
from rollout_server.validation import (
    RequestRejected,
    check_generate,
    check_request,
    check_score,
    check_verify,
)
from shared.protocol import (
    GenerateRequest,
    GenerateResponse,
    Health,
    ScoreRequest,
    ScoreResponse,
    ServerInfo,
    VerifyRequest,
    VerifyResponse,
)


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class FieldErrors(BaseModel):
    detail: list[ErrorItem]


class Message(BaseModel):
    detail: str


class ApiKeyMiddleware:
    """Every route except /health needs `Authorization: Bearer <key>` (docs and metrics included).
    The scheme is case-insensitive (RFC 7235); the key is compared in constant time."""

    def __init__(self, app, api_key: str):
        self.app = app
        self.expected = api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/health":
            scheme, _, given = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
            valid_key = hmac.compare_digest(given.strip(b" "), self.expected)
            if not (valid_key and scheme.lower() == b"bearer"):
                response = JSONResponse(
                    {"detail": "missing or invalid API key"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(config: ServerConfig, engine: TeacherEngine | None = None) -> FastAPI:
    """The app over `engine`, or over one it starts in its lifespan (and stops at the end) if None."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.engine is None:
            app.state.engine = TeacherEngine.start(config)
        app.state.check_body = functools.partial(check_request, app.state.engine.info())
        # What start-up allocated (the engine, torch, vLLM) is never garbage: out of the collector's
        # full passes, which then take milliseconds instead of blocking the loop for tenths of a second.
        gc.freeze()
        try:
            yield
        finally:
            shutdown_parser()
            if engine is None:  # started here
                app.state.engine.shutdown()

    app = FastAPI(title="SKD teacher service", version="0.1.0", lifespan=lifespan)
    app.state.engine = engine
    app.add_middleware(
        AdmissionMiddleware,
        max_body_bytes=config.max_body_bytes,
        max_queued_requests=config.max_queued_requests,
        metrics=metrics,
    )
    if config.api_key:  # added last: outermost, so an unauthenticated request gets 401 first
        app.add_middleware(ApiKeyMiddleware, api_key=config.api_key)
    _add_error_handlers(app, metrics)
    app.include_router(_routes(metrics, config))
    return app


def _add_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Rejected requests answer a JSON list of errors naming the item and field, and are counted."""

    @app.exception_handler(RequestRejected)
    async def rejected(request: Request, exc: RequestRejected):
        metrics.requests.labels(request.url.path, str(exc.status)).inc()
        return JSONResponse({"detail": exc.errors}, status_code=exc.status)

    @app.exception_handler(InvalidBody)
    async def invalid_body(request: Request, exc: InvalidBody):
        metrics.requests.labels(request.url.path, str(exc.status_code)).inc()
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, exc: BodyTooLarge):
        metrics.refused.labels("body_too_large").inc()
        metrics.requests.labels(request.url.path, "413").inc()
        return JSONResponse({"detail": exc.detail}, status_code=413)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        metrics.requests.labels(request.url.path, "422").inc()
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)


async def _json_response(resp) -> Response:
    """Serialise once with pydantic-core (FastAPI would validate the model again before encoding), item by
    item with turns of the event loop between: one dump of a large response would hold it up (and the GIL:
    a thread would not help)."""
    parts, size = [], 0
    for item in resp.items:
        parts.append(item.model_dump_json())
        size += len(parts[-1])
        if size >= 256 << 10:
            size = 0
            await asyncio.sleep(0)
    rest = resp.model_dump_json(exclude={"items"})  # {"model": ..., "usage": ...}
    body = '{"items":[' + ",".join(parts) + "]" + ("," + rest[1:] if rest != "{}" else "}")
    return Response(body, media_type="application/json")


def _error_responses(config: ServerConfig) -> dict:
    """The refusals a compute route may answer besides FastAPI's 422 (documented for OpenAPI clients)."""
    responses: dict = {
        413: {"model": FieldErrors, "description": "Too many items or tokens, or a body over --max-body-mb"},
        503: {
            "model": Message,
            "description": "Over --max-queued-requests: retry after Retry-After seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": f"{RETRY_AFTER_S}"}},
        },
    }
    if config.api_key:
        responses[401] = {"model": Message, "description": "Missing or invalid API key"}
    return responses


def _memory_gib() -> float:
    """RSS of this server and its processes (vLLM's engine core, the body parser)."""
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total / 2**30


def _routes(metrics: Metrics, config: ServerConfig) -> APIRouter:
    router = APIRouter(route_class=OffLoopJsonRoute)  # bodies parsed in a worker thread
    compute = {"responses": _error_responses(config)}

    async def serve(request: Request, req, check, method: str):
        engine: TeacherEngine = request.app.state.engine
        route, start = request.url.path, time.perf_counter()
        await anyio.to_thread.run_sync(check, req, engine.info())  # loops over every token: off the loop
        resp = await getattr(engine, method)(req)
        metrics.latency.labels(route).observe(time.perf_counter() - start)
        metrics.requests.labels(route, "200").inc()
        metrics.items.labels(route).inc(len(req.items))
        metrics.record_usage(resp.usage)
        return resp

    @router.get("/health", response_model=Health)
    async def health(request: Request):
        engine = request.app.state.engine
        if engine is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        if not engine.healthy:
            return JSONResponse({"status": "error"}, status_code=503)
        if config.max_memory_gib and (used := _memory_gib()) > config.max_memory_gib:
            detail = f"memory {used:.2f} GiB > --max-memory-gib {config.max_memory_gib}: restart me"
            return JSONResponse({"status": "error", "detail": detail}, status_code=503)
        return Health(status="ok")

    @router.get("/info", response_model=ServerInfo)
    async def info(request: Request):
        return request.app.state.engine.info()

    @router.get("/metrics", response_class=PlainTextResponse)
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @router.post("/verify", response_model=VerifyResponse, **compute)
    async def verify(req: VerifyRequest, request: Request) -> Response:
        """Score student drafts; keep each up to its first token outside the teacher's top-K, replace it."""
        resp = await serve(request, req, check_verify, "verify")
        metrics.record_verify(resp, drafted=sum(len(i.draft_ids) for i in req.items))
        return await _json_response(resp)

    @router.post("/score", response_model=ScoreResponse, **compute)
    async def score(req: ScoreRequest, request: Request) -> Response:
        """Teacher top-k log-probs at positions >= start of given sequences (supervised KD, evaluation)."""
        return await _json_response(await serve(request, req, check_score, "score"))

    @router.post("/generate", response_model=GenerateResponse, **compute)
    async def generate(req: GenerateRequest, request: Request) -> Response:
        """Teacher sampling from prompts with per-token top-k targets (the teacher-sampling baseline)."""
        return await _json_response(await serve(request, req, check_generate, "generate"))

    return router
