"""Regression tests for defects found in review; each asserts the intended behaviour.

Faults are injected deterministically by replacing one primitive (``_put``, ``_delete``,
``_put_if_match`` ...) on a store's own blob-store *instance*, so no other store and no other
test sees the wrapper. Every Redis that a test pauses is a server that test started itself;
every port is one the test started a server on or allocated itself.

1. A partly failed ``mset`` / multi-key ``delete`` still invalidates the keys it wrote.
2. A write cancelled while its object-store write is in flight still invalidates the cache.
3. A blocking ``KVStore`` opened before ``os.fork()`` works in the child.
4. An ambiguous compare-and-swap (applied, response lost, retry conflicts) never
   overwrites, re-TTLs, deletes or resurrects another client's later write.
5. One bucket/prefix on two S3 endpoints is two stores to a shared Redis cache.
6. A missing bucket is an error (naming the URL), not an empty store; health says so.
7. A write while the Redis breaker is open (Redis healthy) reaches other clients.
8. ``health()`` against a dead S3 endpoint answers within a bound.
9. A genuine CAS conflict costs no extra full GET for an ambiguity check.
10. Stale temp files of dead local writers are cleaned up.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from conftest import FAST, REMOTE

import kvstore
from kvstore.errors import BackendError

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
FAST_REDIS: dict[str, float] = {
    "socket_timeout": 0.2,
    "connect_timeout": 0.2,
    "breaker_interval": 1.0,
}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_cache(kind: str, request: pytest.FixtureRequest) -> kvstore.Cache:
    """A fresh cache whose entries outlive the test (so staleness cannot time out)."""
    if kind == "local":
        return kvstore.LocalCache(ttl=60)
    server = request.getfixturevalue("redis_server")
    return kvstore.RedisCache(server.url)


@contextlib.contextmanager
def patched(obj: Any, name: str, replacement: Any) -> Iterator[None]:
    """Shadow a method on one instance; the class's method shows through again after."""
    assert name not in vars(obj), f"{name} already patched on {obj!r}"
    setattr(obj, name, replacement)
    try:
        yield
    finally:
        delattr(obj, name)


def failing_for(blob: Any, name: str, bad_path: str) -> contextlib.AbstractContextManager[None]:
    """``blob.<name>`` raises a non-transient PermissionError for ``bad_path`` only, a moment
    after the other paths' calls (so those have landed when the batch fails)."""
    orig = getattr(blob, name)

    async def wrapper(path: str, *args: Any) -> Any:
        if path == bad_path:
            await asyncio.sleep(0.01)
            raise PermissionError(errno.EACCES, "injected: permission denied", path)
        return await orig(path, *args)

    return patched(blob, name, wrapper)


async def eventually(read: Callable[[], Awaitable[T]], want: T, timeout: float = 2.0) -> T:
    """Poll ``read()`` until it returns ``want`` or ``timeout`` passes; the last result."""
    deadline = time.monotonic() + timeout
    while True:
        got = await read()
        if got == want or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


# -- 1. partial mset / delete --------------------------------------------------------------


@pytest.mark.parametrize("cache_kind", ["local", "redis"])
@pytest.mark.parametrize("backend", FAST)
def test_partly_failed_mset_invalidates_the_keys_it_wrote(
    backend: str, cache_kind: str, make_target: Any, request: pytest.FixtureRequest
) -> None:
    target = make_target(backend)

    async def main() -> None:
        s = target.open_async(cache=make_cache(cache_kind, request))
        try:
            await s.mset({"a": "old-a", "b": "old-b", "c": "old-c"})
            assert await s.mget(["a", "b", "c"]) == [b"old-a", b"old-b", b"old-c"]  # cached
            with (
                failing_for(s._ctx.blob, "_put", s._ctx.layout.value("b")),
                pytest.raises(BackendError),
            ):
                await s.mset({"a": "new-a", "b": "new-b", "c": "new-c"})
            raw = await s._ctx.blob.get(s._ctx.layout.value("a"))
            assert raw is not None and kvstore.codec.decode(raw.data).payload == b"new-a"
            got = await s.mget(["a", "c"])
            assert got == [b"new-a", b"new-c"], (
                f"keys whose put succeeded read back {got} (stale cache), not their new values"
            )
            assert await s.get("b") == b"old-b"
        finally:
            await s.close()

    run(main())


@pytest.mark.parametrize("cache_kind", ["local", "redis"])
@pytest.mark.parametrize("backend", FAST)
def test_partly_failed_delete_invalidates_the_keys_it_deleted(
    backend: str, cache_kind: str, make_target: Any, request: pytest.FixtureRequest
) -> None:
    target = make_target(backend)

    async def main() -> None:
        s = target.open_async(cache=make_cache(cache_kind, request))
        try:
            await s.mset({"a": "old-a", "b": "old-b", "c": "old-c"})
            assert await s.mget(["a", "b", "c"]) == [b"old-a", b"old-b", b"old-c"]  # cached
            with (
                failing_for(s._ctx.blob, "_delete", s._ctx.layout.value("b")),
                pytest.raises(BackendError),
            ):
                await s.delete("a", "b", "c")
            assert await s._ctx.blob.get(s._ctx.layout.value("a")) is None
            got = await s.mget(["a", "c"])
            assert got == [None, None], (
                f"deleted keys read back {got} (stale cache) instead of None"
            )
            assert await s.get("b") == b"old-b"
        finally:
            await s.close()

    run(main())


# -- 2. a write cancelled while in flight --------------------------------------------------


@pytest.mark.parametrize("cache_kind", ["local", "redis"])
def test_cancelled_set_whose_write_lands_still_invalidates(
    cache_kind: str, make_target: Any, request: pytest.FixtureRequest
) -> None:
    target = make_target("local")

    async def main() -> None:
        s = target.open_async(cache=make_cache(cache_kind, request))
        try:
            await s.set("k", "v1")
            assert await s.get("k") == b"v1"  # cached
            blob = s._ctx.blob
            orig = blob._put_sync
            landed = threading.Event()

            def slow_put(path: str, data: bytes) -> str:  # runs in a worker thread
                time.sleep(0.3)
                try:
                    return str(orig(path, data))
                finally:
                    landed.set()

            with patched(blob, "_put_sync", slow_put):
                with pytest.raises((asyncio.TimeoutError, TimeoutError)):
                    await asyncio.wait_for(s.set("k", "v2"), 0.05)
                assert await asyncio.to_thread(landed.wait, 5), "setup: the put never ran"
            async with target.open_async(cache=None) as fresh:
                assert await fresh.get("k") == b"v2", "setup: the cancelled put did not land"
            got = await eventually(lambda: s.get("k"), b"v2")
            assert got == b"v2", f"after a cancelled-but-landed set, get() returns {got!r}"
        finally:
            await s.close()

    run(main())


# -- 3. fork -------------------------------------------------------------------------------


def _wait_child(pid: int, timeout: float) -> int | None:
    """The child's wait status, or None (after killing it) if it did not exit in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() of a threaded process
@pytest.mark.parametrize("backend", FAST)
def test_store_opened_before_fork_works_in_the_child(backend: str, make_target: Any) -> None:
    store = make_target(backend).open(cache=kvstore.LocalCache())
    try:
        store.set("k", "v")  # starts the loop thread in the parent
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.close(read_end)
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                signal.alarm(5)  # a hang ends the child with SIGALRM
                os.write(write_end, repr(store.get("k")).encode())
                code = 0
            except BaseException as exc:
                os.write(write_end, f"raised {type(exc).__name__}: {exc}".encode()[:4000])
            finally:
                os._exit(code)
        os.close(write_end)
        status = _wait_child(pid, 15)
        with os.fdopen(read_end, "rb") as pipe:
            out = pipe.read().decode(errors="replace")
    finally:
        store.close()
    assert status is not None, "the child did not exit within 15 s"
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        pytest.fail(f"store.get() in the forked child hung (child killed by {sig})")
    assert os.WEXITSTATUS(status) == 0, f"store.get() in the forked child failed: {out}"
    assert out == repr(b"v")


# -- 4. ambiguous compare-and-swap ---------------------------------------------------------

LATER = "written-later-by-client-2"


async def _set_xx(s1: kvstore.AsyncKVStore, s2: kvstore.AsyncKVStore) -> tuple[Any, Any]:
    await s1.set("k", "v0")
    return s1.set("k", "from-client-1", xx=True), s2.set("k", LATER)


async def _expire(s1: kvstore.AsyncKVStore, s2: kvstore.AsyncKVStore) -> tuple[Any, Any]:
    await s1.set("k", "v0")
    return s1.expire("k", 100), s2.set("k", LATER)


async def _expire_zero(s1: kvstore.AsyncKVStore, s2: kvstore.AsyncKVStore) -> tuple[Any, Any]:
    await s1.set("k", "v0")
    return s1.expire("k", 0), s2.set("k", LATER)


async def _keepttl_vs_delete(s1: kvstore.AsyncKVStore, s2: kvstore.AsyncKVStore) -> tuple[Any, Any]:
    await s1.set("k", "v0", ex=100)
    return s1.set("k", "from-client-1", keepttl=True), s2.delete("k")


# name: (scenario, the primitive to make lossy, s1's expected result, final (value, ttl))
AMBIGUOUS = {
    "set-xx-then-other-set": (_set_xx, "_put_if_match", True, (LATER.encode(), -1)),
    "expire-then-other-set": (_expire, "_put_if_match", True, (LATER.encode(), -1)),
    "expire0-then-other-set": (_expire_zero, "_delete_if_match", True, (LATER.encode(), -1)),
    "keepttl-then-other-delete": (_keepttl_vs_delete, "_put_if_match", True, (None, -2)),
}


@pytest.mark.parametrize("case", list(AMBIGUOUS))
@pytest.mark.parametrize("backend", FAST)
def test_ambiguous_swap_never_undoes_a_later_write(
    backend: str, case: str, make_target: Any
) -> None:
    """s1's conditional write is applied, then client 2 writes, then s1's response is lost
    (ConnectionResetError): the retry layer retries and meets a conflict. s1 must not
    re-apply its older write over client 2's newer one."""
    scenario, primitive, expected, (final_value, final_ttl) = AMBIGUOUS[case]
    target = make_target(backend)

    async def main() -> None:
        s1 = target.open_async(cache=None)
        s2 = target.open_async(cache=None)
        try:
            op, interloper = await scenario(s1, s2)
            blob = s1._ctx.blob
            orig = getattr(blob, primitive)
            calls: list[str] = []

            async def lossy(path: str, *args: Any) -> Any:
                calls.append(path)
                result = await orig(path, *args)
                if len(calls) == 1:  # applied; client 2 writes; our response is lost
                    await interloper
                    calls.append("client-2-wrote")
                    raise ConnectionResetError(errno.ECONNRESET, "injected: response lost")
                return result

            with patched(blob, primitive, lossy):
                result = await op
            assert "client-2-wrote" in calls, f"setup: the lossy {primitive} never ran"
            assert result == expected
            value, ttl = await s2.get("k"), await s2.ttl("k")
            assert (value, ttl) == (final_value, final_ttl), (
                f"after s1's ambiguous write and client 2's later write, the key holds "
                f"{value!r} with ttl {ttl}: client 2's write was undone"
            )
        finally:
            await s1.close()
            await s2.close()

    run(main())


# -- 5. same bucket/prefix on two S3 endpoints, one Redis ----------------------------------


@pytest.fixture(scope="module")
def other_s3() -> Iterator[Any]:
    """A second moto S3 (the same bucket name as the session one, different endpoint)."""
    from backends import MotoS3Server

    with MotoS3Server() as server:
        yield server


def test_two_s3_endpoints_sharing_redis_do_not_see_each_other(
    s3_server: Any, other_s3: Any, redis_server: Any
) -> None:
    url = f"s3://kvstore-test/regress-{uuid.uuid4().hex[:12]}"

    async def main() -> None:
        c = kvstore.open_async(
            url,
            cache=kvstore.RedisCache(redis_server.url),
            storage_options=s3_server.storage_options,
        )
        d = kvstore.open_async(
            url,
            cache=kvstore.RedisCache(redis_server.url),
            storage_options=other_s3.storage_options,
        )
        try:
            await c.set("secret", "from-endpoint-1")
            assert await c.get("secret") == b"from-endpoint-1"  # cached in Redis
            got = await d.get("secret")
            assert got is None, f"a store on another endpoint read {got!r} from the cache"
            await d.set("secret", "from-endpoint-2")
            assert await d.get("secret") == b"from-endpoint-2"
            assert await c.get("secret") == b"from-endpoint-1"
        finally:
            await c.close()
            await d.close()

    run(main())


# -- 6. missing bucket ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", REMOTE)
def test_missing_bucket_is_an_error_not_an_empty_store(
    backend: str, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue(f"{backend}_server")
    scheme = "s3" if backend == "s3" else "gs"
    url = f"{scheme}://no-such-bucket-{uuid.uuid4().hex[:10]}/p"

    async def main() -> None:
        s = kvstore.open_async(url, cache=None, storage_options=server.storage_options)
        try:
            try:
                got = await s.get("k")
            except BackendError as exc:
                assert url in str(exc), f"the error does not name {url}: {exc}"
            else:
                pytest.fail(f"get() on a missing bucket returned {got!r}, not BackendError")
            health = await asyncio.wait_for(s.health(), 30)
            assert health["store"]["ok"] is False, f"health on a missing bucket: {health}"
            assert health["ok"] is False
        finally:
            await s.close()

    run(main())


# -- 7. Redis breaker open while Redis is healthy ------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[Any]:
    """A redis-server for this test alone (it gets paused)."""
    from backends import RedisServer

    with RedisServer() as server:
        try:
            yield server
        finally:
            server.resume()


def test_write_while_breaker_open_reaches_other_clients(make_target: Any, own_redis: Any) -> None:
    target = make_target("memory")

    async def main() -> None:
        b = target.open_async(cache=kvstore.RedisCache(own_redis.url, **FAST_REDIS))
        a = target.open_async(cache=kvstore.RedisCache(own_redis.url, **FAST_REDIS))
        try:
            await a.set("k", "v1")
            assert await b.get("k") == b"v1"  # now cached in Redis
            own_redis.pause()
            try:
                assert await a.get("other") is None  # Redis stalls: A's breaker opens
            finally:
                own_redis.resume()
            assert a.stats()["cache"]["breaker"] == "open", "setup: A's breaker did not open"
            await a.set("k", "v2")  # durable; Redis is fine, A's breaker is still open
            await a.close()  # A exits (a CLI run, a job)
            got = await eventually(lambda: b.get("k"), b"v2")
            assert got == b"v2", f"client B still reads {got!r} from Redis after A wrote v2"
        finally:
            await a.close()
            await b.close()

    run(main())


# -- 8. health() on a dead S3 endpoint -----------------------------------------------------

HEALTH_BOUND = 10.0


def test_health_on_dead_s3_endpoint_is_bounded() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    options = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"region_name": "us-east-1"},
    }

    async def main() -> None:
        s = kvstore.open_async("s3://kvstore-test/p", cache=None, storage_options=options)
        started = time.monotonic()
        try:
            health = await asyncio.wait_for(s.health(), HEALTH_BOUND)
        except (asyncio.TimeoutError, TimeoutError):
            pytest.fail(f"health() on a dead endpoint did not return within {HEALTH_BOUND} s")
        finally:
            await s.close()
        elapsed = time.monotonic() - started
        assert health["store"]["ok"] is False, health
        assert elapsed < HEALTH_BOUND

    run(main())


# -- 9. cost of a genuine CAS conflict -----------------------------------------------------


def test_genuine_cas_conflict_costs_no_extra_get(make_target: Any) -> None:
    target = make_target("memory")

    async def main() -> None:
        s1 = target.open_async(cache=None)
        s2 = target.open_async(cache=None)
        try:
            await s1.set("c", "x")
            blob = s1._ctx.blob
            orig = blob._put_if_match
            calls = 0

            async def racing(path: str, data: bytes, tag: str) -> str | None:
                nonlocal calls
                calls += 1
                if calls == 1:  # client 2 writes between our read and our swap
                    await s2.set("c", "y")
                return await orig(path, data, tag)

            gets_before = s1.stats().get("requests.get", 0)
            with patched(blob, "_put_if_match", racing):
                assert await s1.expire("c", 100) is True
            gets = s1.stats().get("requests.get", 0) - gets_before
            assert calls == 2, f"setup: expected one conflict then success, got {calls} swaps"
            assert await s2.get("c") == b"y"
            assert 0 < await s2.ttl("c") <= 100
            assert gets <= 2, (
                f"an expire losing one genuine conflict made {gets} GETs "
                "(expected the read and the re-read only)"
            )
        finally:
            await s1.close()
            await s2.close()

    run(main())


# -- 10. stale temp files of dead local writers --------------------------------------------


def test_stale_local_temp_files_are_removed(tmp_path: Any) -> None:
    root = tmp_path / "store"
    tmp = root / ".kvstore" / "tmp"
    tmp.mkdir(parents=True)
    stale = tmp / uuid.uuid4().hex  # left by a writer killed mid-write two hours ago
    stale.write_bytes(b"x" * 4096)
    two_hours_ago = time.time() - 2 * 3600
    os.utime(stale, (two_hours_ago, two_hours_ago))
    fresh = tmp / uuid.uuid4().hex  # another process's write in progress
    fresh.write_bytes(b"y" * 4096)

    with kvstore.open(str(root), cache=None) as store:
        store.set("k", "v")
        deadline = time.monotonic() + 2
        while stale.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.get("k") == b"v"
    assert not stale.exists(), "a temp file older than an hour survived open + write"
    assert fresh.exists(), "a fresh temp file (a write in progress) was removed"


def test_ctrl_c_in_a_blocking_call_cancels_its_coroutine() -> None:
    """Ctrl-C while the blocking face waits: KeyboardInterrupt reaches the caller at once and
    the coroutine on the portal loop is cancelled, not left running."""
    import signal
    import threading

    from kvstore.portal import portal

    events: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    main = threading.main_thread().ident
    assert main is not None and threading.get_ident() == main
    timer = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT))  # a real Ctrl-C
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        portal().run(slow())
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while not events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert events == ["cancelled"]
    assert portal().run(asyncio.sleep(0, "still works")) == "still works"
