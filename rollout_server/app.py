"""The HTTP layer: FastAPI routes over one TeacherEngine. Thin by design: parse, check limits, call the
engine, record metrics. The engine is loaded once, at start-up, inside the app's lifespan."""

from __future__ import annotations

import hmac
import time
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rollout_server.config import ServerConfig
from rollout_server.engine import TeacherEngine
from rollout_server.metrics import Metrics
from rollout_server.validation import RequestRejected, check_generate, check_score, check_verify
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


class ApiKeyMiddleware:
    """Every route except /health needs `Authorization: Bearer <key>` (docs and metrics included)."""

    def __init__(self, app, api_key: str):
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/health":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = JSONResponse(
                    {"detail": "missing or invalid API key"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(config: ServerConfig) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.engine = TeacherEngine.start(config)
        yield
        app.state.engine.shutdown()

    app = FastAPI(title="SKD teacher service", version="0.1.0", lifespan=lifespan)
    app.state.engine = None
    if config.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=config.api_key)
    _add_error_handlers(app, metrics)
    app.include_router(_routes(metrics))
    return app


def _add_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Rejected requests answer a JSON list of errors naming the item and field, and are counted."""

    @app.exception_handler(RequestRejected)
    async def rejected(request: Request, exc: RequestRejected):
        metrics.requests.labels(request.url.path, str(exc.status)).inc()
        return JSONResponse({"detail": exc.errors}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        metrics.requests.labels(request.url.path, "422").inc()
        errors = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)


def _json_response(resp) -> Response:
    """Serialise once with pydantic-core (FastAPI would validate the model again before encoding)."""
    return Response(resp.model_dump_json(), media_type="application/json")


def _routes(metrics: Metrics) -> APIRouter:
    router = APIRouter()

    async def serve(request: Request, req, check, method: str):
        engine: TeacherEngine = request.app.state.engine
        route, start = request.url.path, time.perf_counter()
        check(req, engine.info())
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
        return Health(status="ok")

    @router.get("/info", response_model=ServerInfo)
    async def info(request: Request):
        return request.app.state.engine.info()

    @router.get("/metrics")
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @router.post("/verify", response_model=VerifyResponse)
    async def verify(req: VerifyRequest, request: Request) -> Response:
        """Score student drafts; keep each up to its first token outside the teacher's top-K, replace it."""
        resp = await serve(request, req, check_verify, "verify")
        metrics.record_verify(resp, drafted=sum(len(i.draft_ids) for i in req.items))
        return _json_response(resp)

    @router.post("/score", response_model=ScoreResponse)
    async def score(req: ScoreRequest, request: Request) -> Response:
        """Teacher top-k log-probs at positions >= start of given sequences (supervised KD, evaluation)."""
        return _json_response(await serve(request, req, check_score, "score"))

    @router.post("/generate", response_model=GenerateResponse)
    async def generate(req: GenerateRequest, request: Request) -> Response:
        """Teacher sampling from prompts with per-token top-k targets (the teacher-sampling baseline)."""
        return _json_response(await serve(request, req, check_generate, "generate"))

    return router
