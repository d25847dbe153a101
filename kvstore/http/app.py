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
from . import artifacts, calls, console, logs, ops, sessions, values
from .config import HttpConfig
from .errors import HttpError, body, status_of
from .metrics import Metrics
from .scope import token_of

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
    for module in (values, logs, artifacts, sessions, ops, calls, console):
        app.include_router(module.router)

    app.add_middleware(Guarded, config=config)
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

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        """A bug: the same JSON body, and ``Connection: close`` - the server drops the
        connection after an unhandled error, and a client must not send its next request
        on it (it would fail without having been received)."""
        return JSONResponse(
            body("InternalServerError", "the service failed; its log says why"),
            500,
            headers={"Connection": "close"},
        )

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


class _TooLarge(BaseException):
    """A request body passed the limit while the application read it (a BaseException:
    the framework's body parsing must not turn it into a 400)."""


class Guarded:
    """ASGI middleware, before anything reads a request's body: a request that may write
    (POST, PUT, PATCH, DELETE) must carry a valid bearer token (401 otherwise - the body
    is never read for a caller the service does not know), and its body is at most
    ``max_body`` bytes (413: by ``Content-Length`` at once, or when a streamed body passes
    it). Artifact uploads are streamed into the store and have no limit; the console's
    login and logout forms (no bearer token yet) keep their own small limit."""

    WRITES = frozenset(("POST", "PUT", "PATCH", "DELETE"))
    OPEN = ("/console/login", "/console/logout")

    def __init__(self, app: Any, config: HttpConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in self.WRITES:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in self.OPEN:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            token_of(self.config, headers.get("authorization"))
        except HttpError as exc:
            await _answer(send, exc)
            return
        if scope["method"] == "PUT" and path.startswith("/v1/artifacts/"):
            await self.app(scope, receive, send)
            return
        limit = self.config.max_body
        declared = headers.get("content-length", "")
        too_large = HttpError(413, "PayloadTooLarge", f"the body is over {limit} bytes")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, too_large)
            return
        seen = 0
        started = False

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if started:
                raise RuntimeError("a body passed the limit after the answer began") from None
            await _answer(send, too_large)


async def _answer(send: Any, exc: HttpError) -> None:
    """Send ``exc`` as the service's JSON error answer, straight over ASGI."""
    response = JSONResponse(body(exc.kind, exc.message), exc.status, headers=exc.headers)
    await response({"type": "http"}, _nothing, send)


async def _nothing() -> Any:
    return {"type": "http.disconnect"}
