"""The ASGI application: :func:`create_app` builds it on a store; every route gets its
store view through :func:`.scope.scope` (the token's namespace, ``?ns=`` inside it)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..api import AsyncKVStore
from ..errors import KVStoreError
from . import artifacts, logs, ops, sessions, values
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
    for module in (values, logs, artifacts, sessions, ops):
        app.include_router(module.router)

    @app.middleware("http")
    async def measure(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        app.state.metrics.observe(
            request.method, name, response.status_code, time.perf_counter() - started
        )
        return response

    @app.exception_handler(HttpError)
    async def http_error(request: Request, exc: HttpError) -> JSONResponse:
        return JSONResponse(body(exc.kind, exc.message), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return JSONResponse(body("ConfigurationError", problems or "bad request"), 400)

    @app.exception_handler(KVStoreError)
    async def library_error(request: Request, exc: KVStoreError) -> JSONResponse:
        return JSONResponse(body(type(exc).__name__, str(exc)), status_of(exc) or 500)

    return app
