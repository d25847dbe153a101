"""Network bounds: a request to an S3 or GCS endpoint that never answers fails in a
documented time, and one async store used from successive event loops leaks no HTTP session.

Every "black hole" here is a socket on 127.0.0.1 that the test itself opens:

* ``silent``: accepts every connection and never reads or answers (a hung server: read
  timeouts);
* ``full``: listens with a full accept queue and never accepts, so the kernel drops further
  SYNs and connecting hangs (a black-holed address: connect timeouts) - no firewall rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import select
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from conftest import REMOTE, Target

import kvstore
from kvstore.errors import BackendError

pytestmark = pytest.mark.timeout(180)

# The bounds README.md documents ("Opening a store", Retries), in seconds: attempts x
# timeout + the client library's backoff between attempts.
BOUNDS = {
    ("s3", "full"): 3 * 5 + 3,  # obstore: 3 attempts x connect_timeout 5 s, backoff <= 3 s
    ("s3", "silent"): 3 * 15 + 3,  # 3 attempts x read_timeout 15 s
    ("s3fs", "full"): 3 * 5 + 3,  # botocore: 3 attempts x connect_timeout 5 s, backoff <= 3 s
    ("s3fs", "silent"): 3 * 15 + 3,  # 3 attempts x read_timeout 15 s
    ("gcs", "full"): 3 * 5 + 5,  # gcsfs: 3 attempts x sock_connect 5 s, backoff <= 5 s
    ("gcs", "silent"): 3 * 15 + 5,  # 3 attempts x sock_read 15 s
}
SLACK = 5.0  # a loaded machine's scheduling, not a second attempt
# The transports with aiohttp sessions bound to a loop (obstore's connections live on its
# own runtime, whatever loop awaits them: tests/test_s3_transports.py).
SESSIONS = ["s3fs", "gcs"]


class BlackHole:
    """A TCP endpoint on 127.0.0.1 that never answers (see the module docstring)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        if mode == "silent":
            self._listener.listen(64)
            self._thread = threading.Thread(target=self._accept, daemon=True)
            self._thread.start()
        elif mode == "full":
            self._listener.listen(0)
            for _ in range(2):  # fill the accept queue with connections of our own
                client = socket.socket()
                client.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    client.connect(("127.0.0.1", self.port))
                self._held.append(client)
            time.sleep(0.1)
        else:
            raise ValueError(mode)

    def _accept(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.1)
            if ready:
                conn, _ = self._listener.accept()
                self.accepted += 1
                self._held.append(conn)  # never read, never answered, never closed

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def options(self, backend: str, **extra: Any) -> dict[str, Any]:
        if backend == "s3fs":
            return self.options("s3", transport="s3fs", **extra)
        if backend == "s3":
            return {
                "endpoint_url": self.url,
                "key": "testing",
                "secret": "testing",
                "client_kwargs": {"region_name": "us-east-1"},
                **extra,
            }
        return {"endpoint_url": self.url, "token": "anon", "project": "test", **extra}

    def close(self) -> None:
        self._stop.set()
        if self.mode == "silent":
            self._thread.join()
        for conn in self._held:
            conn.close()
        self._listener.close()


@pytest.fixture
def black_hole() -> Iterator[Callable[[str], BlackHole]]:
    made: list[BlackHole] = []

    def make(mode: str) -> BlackHole:
        made.append(BlackHole(mode))
        return made[-1]

    yield make
    for hole in made:
        hole.close()


def url_for(backend: str) -> str:
    return "gs://kvstore-test/p" if backend == "gcs" else "s3://kvstore-test/p"


async def failing_get(store: kvstore.AsyncKVStore) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        await store.get("k")
    except Exception as exc:
        return exc, time.monotonic() - started
    finally:
        await store.close()
    return None, time.monotonic() - started


# -- 1. bounded time to fail -------------------------------------------------------------


@pytest.mark.slow
def test_get_from_a_black_hole_fails_within_the_documented_bound(
    black_hole: Callable[[str], BlackHole],
) -> None:
    """With the default settings, all four cases at once (they only wait)."""
    cases = list(BOUNDS)
    holes = {mode: black_hole(mode) for mode in ("silent", "full")}

    async def main() -> list[tuple[BaseException | None, float]]:
        stores = [
            kvstore.open_async(
                url_for(backend), cache=None, storage_options=holes[mode].options(backend)
            )
            for backend, mode in cases
        ]
        limit = max(BOUNDS.values()) + 2 * SLACK
        try:
            return await asyncio.wait_for(asyncio.gather(*(failing_get(s) for s in stores)), limit)
        except asyncio.TimeoutError:
            pytest.fail(f"a get() against a black hole was still waiting after {limit} s")

    results = asyncio.run(main())
    for (backend, mode), (exc, elapsed) in zip(cases, results, strict=True):
        assert isinstance(exc, BackendError), (backend, mode, exc)
        assert elapsed <= BOUNDS[backend, mode] + SLACK, (backend, mode, elapsed)


async def _get_then_close(store: kvstore.AsyncKVStore) -> bytes | None:
    """Read "k" on the running loop, then close the store there."""
    try:
        found = await store.get("k")
        return found if found is None else bytes(found)
    finally:
        await store.close()


@pytest.mark.parametrize("backend", REMOTE)
def test_one_layer_of_retries_and_the_users_timeouts(
    backend: str, black_hole: Callable[[str], BlackHole]
) -> None:
    """The user's timeouts are kept; the request is tried 3 times in all (botocore, or
    gcsfs), not 3 x 5 (s3fs on top of botocore) or 6 (gcsfs); the options are not changed."""
    hole = black_hole("silent")
    if backend == "s3":
        options = hole.options(backend, config_kwargs={"read_timeout": 0.5})
    else:
        timeout = aiohttp.ClientTimeout(sock_connect=1, sock_read=0.5)
        options = hole.options(backend, requests_timeout=timeout)
    given = copy.deepcopy(options)
    store = kvstore.open_async(url_for(backend), cache=None, storage_options=options)
    exc, elapsed = asyncio.run(failing_get(store))
    assert isinstance(exc, BackendError), exc
    assert hole.accepted == 3, f"{hole.accepted} connections for one get()"
    assert elapsed < 3 * 0.5 + 5 + SLACK
    assert options == given


def test_the_users_retries_are_kept(black_hole: Callable[[str], BlackHole]) -> None:
    hole = black_hole("silent")
    retries = {"total_max_attempts": 2, "mode": "standard"}
    options = hole.options("s3", config_kwargs={"read_timeout": 0.5, "retries": retries})
    store = kvstore.open_async(url_for("s3"), cache=None, storage_options=options)
    exc, _ = asyncio.run(failing_get(store))
    assert isinstance(exc, BackendError), exc
    assert hole.accepted == 2


@pytest.mark.parametrize("backend", REMOTE)
def test_health_on_a_black_hole_answers_within_its_timeout(
    backend: str, black_hole: Callable[[str], BlackHole]
) -> None:
    hole = black_hole("silent")

    async def main() -> tuple[dict[str, Any], float]:
        store = kvstore.open_async(
            url_for(backend), cache=None, storage_options=hole.options(backend)
        )
        started = time.monotonic()
        try:
            return await store.health(timeout=1.0), time.monotonic() - started
        finally:
            await store.close()

    health, elapsed = asyncio.run(main())
    assert health["ok"] is False and health["store"]["ok"] is False, health
    assert elapsed < 1.0 + SLACK


# -- 2. one store, successive event loops ------------------------------------------------


def open_sessions() -> list[aiohttp.ClientSession]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed]


@pytest.mark.parametrize("backend", REMOTE)
def test_a_loop_per_request_leaks_no_session(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    store = target.open_async()
    before = {id(s) for s in open_sessions()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        asyncio.run(store.set("k", b"v"))
        for _ in range(5):
            assert asyncio.run(store.get("k")) == b"v"
        leaked = [s for s in open_sessions() if id(s) not in before]
        assert leaked == [], f"{len(leaked)} sessions left open by 6 asyncio.run() calls"
        asyncio.run(store.close())
        gc.collect()
    unclosed = [w for w in caught if "Unclosed" in str(w.message)]
    assert unclosed == [], [str(w.message) for w in unclosed]


@pytest.mark.parametrize("backend", SESSIONS)
def test_a_session_on_a_loop_still_running_is_closed_there(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    """First used from a loop in another thread, then from this thread's: the first
    session is closed on its own loop, which keeps running."""
    target = make_target(backend)
    store = target.open_async()
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    try:
        before = {id(s) for s in open_sessions()}
        asyncio.run_coroutine_threadsafe(store.set("k", b"v"), other).result(30)
        first = [s for s in open_sessions() if id(s) not in before]
        assert first, "the store made no session on the first loop"

        assert asyncio.run(_get_then_close(store)) == b"v"
        deadline = time.monotonic() + 10
        while not all(s.closed for s in first) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(s.closed for s in first)
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(10)
        other.close()


@pytest.mark.parametrize("backend", SESSIONS)
def test_a_session_on_a_loop_closed_without_shutdown_is_released(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    """A loop closed by hand (no ``shutdown_asyncgens``): its session is marked closed
    when the store is next used from another loop."""
    target = make_target(backend)
    store = target.open_async()
    before = {id(s) for s in open_sessions()}
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(store.set("k", b"v"))
    finally:
        loop.close()
    first = [s for s in open_sessions() if id(s) not in before]
    assert first, "the store made no session on the first loop"

    assert asyncio.run(_get_then_close(store)) == b"v"
    assert all(s.closed for s in first)
