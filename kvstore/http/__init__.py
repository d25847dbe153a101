"""``kvstore serve --http``: the store as a versioned REST service (FastAPI on uvicorn;
``pip install 'kvstore[server]'``), for clients in any language and for many small
workers in front of one bucket.

Resources (all JSON but the bytes of values and records; errors as
:mod:`kvstore.http.errors` lists them; the OpenAPI document at ``/openapi.json``):

====================================  =====================================================
``GET/PUT/DELETE /v1/values/{key}``   a value's bytes; PUT with ``ttl_ms``/``keepttl`` and
                                      ``If-Match``/``If-None-Match`` (:mod:`.values`)
``GET/PUT /v1/ttl/{key}``             a key's time to live
``GET /v1/keys``                      a page of value keys (``prefix``, ``after``, ``limit``)
``POST/GET /v1/logs/{key}``           append records; read a range (:mod:`.logs`)
``GET /v1/length/{key}``              a log's length and next sequence number
``GET /v1/logs``                      the logs that hold records
``PUT/GET/DELETE /v1/artifacts/{n}``  versions streamed up and down, ``Range``
                                      (:mod:`.artifacts`); ``/v1/artifact-versions/{n}``,
                                      ``/v1/artifact-info/{n}``: info without data
``/v1/sessions/...``                  create, get, list, append event (``expect_last``),
                                      update, delete with cascade (:mod:`.sessions`)
``GET /health``                       store and cache up? (no token; 503 if not)
``GET /v1/stats``, ``GET /metrics``   counters: JSON, and Prometheus's format (:mod:`.ops`)
``GET /``                             the web console (HTML, :mod:`.console`): overview of
                                      a namespace (children, counts, stats and a chart)
``GET /console/keys``, ``/value``,    value keys (type, TTL, size; paged), a value, a log
``/log``                              (paged)
``GET /console/artifacts``,           artifacts, a version list with download links
``/artifact``
``GET /console/sessions``,            an app's sessions, a session's state and events
``/session``
``GET/POST /console/login``,          sign in with a token: a ``kvstore_token`` cookie,
``POST /console/logout``              accepted on GET/HEAD only (console pages, downloads)
====================================  =====================================================

Every resource takes ``?ns=a/b``: a namespace inside the caller's token's. Auth and
tenancy: :mod:`.config`. One store serves every request (its cache is shared); each
request's work is the library's - the costs and guarantees stated there hold unchanged.

Modules: config (options, tokens), app (the application, auth, the request's scope),
errors (statuses), body (request bodies within limits), values, logs, artifacts, sessions,
ops, metrics, cli; console, console_pages, console_html, console_chart (the web console).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:  # FastAPI only when the service is used
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
