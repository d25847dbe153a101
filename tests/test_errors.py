"""Bad input fails at once with a clear error and loses nothing; a failing or corrupted
object store surfaces as BackendError / CorruptDataError, never as garbage."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, stable_repr

import kvstore
from kvstore.blob.generic import FsspecBlobStore
from kvstore.blob.memory import MemoryBlobStore
from kvstore.errors import BackendError, CorruptDataError, InvalidKeyError, InvalidValueError
from kvstore.keys import encode_name
from kvstore.portal import portal
from kvstore.stats import Stats

Target = Any  # tests/conftest.py's Target

# Keys are binary-safe and may be empty (as in Redis): b"", b"\xff" are good keys.
BAD_KEYS = [None, 5, 1.5, object(), "\ud800", "k" * 1025, b"k" * 1025, ("a",)]

KEY_OPS: dict[str, Callable[[kvstore.KVStore, Any], Any]] = {
    "get": lambda s, k: s.get(k),
    "set": lambda s, k: s.set(k, "v"),
    "set_nx": lambda s, k: s.set(k, "v", nx=True),
    "set_xx": lambda s, k: s.set(k, "v", xx=True),
    "mget_list": lambda s, k: s.mget(["ok", k]),
    "mget_args": lambda s, k: s.mget("ok", k),
    "mget_one": lambda s, k: s.mget(k),
    "mset": lambda s, k: s.mset({"ok": 1, k: 2}),
    "delete": lambda s, k: s.delete("ok", k),
    "exists": lambda s, k: s.exists("ok", k),
    "expire": lambda s, k: s.expire(k, 10),
    "pexpire": lambda s, k: s.pexpire(k, 10),
    "persist": lambda s, k: s.persist(k),
    "ttl": lambda s, k: s.ttl(k),
    "pttl": lambda s, k: s.pttl(k),
    "namespace": lambda s, k: s.namespace(k),
}


@pytest.fixture(params=FAST)
def small_store(
    request: pytest.FixtureRequest, make_target: Callable[[str], Target]
) -> Iterator[kvstore.KVStore]:
    with make_target(request.param).open(cache="local") as store:
        yield store


# -- bad keys and values -------------------------------------------------------------------


@pytest.mark.parametrize("op", sorted(KEY_OPS))
def test_bad_keys_rejected_by_every_op(small_store: kvstore.KVStore, op: str) -> None:
    small_store.set("ok", "keep", ex=100)
    for bad in BAD_KEYS:
        if op.startswith(("mget", "delete", "exists")) and isinstance(bad, tuple):
            continue  # these accept lists/tuples of keys
        with pytest.raises(InvalidKeyError) as info:
            KEY_OPS[op](small_store, bad)
        assert isinstance(info.value, ValueError)
        message = str(info.value)
        assert any(word in message for word in ("must", "not", "limit", "UTF-8", "Unicode"))
    # nothing was written, changed or deleted
    assert small_store.keys() == ["ok"]
    assert small_store.get("ok") == b"keep"
    assert 0 < small_store.ttl("ok") <= 100


def test_bad_prefix(small_store: kvstore.KVStore) -> None:
    for bad in (None, 5, b"\xff", "k" * 1025):
        with pytest.raises(InvalidKeyError):
            small_store.keys(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidKeyError):
            list(small_store.scan_iter(bad))  # type: ignore[arg-type]
        with pytest.raises(InvalidKeyError):
            small_store.purge_expired(bad)  # type: ignore[arg-type]


BAD_VALUES = [None, True, False, {"a": 1}, ["a"], ("a",), {1}, object(), 1j, "\ud800"]


@pytest.mark.parametrize("value", BAD_VALUES, ids=stable_repr)
def test_bad_values(small_store: kvstore.KVStore, value: object) -> None:
    small_store.set("k", "old")
    with pytest.raises(InvalidValueError) as info:
        small_store.set("k", value)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, kvstore.KVStoreError)
    assert (
        "bytes, str, int or float" in str(info.value)
        or "bool" in str(info.value)
        or ("Unicode" in str(info.value))
    )
    with pytest.raises(InvalidValueError):
        small_store.set("new", value, nx=True)
    with pytest.raises(InvalidValueError):
        small_store.mset({"good": "x", "k": value})
    assert small_store.get("k") == b"old"
    assert small_store.keys() == ["k"]  # mset validated everything before writing anything


def test_bad_mset_argument(small_store: kvstore.KVStore) -> None:
    with pytest.raises(ValueError, match="mapping"):
        small_store.mset([("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        small_store.mset({"a": 1, None: 2})  # type: ignore[dict-item]
    assert small_store.keys() == []


@pytest.mark.parametrize(
    "kwargs",
    [{"ex": "10"}, {"px": None, "ex": [1]}, {"ex": float("inf")}, {"exat": "tomorrow"}],
    ids=stable_repr,
)
def test_bad_expiry_arguments(small_store: kvstore.KVStore, kwargs: dict[str, Any]) -> None:
    with pytest.raises(kvstore.ConfigurationError):
        small_store.set("k", "v", **kwargs)
    with pytest.raises(kvstore.ConfigurationError):
        small_store.expire("k", kwargs.get("ex", kwargs.get("exat")))
    assert small_store.get("k") is None


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.set("k", "new", ex=10**17),
        lambda s: s.set("k", "new", px=2**63),
        lambda s: s.set("k", "new", pxat=2**63),
        lambda s: s.set("k", "new", exat=10**17),
        lambda s: s.set("k", "new", ex=1e300),
        lambda s: s.expire("k", 10**17),
        lambda s: s.pexpire("k", 2**63),
        lambda s: s.pexpire("k", -(2**63)),
    ],
)
def test_expiry_out_of_range(small_store: kvstore.KVStore, call: Callable[[Any], Any]) -> None:
    """A TTL that cannot be stored is a ConfigurationError, not a struct.error from the
    envelope encoder (found by this test), and leaves the value alone."""
    small_store.set("k", "old")
    with pytest.raises(kvstore.ConfigurationError, match="out of range"):
        call(small_store)
    assert small_store.get("k") == b"old"
    assert small_store.ttl("k") == -1


# -- bad URLs and options: at open time, before any I/O -----------------------------------


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("", "non-empty"),
        ("   ", "non-empty"),
        (5, "non-empty"),
        (b"/tmp/x", "non-empty"),
        ("nope://x", "unknown storage protocol 'nope'"),
        ("bad proto!://x", "bad protocol"),
        ("s3://", "bucket"),
        ("s3:///prefix", "bucket"),
        ("gs://", "bucket"),
        ("file://", "names no directory"),
    ],
)
def test_bad_urls(url: Any, match: str) -> None:
    with pytest.raises(kvstore.ConfigurationError, match=match) as info:
        kvstore.open(url, cache=None)
    assert isinstance(info.value, ValueError)
    with pytest.raises(kvstore.ConfigurationError):
        kvstore.open_async(url, cache=None)


def test_none_url_means_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KVSTORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    with kvstore.open(None, cache=None) as store:
        assert store.url == f"file://{tmp_path / 'kvstore-data'}"
        assert not (tmp_path / "kvstore-data").exists()  # opening does no I/O
    monkeypatch.setenv("KVSTORE_URL", "memory://from-env")
    with kvstore.open(cache=None) as store:
        assert store.url == "memory://from-env"


@pytest.mark.parametrize(
    ("url", "kwargs", "match"),
    [
        ("memory://x", {"storage_options": "endpoint=x"}, "storage_options must be a dict"),
        ("memory://x", {"storage_options": ["a"]}, "storage_options must be a dict"),
        ("LOCAL", {"storage_options": {"bogus": 1}}, "unknown storage_options"),
        ("memory://x", {"storage_options": {"bogus": 1}}, "no storage_options"),
        ("memory://x", {"concurrency": 0}, "concurrency"),
        ("memory://x", {"concurrency": -1}, "concurrency"),
        ("memory://x", {"concurrency": "8"}, "concurrency"),
        ("memory://x", {"concurrency": 2.5}, "concurrency"),
        ("memory://x", {"cache": "bogus"}, "cache must be"),
        ("memory://x", {"cache": 5}, "cache must be"),
        ("memory://x", {"decode_responses": "yes"}, "decode_responses"),
        ("memory://x", {"decode_responses": 1}, "decode_responses"),
        ("memory://x", {"cache_ttl": 0}, "cache_ttl"),
        ("memory://x", {"cache_ttl": "60"}, "cache_ttl"),
    ],
)
def test_bad_options(url: str, kwargs: dict[str, Any], match: str, tmp_path: Path) -> None:
    if url == "LOCAL":
        url = str(tmp_path / "store")
    with pytest.raises(kvstore.ConfigurationError, match=match):
        kvstore.open(url, **kwargs)
    with pytest.raises(kvstore.ConfigurationError, match=match):
        kvstore.open_async(url, **kwargs)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    "make_retry",
    [
        lambda: kvstore.RetryPolicy(attempts=0),
        lambda: kvstore.RetryPolicy(attempts=True),
        lambda: kvstore.RetryPolicy(attempts=2.5),  # type: ignore[arg-type]
        lambda: kvstore.RetryPolicy(base_delay=-1),
        lambda: kvstore.RetryPolicy(max_delay=float("nan")),
        lambda: "bogus",
        lambda: {"attempts": 3},
    ],
)
def test_bad_retry_policy(make_retry: Callable[[], Any]) -> None:
    """Found by this test: attempts=0 used to open fine, then fail every operation with
    AssertionError("unreachable"); a non-RetryPolicy failed with AttributeError."""
    with pytest.raises(kvstore.ConfigurationError):
        kvstore.open("memory://x", cache=None, retry=make_retry())


def test_retry_policy_edges() -> None:
    policy = kvstore.RetryPolicy(attempts=1, base_delay=0, max_delay=0)
    assert policy.delay(5) == 0
    with kvstore.open("memory://edges", cache=None, retry=policy) as store:
        assert store.set("k", "v") is True


@pytest.mark.parametrize("url", ["s3://bucket/prefix", "gs://bucket/prefix"])
def test_unknown_remote_storage_option_fails_at_open(url: str) -> None:
    with pytest.raises(kvstore.ConfigurationError, match="no_such_option"):
        kvstore.open(url, storage_options={"no_such_option": 1}, cache=None)


# -- corrupted objects on every backend ----------------------------------------------------


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


def _corrupt(
    target: Target, store: kvstore.KVStore, path: str, mutate: Callable[[bytes], bytes]
) -> None:
    """Rewrite the object behind the store's back, with that backend's own client."""
    if target.backend == "local":
        file = Path(target.url) / path
        file.write_bytes(mutate(file.read_bytes()))
    elif target.backend in ("memory", "memory+latency"):
        blob = store.aio._ctx.blob
        found = portal().run(blob.get(path))
        portal().run(blob.put(path, mutate(found.data)))
    elif target.backend == "s3":
        bucket, _, prefix = target.url.removeprefix("s3://").partition("/")
        import boto3

        options = target.storage_options
        client = boto3.client(
            "s3",
            endpoint_url=options["endpoint_url"],
            aws_access_key_id=options["key"],
            aws_secret_access_key=options["secret"],
            region_name="us-east-1",
        )
        try:
            key = f"{prefix}/{path}"
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            client.put_object(Bucket=bucket, Key=key, Body=mutate(data))
        finally:
            client.close()
    elif target.backend == "gcs":
        import fsspec

        fs = fsspec.filesystem("gcs", skip_instance_cache=True, **target.storage_options)
        full = f"{target.url.removeprefix('gs://')}/{path}"
        fs.pipe_file(full, mutate(fs.cat_file(full)))
    else:  # pragma: no cover
        raise AssertionError(target.backend)


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "payload-bit": lambda d: _flip(d, len(d) - 6),
    "header-bit": lambda d: _flip(d, 9),
    "truncated": lambda d: d[:20],
    "foreign": lambda d: b"<html>not a kvstore object</html>",
}


def _reads_of(store: kvstore.KVStore, key: str) -> list[Callable[[], Any]]:
    """Every operation that has to decode the stored object of ``key``."""
    return [
        lambda: store.get(key),
        lambda: store.mget(["other", key]),
        lambda: store.ttl(key),
        lambda: store.exists(key),
        lambda: store.expire(key, 10),
        lambda: store.set(key, "x", xx=True),
    ]


def test_corrupt_object_is_detected(target: Target) -> None:
    # every kind of damage on the cheap backends; one flipped bit per remote backend
    damages = ["payload-bit"] if target.backend in ("s3", "gcs") else sorted(DAMAGE)
    with target.open(cache=None) as store:
        store.mset({"other": "fine", **{f"bad {d}": "precious" for d in damages}})
        store.set("ttl", "x", ex=100)
        for damage in damages:
            key = f"bad {damage}"
            path = f"kv/{encode_name(key)}"
            assert path == "kv/" + key.replace(" ", "%20") + "~"
            _corrupt(target, store, path, DAMAGE[damage])

            for op in _reads_of(store, key):
                with pytest.raises(CorruptDataError) as info:
                    op()
                message = str(info.value)
                assert repr(key) in message, message
                assert path in message, message
                assert info.value.key == key
                assert info.value.path == f"{store.url}/{path}"
                assert isinstance(info.value, kvstore.KVStoreError)
            # the other keys are untouched and still readable
            assert store.mget("other", "ttl") == [b"fine", b"x"]
            assert 0 < store.ttl("ttl") <= 100
            assert store.keys(key) == [key]
            # overwriting or deleting the damaged key is the repair
            if damage == "foreign":
                assert store.set(key, "repaired") is True
                assert store.get(key) == b"repaired"
            else:
                assert store.delete(key) == 1
                assert store.get(key) is None
        assert store.get("other") == b"fine"


@pytest.mark.parametrize("backend", FAST)
def test_corrupt_object_with_cache_in_front(
    make_target: Callable[[str], Target], backend: str
) -> None:
    """A reader with a cold local cache does not cache a corrupt object."""
    target = make_target(backend)
    with target.open(cache=kvstore.LocalCache()) as store:
        store.set("k", "v")
        _corrupt(target, store, f"kv/{encode_name('k')}", DAMAGE["payload-bit"])
        before = store.stats().get("requests.get", 0)
        for _ in range(2):
            with pytest.raises(CorruptDataError):
                store.get("k")
        assert store.stats()["requests.get"] == before + 2  # nothing corrupt was cached
        store.set("k", "fixed")
        assert store.get("k") == b"fixed"


# -- an unreachable object store -----------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_s3() -> None:
    port = _closed_port()
    options = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "key": "testing",
        "secret": "testing",
        "config_kwargs": {
            "connect_timeout": 1,
            "read_timeout": 1,
            "retries": {"max_attempts": 1},
        },
    }
    retry = kvstore.RetryPolicy(attempts=2, base_delay=0.01)
    with kvstore.open(
        "s3://bucket/prefix", storage_options=options, cache=None, retry=retry
    ) as store:
        for operation, call in [
            ("get", lambda: store.get("k")),
            ("put", lambda: store.set("k", "v")),
            ("put_if_absent", lambda: store.set("k", "v", nx=True)),
            ("list", lambda: store.keys()),
        ]:
            start = time.monotonic()
            with pytest.raises(BackendError) as info:
                call()
            elapsed = time.monotonic() - start
            assert elapsed < 10, (operation, elapsed)
            error = info.value
            assert error.operation == operation
            assert "s3://bucket/prefix" in str(error)
            assert str(error).startswith(operation)
            assert error.cause is not None
            assert error.__cause__ is error.cause
            assert "connect" in str(error).lower()
        stats = store.stats()
        assert stats["retries"] >= 4  # every operation was retried once
        assert stats["errors"] == 4


# -- a failing object store mid-operation --------------------------------------------------


class FlakyBlobStore(MemoryBlobStore):
    """Memory objects, but the chosen primitives fail on demand."""

    def __init__(self, root: str, *, stats: Stats, retry: kvstore.RetryPolicy) -> None:
        super().__init__(root, stats=stats, retry=retry)
        self.failures: dict[str, int] = {}
        self.error: Callable[[], BaseException] = lambda: ConnectionResetError("reset by peer")
        self.apply_then_fail: set[str] = set()
        self.fail_paths: set[str] | None = None

    def _should_fail(self, op: str, path: str) -> bool:
        if self.fail_paths is not None and path not in self.fail_paths:
            return False
        if self.failures.get(op, 0) > 0:
            self.failures[op] -= 1
            return True
        return False

    async def _get(self, path: str, head: int | None = None) -> Any:
        if self._should_fail("get", path):
            raise self.error()
        return await super()._get(path, head)

    async def _put(self, path: str, data: bytes) -> str:
        if self._should_fail("put", path):
            raise self.error()
        return await super()._put(path, data)

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        if self._should_fail("put_if_absent", path):
            if "put_if_absent" in self.apply_then_fail:
                await super()._put_if_absent(path, data)  # applied, but the reply is lost
            raise self.error()
        return await super()._put_if_absent(path, data)

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        if self._should_fail("put_if_match", path):
            if "put_if_match" in self.apply_then_fail:
                await super()._put_if_match(path, data, tag)
            raise self.error()
        return await super()._put_if_match(path, data, tag)

    async def _delete(self, path: str) -> None:
        if self._should_fail("delete", path):
            raise self.error()
        await super()._delete(path)


@pytest.fixture
def flaky() -> Iterator[tuple[kvstore.KVStore, FlakyBlobStore]]:
    import uuid

    stats = Stats()
    blob = FlakyBlobStore(
        f"flaky-{uuid.uuid4().hex}",
        stats=stats,
        retry=kvstore.RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01),
    )
    with kvstore.KVStore(kvstore.AsyncKVStore(blob, kvstore.NoCache(), stats=stats)) as store:
        yield store, blob


def test_transient_faults_are_retried(flaky: tuple[kvstore.KVStore, FlakyBlobStore]) -> None:
    store, blob = flaky
    blob.failures = {"put": 2}
    assert store.set("k", "v") is True
    blob.failures = {"get": 3}
    assert store.get("k") == b"v"
    # The store wrote "k" itself, so expire swaps the version it knows: no GET.
    blob.failures = {"put_if_match": 1}
    assert store.expire("k", 100) is True
    blob.failures = {"delete": 1}
    assert store.delete("k") == 1
    stats = store.stats()
    assert stats["retries"] == 2 + 3 + 1 + 1
    assert stats.get("errors", 0) == 0
    assert store.get("k") is None


@pytest.mark.parametrize("error", [ConnectionResetError, TimeoutError, BrokenPipeError])
def test_transient_kinds(flaky: tuple[kvstore.KVStore, FlakyBlobStore], error: type) -> None:
    store, blob = flaky
    blob.error = lambda: error("transient")
    blob.failures = {"put": 1}
    assert store.set("k", "v") is True
    assert store.stats()["retries"] == 1


def test_ambiguous_conditional_create_is_recognised(
    flaky: tuple[kvstore.KVStore, FlakyBlobStore],
) -> None:
    """The create was applied but its reply lost: the retry finds the object and the store
    recognises its own write (by the envelope nonce), so nx reports success, not None."""
    store, blob = flaky
    blob.failures = {"put_if_absent": 1}
    blob.apply_then_fail = {"put_if_absent"}
    assert store.set("k", "mine", nx=True) is True
    assert store.get("k") == b"mine"
    # and an object written by someone else is still a conflict
    assert store.set("k", "again", nx=True) is None


def test_ambiguous_compare_and_swap_is_recognised(
    flaky: tuple[kvstore.KVStore, FlakyBlobStore],
) -> None:
    store, blob = flaky
    store.set("k", "v")
    blob.failures = {"put_if_match": 1}
    blob.apply_then_fail = {"put_if_match"}
    assert store.expire("k", 50) is True
    assert 0 < store.ttl("k") <= 50
    assert store.get("k") == b"v"


def test_persistent_transient_fault_gives_up(flaky: tuple[kvstore.KVStore, FlakyBlobStore]) -> None:
    store, blob = flaky
    store.set("k", "old")
    blob.failures = {"put": 100}
    with pytest.raises(BackendError) as info:
        store.set("k", "new")
    assert info.value.operation == "put"
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert "memory://flaky-" in str(info.value)
    assert store.stats()["retries"] == 3  # attempts=4
    blob.failures = {}
    assert store.get("k") == b"old"


def test_permanent_fault_is_not_retried(flaky: tuple[kvstore.KVStore, FlakyBlobStore]) -> None:
    store, blob = flaky
    store.set("k", "old", ex=100)
    blob.error = lambda: PermissionError("access denied")
    for failing, call in [
        ("put", lambda: store.set("k", "new")),
        ("put_if_match", lambda: store.set("k", "new", xx=True)),
        ("put_if_match", lambda: store.persist("k")),
        ("put_if_match", lambda: store.expire("k", 5)),
        ("get", lambda: store.get("k")),
        ("delete", lambda: store.delete("k")),
    ]:
        blob.failures = {failing: 1}
        with pytest.raises(BackendError) as info:
            call()
        assert info.value.operation == failing
        assert isinstance(info.value.cause, PermissionError)
        assert "access denied" in str(info.value)
    assert store.stats().get("retries", 0) == 0
    assert store.stats()["errors"] == 6
    blob.failures = {}
    # nothing was half-written: the value and its TTL are as before
    assert store.get("k") == b"old"
    assert 95 < store.ttl("k") <= 100


def test_mset_failure_leaves_every_key_whole(flaky: tuple[kvstore.KVStore, FlakyBlobStore]) -> None:
    store, blob = flaky
    store.mset({"a": "a0", "b": "b0", "c": "c0"})
    blob.error = lambda: PermissionError("denied")
    blob.fail_paths = {f"kv/{encode_name('b')}"}
    blob.failures = {"put": 1}
    with pytest.raises(BackendError):
        store.mset({"a": "a1", "b": "b1", "c": "c1"})
    blob.failures = {}
    a, b, c = store.mget("a", "b", "c")
    assert b == b"b0"  # the failed write left the old object intact
    assert a in (b"a0", b"a1")
    assert c in (b"c0", b"c1")


# -- a backend without atomic primitives ----------------------------------------------------


def test_generic_fsspec_backend_refuses_what_it_cannot_do_atomically(tmp_path: Path) -> None:
    stats = Stats()
    blob = FsspecBlobStore("file", str(tmp_path / "generic"), {}, stats=stats)
    assert blob.atomic_create is False
    assert blob.atomic_conditional_put is False
    assert blob.atomic_conditional_delete is False
    with kvstore.KVStore(kvstore.AsyncKVStore(blob, kvstore.NoCache(), stats=stats)) as store:
        assert store.set("k", "v") is True
        assert store.set("t", "v", ex=100) is True  # a plain put, with an expiry
        assert store.get("k") == b"v"
        assert store.mget("k", "missing") == [b"v", None]
        assert store.keys() == ["k", "t"]
        assert store.persist("k") is False  # nothing to write: no atomic primitive needed
        for call in (
            lambda: store.set("k", "x", nx=True),
            lambda: store.set("new", "x", nx=True),
            lambda: store.set("k", "x", xx=True),
            lambda: store.set("k", "x", keepttl=True),
            lambda: store.expire("k", 10),
            lambda: store.persist("t"),
        ):
            with pytest.raises(kvstore.UnsupportedOperationError) as info:
                call()
            assert isinstance(info.value, NotImplementedError)
            assert "atomic" in str(info.value)
        assert store.get("k") == b"v"
        assert store.get("new") is None
        assert store.ttl("k") == -1
        assert 0 < store.ttl("t") <= 100
        assert store.delete("k", "t") == 2
        assert store.keys() == []


def test_async_errors_are_the_same(make_target: Callable[[str], Target]) -> None:
    async def run() -> None:
        async with make_target("memory").open_async() as store:
            with pytest.raises(InvalidKeyError):
                await store.get("\ud800")
            with pytest.raises(InvalidValueError):
                await store.set("k", None)
            with pytest.raises(ValueError):
                await store.set("k", "v", nx=True, xx=True)
            assert await store.keys() == []

    asyncio.run(run())
