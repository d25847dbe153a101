"""The HTTP service (``kvstore.http``) started by the tests: uvicorn in a thread of its own,
on a socket bound to a free loopback port before the server starts (no window in which
another process could take the port), stopped at the end. Plus the helpers the contract
tests of tests/test_http.py share, and the functions its racing processes run (here, so a
spawned child imports httpx and this module, not the test module and its fixtures).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

import kvstore
from kvstore.http.config import HttpConfig

STARTUP_S = 30.0
"""How long a server may take to start (its store opens in the lifespan) - a bound for
liveness, not a timing claim."""


@contextlib.contextmanager
def serving(
    open_store: Callable[[], kvstore.AsyncKVStore], config: HttpConfig | None = None
) -> Iterator[str]:
    """The service over the store ``open_store()`` opens, on a free loopback port, in a
    thread; yields its base URL (``http://127.0.0.1:PORT``) once it answers."""
    import uvicorn

    from kvstore.http import create_app

    app = create_app(open_store, config or HttpConfig())
    # IPPROTO_TCP named, as a socket asyncio opens itself has it: asyncio then sets
    # TCP_NODELAY on each connection (it checks the protocol) - without, every answer
    # sent in two writes (headers, body) waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while not server.started:
            assert thread.is_alive(), "the HTTP service stopped while starting"
            assert time.monotonic() < deadline, f"the HTTP service did not start in {STARTUP_S} s"
            time.sleep(0.01)
        with client(base) as http:
            assert http.get("/health").status_code in (200, 503)  # it answers
        yield base
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()
        assert not thread.is_alive(), "the HTTP service did not stop within 60 s"


def client(base: str, token: str | None = None) -> httpx.Client:
    """A client of the service at ``base`` (no proxies from the environment; bounded
    waits: a hung request fails the test instead of hanging it)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=base, headers=headers, timeout=60, trust_env=False)


@dataclass
class Service:
    """A running service (``url``) over ``target`` (tests/conftest.py's Target), and
    ``store``: the library on the same target (its own store, no cache), to check what
    the service did."""

    url: str
    target: Any
    store: kvstore.KVStore

    def http(self, token: str | None = None) -> httpx.Client:
        return client(self.url, token)


Start = Callable[..., Service]


class Services(contextlib.ExitStack):
    """Services started by one test (:meth:`start`), all stopped when it leaves."""

    def __init__(self, make_target: Callable[[str], Any]) -> None:
        super().__init__()
        self.make_target = make_target

    def start(
        self,
        backend: str,
        config: HttpConfig | None = None,
        open_store: Callable[[Any], kvstore.AsyncKVStore] | None = None,
        target: Any = None,
    ) -> Service:
        target = target or self.make_target(backend)
        opener = open_store or (lambda t: t.open_async())
        url = self.enter_context(serving(lambda: opener(target), config))
        return Service(url, target, self.enter_context(target.open()))


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``kvstore serve --http ARGS`` (the real CLI, in a subprocess; no $KVSTORE_*
    but ``env``'s)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KVSTORE_")}
    return subprocess.Popen(
        [sys.executable, "-m", "kvstore", "serve", "--http", *args],
        env=environment | (env or {}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_healthy(base: str, proc: subprocess.Popen[str]) -> None:
    """Until the service at ``base`` (run by ``proc``) says it is healthy; bounded."""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{base} did not answer in 60 s"
        with contextlib.suppress(httpx.TransportError), client(base) as probe:
            if probe.get("/health").status_code == 200:
                return
        time.sleep(0.1)


def tokens_file(directory: Path, entries: Any) -> str:
    path = directory / "tokens.json"
    path.write_text(json.dumps(entries))
    return str(path)


def b64(*records: bytes) -> list[str]:
    return [base64.b64encode(r).decode() for r in records]


def value_url(key: str, **query: Any) -> str:
    """The URL path of a value, the key %-encoded whole ('/' too: it travels either way)."""
    return _with(f"/v1/values/{quote(key, safe='')}", query)


def log_url(key: str, **query: Any) -> str:
    return _with(f"/v1/logs/{quote(key, safe='')}", query)


def _with(path: str, query: dict[str, Any]) -> str:
    if not query:
        return path
    return path + "?" + "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items())


def error_of(response: httpx.Response, status: int) -> dict[str, str]:
    """Assert ``response`` is an error with ``status`` and the service's JSON shape
    ``{"error": {"type", "message"}}``; the inner object."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"type", "message"}, body
    assert isinstance(error["type"], str) and error["type"], body
    assert isinstance(error["message"], str) and error["message"], body
    return error


# -- Prometheus's text format --------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABELS = r'\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,(?!\}))?)*\}'
SAMPLE = re.compile(rf"^(?P<name>{_NAME})(?P<labels>{_LABELS})? (?P<value>\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text exposition, ``name{labels}`` -> value; asserts
    every line is a comment (``# HELP``/``# TYPE``) or a well-formed sample."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(rf"^# (HELP|TYPE) {_NAME} \S", line), line
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample: {line!r}"
        name = match["name"] + (match["labels"] or "")
        assert name not in samples, f"sample twice: {line!r}"
        samples[name] = float(match["value"])
    return samples


# -- what racing processes run (tests/test_http.py, kvstore.testing.run_in_processes) --------


def create_once(base: str, key: str, me: int, *, barrier: Any) -> int:
    """PUT ``If-None-Match: *`` after every racer is ready; the status it got."""
    with client(base) as http:
        http.get("/health")  # connected before the race
        barrier.wait(timeout=60)
        response = http.put(
            value_url(key), content=f"process-{me}".encode(), headers={"If-None-Match": "*"}
        )
        assert response.status_code in (204, 412), response.text
        return response.status_code


def increment(base: str, key: str, times: int, *, barrier: Any) -> int:
    """``times`` compare-and-swap increments of the number at ``key``: read its value and
    ETag, PUT value+1 with ``If-Match``, again on 412. Returns how many 412s it met."""
    conflicts = 0
    with client(base) as http:
        http.get("/health")
        barrier.wait(timeout=60)
        for _ in range(times):
            while True:
                current = http.get(value_url(key))
                assert current.status_code == 200, current.text
                response = http.put(
                    value_url(key),
                    content=str(int(current.content) + 1).encode(),
                    headers={"If-Match": current.headers["etag"]},
                )
                if response.status_code == 204:
                    break
                assert response.status_code == 412, response.text
                conflicts += 1
    return conflicts


def append_expecting(base: str, path: str, expect_last: int, me: int, *, barrier: Any) -> int:
    """POST an event to the session at ``path`` (``/v1/sessions/{app}/{user}/{id}``) with
    ``expect_last``, after every racer is ready; the status it got (201 or 409)."""
    with client(base) as http:
        http.get("/health")
        barrier.wait(timeout=60)
        response = http.post(
            f"{path}/events", json={"event": {"by": me}, "expect_last": expect_last}
        )
        assert response.status_code in (201, 409), response.text
        if response.status_code == 409:
            assert response.json()["error"]["type"] == "StaleSessionError", response.text
        return response.status_code


def remote_racer(url: str, me: int, appends: int, *, barrier: Any) -> dict[str, Any]:
    """Through the service's client (``kvstore+http://``): race to ``set NX`` a lock,
    append ``appends`` records to one log, compare-and-swap a counter up by 10, and append
    an event to a session only if it is still at the sequence number every racer saw."""
    with kvstore.open(url) as store:
        store.get("warm-up")  # connected before the race
        seen = store.sessions.get("app", "user", "shared")
        assert seen is not None
        barrier.wait(timeout=60)
        won = bool(store.set("lock", f"process-{me}", nx=True))
        lengths = [store.append("log", f"{me}:{i}") for i in range(appends)]
        conflicts = 0
        for _ in range(10):
            while True:
                found = store.get_versioned("counter")
                assert found is not None
                if store.set("counter", int(found.value) + 1, if_version=found.version):
                    break
                conflicts += 1
        try:
            store.sessions.append_event(
                "app", "user", "shared", {"by": me}, expect_last=seen.last_seq
            )
            appended = True
        except kvstore.StaleSessionError:
            appended = False
        return {"won": won, "lengths": lengths, "conflicts": conflicts, "appended": appended}
