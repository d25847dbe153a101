"""Operations: ``/health`` (store and cache, answered within its timeout whatever they
do), ``/v1/stats`` (the store's counters and the service's) and ``/metrics``
(Prometheus)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from .errors import responses
from .metrics import prometheus
from .routing import refuse_other_methods
from .scope import Scoped

router = APIRouter(tags=["operations"])

HEALTH_TIMEOUT = 2.0
"""Seconds ``/health`` waits for the object store (and the cache) at most."""


class StoreHealth(BaseModel):
    ok: bool
    latency_ms: float


class CacheHealth(BaseModel):
    kind: str
    ok: bool


class Health(BaseModel):
    """What ``/health`` says: is all well, the store's answer and the cache's."""

    ok: bool
    store: StoreHealth
    cache: CacheHealth


@router.get(
    "/health",
    summary="Is the object store reachable, and the cache? (no token needed; 503 if not)",
    responses={
        200: {"model": Health},
        503: {"model": Health, "description": "the store or the cache is unavailable"},
    },
)
async def health(request: Request) -> JSONResponse:
    """One GET of an absent probe object and the cache's ping, each bounded: answered
    within ~2 s even when the store hangs. Says only what is up and how fast - no URL,
    no error text (those are in ``/v1/stats``, behind a token)."""
    found = await request.app.state.store.health(timeout=HEALTH_TIMEOUT)
    report = {
        "ok": found["ok"],
        "store": {"ok": found["store"]["ok"], "latency_ms": found["store"]["latency_ms"]},
        "cache": {"kind": found["cache"]["kind"], "ok": found["cache"]["ok"]},
    }
    return JSONResponse(report, 200 if found["ok"] else 503)


@router.get(
    "/v1/stats",
    summary="The store's counters (requests by kind, cache hits) and the service's",
    responses=responses(403),
)
async def stats(
    request: Request,
    scoped: Scoped,
    health: Annotated[bool, Query(description="also check the store and cache now")] = False,
) -> dict[str, Any]:
    scoped.require_whole()
    out: dict[str, Any] = {
        "store": scoped.store.stats(),
        "service": request.app.state.metrics.snapshot(),
    }
    if health:
        out["health"] = await scoped.store.health(timeout=HEALTH_TIMEOUT)
    return out


@router.get(
    "/metrics",
    summary="Prometheus metrics: HTTP requests and latencies, object-store requests",
    response_class=PlainTextResponse,
    responses=responses(403),
)
async def metrics(request: Request, scoped: Scoped) -> PlainTextResponse:
    scoped.require_whole()
    text = prometheus(request.app.state.metrics, request.app.state.store.stats())
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


refuse_other_methods(router)
