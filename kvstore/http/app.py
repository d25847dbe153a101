"""The ASGI application: :func:`create_app` builds it on a store; every route gets its
store view through :func:`.scope.scope` (the token's namespace, ``?ns=`` inside it)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..api import AsyncKVStore
from ..errors import KVStoreError
from . import artifacts, console, logs, ops, sessions, values
from .config import HttpConfig
from .errors import HttpError, body, status_of
from .metrics import Metrics

VERSION = "v1"


def create_app(open_store: Callable[[], AsyncKVStore], config: HttpConfig) -> FastAPI:
    """The service over the store ``open_store()`` opens when the application starts (on
    the server's event loop) and that is closed when it stops."""
    config.check()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = open_store()
        try:
            yield
        finally:
            await app.state.store.close()

    app = FastAPI(
        title="kvstore",
        version=VERSION,
        summary="values, logs, artifacts and sessions on object storage",
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.metrics = Metrics()
    app.state.started = time.time()
    for module in (values, logs, artifacts, sessions, ops, console):
        app.include_router(module.router)

    app.add_middleware(Measured, metrics=app.state.metrics)

    @app.exception_handler(HttpError)
    async def http_error(request: Request, exc: HttpError) -> JSONResponse:
        return JSONResponse(body(exc.kind, exc.message), exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def routing_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """No such resource (404), method (405) ...: the same JSON body as every error."""
        kind = HTTPStatus(exc.status_code).phrase.replace(" ", "").replace("-", "")
        return JSONResponse(body(kind, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return JSONResponse(body("ConfigurationError", problems or "bad request"), 400)

    @app.exception_handler(KVStoreError)
    async def library_error(request: Request, exc: KVStoreError) -> JSONResponse:
        return JSONResponse(body(type(exc).__name__, str(exc)), status_of(exc) or 500)

    build = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document without the 422 it adds to every operation: this service
        answers a request it cannot validate with 400 and its own error body."""
        if app.openapi_schema is None:
            document = build()
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    if isinstance(operation, dict):
                        operation.get("responses", {}).pop("422", None)
                schemas = document.get("components", {}).get("schemas", {})
                for name in ("HTTPValidationError", "ValidationError"):
                    schemas.pop(name, None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


class Measured:
    """ASGI middleware: each HTTP request's count by route and status, and its latency
    (a plain ASGI wrapper: Starlette's ``BaseHTTPMiddleware`` costs a task and a stream
    per request)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sent(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - started)
