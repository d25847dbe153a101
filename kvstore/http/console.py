"""The web console: HTML pages over the store, rendered on the server (no build step, no
script; see :mod:`.console_html` for how every value is escaped).

===========================================  ==============================================
``GET /``                                    overview of the view (``?ns=``): child
                                             namespaces, counts, the stats panel and chart
``GET /console/keys?prefix=&after=``         value keys with type, TTL, size (paged); logs
``GET /console/value?key=``                  a value (text or hex, cut at 4 KiB)
``GET /console/log?key=&start=``             a log, 50 records a page
``GET /console/artifacts?prefix=``           artifact names
``GET /console/artifact?name=``              its versions, each with a download link
                                             (``/v1/artifacts/{name}?version=n``)
``GET /console/sessions?app=&user=``         an app's sessions (paged)
``GET /console/session?app=&user=&id=``      a session: state, metadata, events
``GET/POST /console/login``, ``POST          sign in with a token (a ``kvstore_token``
/console/logout``                            cookie, HttpOnly, SameSite=Strict) and out
===========================================  ==============================================

Auth and namespaces are the REST routes' (:func:`.scope.scope`): the bearer header, or
the login's cookie (GET only). Without a valid token a page answers 401 with the login
form. The console only reads; a read-only token sees every page.

The stats panel's samples: :mod:`.console_chart` (a bounded ring buffer, sampled by a
background task this router's lifespan runs, and on page views).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ..api import AsyncKVStore
from ..errors import KVStoreError
from . import console_pages as pages
from .console_chart import MIN_GAP, Sampler, chart, hit_ratio, sample_of
from .console_html import (
    crumbs,
    error_page,
    esc,
    link,
    page,
    pager,
    size_text,
    table,
    ttl_text,
    url,
)
from .errors import HttpError, status_of
from .scope import COOKIE, grant, scope

KEYS_PAGE = 50
"""Value keys per page of the keys page."""
LOGS_SHOWN = 500
"""Logs listed on the keys page at most."""
COUNT_UP_TO = 1000
"""The overview counts value keys up to this many (one LIST), then says "more"."""
LOGIN_BODY = 4096
"""The largest login form accepted, bytes."""

Build = Callable[[AsyncKVStore], Awaitable[tuple[str, str]]]


def _sampler(app: Any) -> Sampler:
    """The application's sampler (made here if the lifespan did not run this router's)."""
    found: Sampler | None = getattr(app.state, "console_sampler", None)
    if found is None:

        def read() -> Any:
            http = sum(app.state.metrics.requests.values())
            return sample_of(app.state.store.stats(), http, time.time())

        found = app.state.console_sampler = Sampler(read)
    return found


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Sample the stats in the background while the application runs."""
    async with _sampler(app).running():
        yield


router = APIRouter(tags=["console"], include_in_schema=False, lifespan=lifespan)


async def _view(request: Request, ns: str | None, build: Build) -> HTMLResponse:
    """A page of the view the request may see: the login form if it has no valid token,
    an error page for an error, else ``build(store)``'s title and body."""
    try:
        scoped = await scope(request, ns)
    except HttpError as exc:
        if exc.status == 401:
            return _login(request, exc.message, 401)
        return error_page(exc.status, exc.kind, exc.message)
    request.state.whole = scoped.whole  # (the stats panel is for whole-store tokens)
    try:
        title, body = await build(scoped.store)
    except HttpError as exc:
        return error_page(exc.status, exc.kind, exc.message, ns)
    except KVStoreError as exc:
        return error_page(status_of(exc) or 500, type(exc).__name__, str(exc), ns)
    return page(title, body, ns=ns, who=scoped.token)


Ns = Annotated[str | None, Query(description="a namespace inside the token's")]


# -- overview ----------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, ns: Ns = None) -> HTMLResponse:
    async def build(store: AsyncKVStore) -> tuple[str, str]:
        children = await store.namespaces()
        rows = []
        for name in children:
            if "/" in name:  # ?ns= nests at '/': such a name cannot be named there
                rows.append((esc(name) + ' <span class="note">(has "/": not browsable)</span>',))
            else:
                rows.append((link(url("/", ns=f"{ns}/{name}" if ns else name), name),))
        listed = 0
        async for chunk in store.key_pages("", logs=False, page_size=COUNT_UP_TO):
            listed += len(chunk)
            if listed >= COUNT_UP_TO:
                break
        values = f"{COUNT_UP_TO}+" if listed >= COUNT_UP_TO else str(listed)
        logs = len(await store.log_keys())
        artifacts = len(await store.artifacts.list())
        counts = table(
            ("namespaces", "values", "logs", "artifacts"),
            [(str(len(children)), values, str(logs), str(artifacts))],
            "counts",
        )
        spaces = table(("namespace",), rows, "namespaces") if rows else "<p>none</p>"
        body = (
            f"{crumbs(ns)}<h2>Contents</h2>{counts}"
            f"<h2>Namespaces inside</h2>{spaces}{_stats(request)}"
        )
        return "Overview", body

    return await _view(request, ns, build)


def _stats(request: Request) -> str:
    """The stats panel: cache hit ratio, store requests by kind, HTTP requests by route,
    and the chart of the samples."""
    if not getattr(request.state, "whole", False):
        return "<h2>Stats</h2><p>for a token of the whole store</p>"
    app = request.app
    sampler = _sampler(app)
    sampler.take(unless_within=MIN_GAP)
    stats = app.state.store.stats()
    hits, misses = int(stats.get("cache.hits", 0)), int(stats.get("cache.misses", 0))
    kinds = sorted(
        (k.removeprefix("requests."), v) for k, v in stats.items() if k.startswith("requests.")
    )
    by_route: dict[str, int] = {}
    for (_, route, _), count in app.state.metrics.requests.items():
        by_route[route] = by_route.get(route, 0) + count
    cache = stats.get("cache", {})
    summary = table(
        ("cache", "hit ratio", "hits", "misses", "store requests", "HTTP requests"),
        [
            (
                esc(cache.get("kind", "?")),
                f'<span id="hit-ratio">{esc(hit_ratio(hits, misses))}</span>',
                str(hits),
                str(misses),
                str(stats.get("requests", 0)),
                str(sum(by_route.values())),
            )
        ],
        "stats",
    )
    kind_rows = [(esc(k), f'<span class="num">{v}</span>') for k, v in kinds]
    route_rows = [(esc(r), str(n)) for r, n in sorted(by_route.items(), key=lambda p: -p[1])]
    samples = list(sampler.samples)
    return (
        '<section class="panel" id="stats-panel"><h2>Stats</h2>'
        f"{summary}<h3>Requests over time</h3>{chart(samples)}"
        f'<p class="note">{len(samples)} samples (cumulative counts)</p>'
        '<div style="display:flex;gap:24px"><div><h3>Store requests by kind</h3>'
        f"{table(('kind', 'count'), kind_rows, 'store-kinds')}</div>"
        f"<div><h3>HTTP requests by route</h3>{table(('route', 'count'), route_rows[:20])}"
        "</div></div></section>"
    )


# -- keys and logs -------------------------------------------------------------------------


@router.get("/console/keys", response_class=HTMLResponse)
async def keys(
    request: Request, ns: Ns = None, prefix: str = "", after: str | None = None
) -> HTMLResponse:
    async def build(store: AsyncKVStore) -> tuple[str, str]:
        found: list[str] = []
        async for chunk in store.key_pages(
            prefix, logs=False, after=after or None, page_size=KEYS_PAGE + 1
        ):
            found.extend(chunk)
            if len(found) > KEYS_PAGE:
                break
        more, found = len(found) > KEYS_PAGE, found[:KEYS_PAGE]
        infos = await store.key_info(found)
        rows = []
        for key, info in zip(found, infos, strict=True):
            kind, ttl, size = (
                ("expired", "", "")
                if info is None
                else (
                    info.type,
                    ttl_text(info.pttl),
                    size_text(info.size),
                )
            )
            rows.append(
                (link(url("/console/value", ns=ns, key=key), key), esc(kind), esc(ttl), esc(size))
            )
        links = []
        if after:
            links.append((url("/console/keys", ns=ns, prefix=prefix or None), "first", "first"))
        if more:
            nxt = url("/console/keys", ns=ns, prefix=prefix or None, after=found[-1])
            links.append((nxt, "next", "next"))
        logs = await store.log_keys(prefix)
        log_rows = [(link(url("/console/log", ns=ns, key=k), k),) for k in logs[:LOGS_SHOWN]]
        cut = f'<p class="note">the first {LOGS_SHOWN} shown</p>' if len(logs) > LOGS_SHOWN else ""
        form = (
            '<form class="inline" method="get" action="/console/keys">'
            + (f'<input type="hidden" name="ns" value="{esc(ns)}">' if ns else "")
            + f'<input name="prefix" placeholder="prefix" value="{esc(prefix)}">'
            "<button>Filter</button></form>"
        )
        body = (
            f"{crumbs(ns)}{form}<h2>Values</h2>"
            + table(("key", "type", "TTL", "size"), rows, "keys")
            + pager(links)
            + f"<h2>Logs</h2>{table(('log',), log_rows, 'logs')}{cut}"
        )
        return "Keys", body

    return await _view(request, ns, build)


@router.get("/console/value", response_class=HTMLResponse)
async def value(request: Request, key: str, ns: Ns = None) -> HTMLResponse:
    async def build(store: AsyncKVStore) -> tuple[str, str]:
        return f"Value {key}", crumbs(ns) + await pages.value_page(store, ns, key)

    return await _view(request, ns, build)


@router.get("/console/log", response_class=HTMLResponse)
async def log(
    request: Request, key: str, ns: Ns = None, start: Annotated[int, Query(ge=0)] = 0
) -> HTMLResponse:
    async def build(store: AsyncKVStore) -> tuple[str, str]:
        return f"Log {key}", crumbs(ns) + await pages.log_page(store, ns, key, start)

    return await _view(request, ns, build)


# -- artifacts, sessions -------------------------------------------------------------------


@router.get("/console/artifacts", response_class=HTMLResponse)
async def artifacts(request: Request, ns: Ns = None, prefix: str = "") -> HTMLResponse:
    async def build(store: AsyncKVStore) -> tuple[str, str]:
        return "Artifacts", crumbs(ns) + await pages.artifacts_page(store, ns, prefix)

    return await _view(request, ns, build)


@router.get("/console/artifact", response_class=HTMLResponse)
async def artifact(request: Request, name: str, ns: Ns = None) -> HTMLResponse:
    async def build(store: AsyncKVStore) -> tuple[str, str]:
        return f"Artifact {name}", crumbs(ns) + await pages.artifact_page(store, ns, name)

    return await _view(request, ns, build)


@router.get("/console/sessions", response_class=HTMLResponse)
async def sessions(
    request: Request, ns: Ns = None, app: str = "", user: str = "", cursor: str | None = None
) -> HTMLResponse:
    async def build(store: AsyncKVStore) -> tuple[str, str]:
        body = await pages.sessions_page(store, ns, app, user, cursor)
        return "Sessions", crumbs(ns) + body

    return await _view(request, ns, build)


@router.get("/console/session", response_class=HTMLResponse)
async def session(request: Request, app: str, user: str, id: str, ns: Ns = None) -> HTMLResponse:
    async def build(store: AsyncKVStore) -> tuple[str, str]:
        body = await pages.session_page(store, ns, app, user, id)
        return f"Session {id}", crumbs(ns) + body

    return await _view(request, ns, build)


# -- signing in and out --------------------------------------------------------------------


def _login(request: Request, problem: str | None = None, status: int = 200) -> HTMLResponse:
    if not request.app.state.config.tokens:
        body = "<p>This service has no tokens: every page is open (on loopback only).</p>"
        return page("Sign in", body + link(url("/"), "Overview"), status=status)
    note = f'<p class="error" id="login-error">{esc(problem)}</p>' if problem else ""
    form = (
        '<form method="post" action="/console/login" id="login">'
        '<label>Token <input type="password" name="token" id="token" autocomplete="off" '
        'required></label> <button type="submit" id="sign-in">Sign in</button></form>'
    )
    return page("Sign in", note + form, status=status, headers={"WWW-Authenticate": "Cookie"})


@router.get("/console/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    return _login(request)


def _cross_site(request: Request) -> bool:
    """Whether the browser says the form was posted from another site (``Sec-Fetch-Site``,
    or an ``Origin`` that is not this service's): a page elsewhere must not sign a browser
    in with its own token (login CSRF), nor out."""
    fetched = request.headers.get("sec-fetch-site")
    if fetched is not None:  # what the browser itself saw (right behind a proxy too)
        return fetched not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:  # not a browser's cross-site form (browsers send one on POST)
        return False
    return urlsplit(origin).netloc != request.headers.get("host", "")


@router.post("/console/login", response_class=HTMLResponse)
async def login(request: Request) -> Any:
    """Check the form's token (constant time, as the header's); set it as the cookie.
    Refused when posted from another site."""
    if _cross_site(request):
        return error_page(403, "Forbidden", "a sign-in must come from this service's own page")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > LOGIN_BODY:
            return error_page(413, "PayloadTooLarge", "the login form is too large")
    form = parse_qs(body.decode("utf-8", "replace"))
    given = (form.get("token") or [""])[0].strip()
    if not request.app.state.config.tokens:
        return _login(request)
    if not given:
        return _login(request, "give a token", 401)
    try:
        grant(request.app.state.config, given)
    except HttpError:
        return _login(request, "unknown token", 401)
    done = RedirectResponse("/", status_code=303)
    done.set_cookie(
        COOKIE,
        given,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return done


@router.post("/console/logout", response_model=None)
async def logout(request: Request) -> RedirectResponse | HTMLResponse:
    if _cross_site(request):
        return error_page(403, "Forbidden", "a sign-out must come from this service's own page")
    done = RedirectResponse("/console/login", status_code=303)
    done.delete_cookie(COOKIE, path="/")
    return done
