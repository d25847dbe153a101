"""The HTTP service's client (``kvstore.open("kvstore+http://...")``, kvstore.remote):
the library's API, whole, over real HTTP - on memory and on a real S3 server (SeaweedFS)
behind the service; tokens and tenancy; the wire (what crosses, what is refused); what the
network adds (a lost answer, a service that is down or sends bad bytes); processes racing
through the service. The library's own contract tests run through it in
tests/test_remote_contract.py.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import io
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from conftest import Target
from http_server import Service, Services, Start, error_of, remote_racer, serving, tokens_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kvstore
from kvstore.api import AsyncKVStore, KeyInfo, Versioned
from kvstore.artifacts import AsyncArtifacts
from kvstore.http.config import HttpConfig, load_tokens
from kvstore.records import AsyncRecords
from kvstore.remote import wire
from kvstore.remote.artifacts import RemoteArtifacts
from kvstore.remote.face import RemoteKVStore
from kvstore.remote.records import RemoteRecords
from kvstore.remote.sessions import RemoteSessions
from kvstore.remote.store import AsyncRemoteStore
from kvstore.remote.transport import Service as ServiceTransport
from kvstore.sessions import AsyncSessions, Event
from kvstore.testing import run_in_processes


@pytest.fixture
def start(make_target: Callable[[str], Target]) -> Iterator[Start]:
    with Services(make_target) as services:
        yield services.start


def remote_url(service: Service, *namespace: str) -> str:
    return "kvstore+" + "/".join([service.url, *namespace])


# -- the same API ---------------------------------------------------------------------------

TWINS = [
    (AsyncKVStore, AsyncRemoteStore),
    (AsyncArtifacts, RemoteArtifacts),
    (AsyncSessions, RemoteSessions),
    (AsyncRecords, RemoteRecords),
]
INHERITED = {"scan_iter", "artifact_name"}
"""Built on the methods a remote class has: the library's own code serves (scan_iter on
key_pages; artifact_name names, no I/O)."""


@pytest.mark.parametrize(("library", "remote"), TWINS, ids=lambda c: c.__name__)
def test_every_library_method_has_a_remote_twin_with_its_signature(
    library: type, remote: type
) -> None:
    public = {n for n in dir(library) if not n.startswith("_")} - INHERITED
    own = {n for cls in remote.__mro__ if cls is not library for n in vars(cls)}
    assert public <= own, f"{remote.__name__} lacks {sorted(public - own)}"
    for name in public:
        mine, theirs = getattr(remote, name), getattr(library, name)
        if callable(theirs):
            # the same parameters (a remote method may return its own subclass)
            mine_sig, their_sig = inspect.signature(mine), inspect.signature(theirs)
            assert mine_sig.parameters == their_sig.parameters, name
            assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(theirs)
            assert mine.__doc__, name
    prefix = {
        AsyncKVStore: "",
        AsyncArtifacts: "artifacts.",
        AsyncSessions: "sessions.",
        AsyncRecords: "records.",
    }[library]
    for op in wire.OPS:
        if op.startswith(prefix) and "." not in op[len(prefix) :] and op != "key_page":
            assert callable(getattr(library, op[len(prefix) :])), op


def test_the_blocking_face_is_the_librarys(start: Start) -> None:
    service = start("memory")
    with kvstore.open(remote_url(service)) as store:
        assert isinstance(store, kvstore.KVStore) and isinstance(store, RemoteKVStore)
        assert isinstance(store.aio, kvstore.AsyncKVStore)
        child = store.namespace("child")
        assert isinstance(child, RemoteKVStore)
        assert repr(child).startswith("<RemoteKVStore kvstore+http://127.0.0.1:")
        assert "namespace='child'" in repr(child)
        assert store.url == "kvstore+" + service.url


def test_open_refuses_what_does_not_apply_to_a_service() -> None:
    url = "kvstore+http://127.0.0.1:9"
    bad: list[tuple[str, dict[str, Any]]] = [
        ("kvstore+http://user:secret@127.0.0.1:9", {}),
        ("kvstore+http://127.0.0.1:9/?ns=x", {}),
        ("kvstore+http://127.0.0.1:9#frag", {}),
        ("kvstore+http:///no-host", {}),
        ("kvstore+http://127.0.0.1:99999", {}),
        (url, {"cache": "redis://127.0.0.1:9"}),
        (url, {"cache": kvstore.LocalCache()}),
        (url, {"storage_options": {"anon": True}}),
        (url, {"retry": kvstore.RetryPolicy(attempts=2)}),
        (url, {"cache_ttl": 5.0}),
        (url, {"verify_preconditions": False}),
        (url, {"timeout": 0}),
        (url, {"timeout": "soon"}),
        (url, {"concurrency": 0}),
        (url, {"token": ""}),
        (url, {"decode_responses": "yes"}),
        ("memory://x", {"token": "a-token-for-a-service"}),
        ("memory://x", {"timeout": 5.0}),
    ]
    for given_url, options in bad:
        with pytest.raises(kvstore.ConfigurationError):
            kvstore.open(given_url, **options)
    with pytest.raises(kvstore.InvalidKeyError):
        kvstore.open(url + "/" + "x" * 2000)
    for fine in ("local", None):
        with kvstore.open(url, cache=fine) as store:  # the defaults a program passes on
            assert store.url == url


# -- the library's calls, end to end on a real S3 server -----------------------------------


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("backend", ["local", "seaweedfs"])
def test_one_program_runs_the_same_directly_and_through_the_service(
    backend: str, start: Start, tmp_path: Path
) -> None:
    """A workload of every kind of call gives the same results on the library and through
    the service, and what the client wrote is there for the library - on local disk and
    on a real S3 server (memory: tests/test_remote_contract.py)."""
    service = start(backend)
    big = uuid.uuid4().bytes * (20 * 65536 + 7)  # ~20 MiB: streamed, several pieces
    path = tmp_path / "report.pdf"
    path.write_bytes(big)

    def workload(store: kvstore.KVStore) -> list[Any]:
        out: list[Any] = []
        out.append(store.set("k", "v", ex=datetime.timedelta(hours=1)))
        out.append((store.get("k"), store.mget(["k", "nope"], "k"), store.ttl("k")))
        out.append(store.set("k", "w", nx=True))
        found = store.get_versioned("k")
        assert found is not None
        out.append(store.set("k", "v2", if_version=found.version))
        out.append(store.set("n", 2**70))
        out.append((store.get("n"), store.exists("k", "n", "nope")))
        out.append(store.extend("log", [b"\x00", "é", 3]))
        out.append((store.range("log"), store.range_at("log", -2), store.range_from("log", 1)))
        out.append((store.length("log"), store.next_seq("log"), store.trim("log", 1)))
        out.append(sorted(store.keys()))
        out.append([i and (i.type, i.size) for i in store.key_info(["k", "log", "nope"])])
        ns = store.namespace("a/b")  # one namespace whose name holds a '/'
        out.append((ns.set("k", "ns"), ns.get("k"), store.get("k"), store.namespaces()))
        arts = store.artifacts
        out.append(arts.save("notes.txt", "hello", metadata={"raw": b"\x00\xff", "n": [1]}))
        out.append(arts.save("report.pdf", path, metadata={"pages": 3}))
        out.append(arts.save("stream.bin", _chunks(big[:1000], 7)))
        out.append(arts.save("raw.bin", b"r" * 100, raw=True))
        loaded = arts.load("notes.txt")
        assert loaded is not None
        out.append((loaded.text, loaded.mime_type, loaded.metadata, arts.versions("notes.txt")))
        info = arts.info("report.pdf")
        assert info is not None
        out.append((info.mime_type, info.size, info.metadata, arts.list()))
        whole = arts.load("report.pdf")
        assert whole is not None and whole.data == big
        file = arts.open("report.pdf")
        assert file is not None
        file.seek(len(big) - 10)
        out.append(file.read(100) == big[-10:])
        file.seek(8 << 20)
        out.append(file.read(3) == big[8 << 20 : (8 << 20) + 3])
        file.close()
        out.append([(i.version, i.size, i.raw) for i in arts.versions_info("raw.bin")])
        sessions = store.sessions
        session = sessions.create("app", "user", "s1", state={"app:x": 1, "y": b"\x01"})
        event = sessions.append_event("app", "user", "s1", {"t": "hi"}, {"y": 2}, expect_last=-1)
        got = sessions.get("app", "user", "s1")
        assert got is not None
        out.append((session.state, event.seq, event.data, got.state, got.last_seq))
        out.append([s.id for s in sessions.list("app").sessions])
        with pytest.raises(kvstore.StaleSessionError):
            sessions.append_event("app", "user", "s1", {"t": "late"}, expect_last=-1)
        with pytest.raises(kvstore.InvalidKeyError):
            store.get("\ud800")
        out.append((arts.delete("stream.bin"), sessions.delete("app", "user", "s1")))
        out.append((store.delete("k", "log", "nope"), sorted(store.keys())))
        return out

    with kvstore.open(remote_url(service, "through")) as remote:
        through = workload(remote)
    direct = workload(service.store.namespace("direct"))
    assert through == direct
    mine = service.store.namespace("through")
    assert mine.get("n") == str(2**70).encode()
    assert mine.namespace("a/b").get("k") == b"ns"
    report = mine.artifacts.load("report.pdf")
    assert report is not None and report.data == big and report.metadata == {"pages": 3}
    raw = mine.artifacts.info("raw.bin")
    assert raw is not None and raw.raw


def test_async_face_on_several_event_loops(start: Start) -> None:
    service = start("memory")
    store = kvstore.open_async(remote_url(service), decode_responses=True)

    async def once(n: int) -> list[Any]:
        await store.set("k", n)
        got = [await store.get("k"), [p async for p in store.key_pages()]]
        await store.close()
        return got

    assert asyncio.run(once(1)) == ["1", [["k"]]]
    assert asyncio.run(once(2)) == ["2", [["k"]]]  # a new loop: a new connection pool


def test_threads_share_one_blocking_client(start: Start) -> None:
    service = start("memory")
    with kvstore.open(remote_url(service)) as store:
        errors: list[BaseException] = []

        def work(me: int) -> None:
            try:
                for i in range(20):
                    store.set(f"t{me}-{i}", i)
                    assert store.get(f"t{me}-{i}") == str(i).encode()
                    store.append("shared", f"{me}:{i}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert sorted(store.range("shared")) == sorted(
            f"{m}:{i}".encode() for m in range(8) for i in range(20)
        )


def test_decode_responses_through_the_service(start: Start) -> None:
    service = start("memory")
    with kvstore.open(remote_url(service), decode_responses=True) as store:
        store.set("text", "é")
        store.set("bin", b"\xff")
        store.append("log", "a", b"\xfe")
        assert store.get("text") == "é" and store.mget("text") == ["é"]
        found = store.get_versioned("text")
        assert found is not None and found.value == "é"
        for call in (lambda: store.get("bin"), lambda: store.range("log")):
            with pytest.raises(kvstore.ResponseDecodeError):
                call()
        assert store.range_from("log", 0, 1) == [(0, "a")]


def test_a_result_over_the_services_limit_is_refused_not_sent(start: Start) -> None:
    service = start("memory", HttpConfig(max_body=64 << 10))
    service.store.extend("log", [b"x" * 1000] * 100)
    with kvstore.open(remote_url(service)) as store:
        with pytest.raises(kvstore.ConfigurationError, match="over the service's limit"):
            store.range("log")
        assert len(store.range("log", 0, 9)) == 10  # a page at a time
        pages = list(store.key_pages(logs=False, page_size=5000))
        assert pages == []


def test_stats_count_this_clients_requests(start: Start) -> None:
    service = start("memory")
    with kvstore.open(remote_url(service)) as store:
        store.set("k", "v")
        store.get("k")
        store.mget(["k", "j"])
        counts = store.stats()
        assert counts["requests"] == 3
        assert counts["requests.set"] == counts["requests.get"] == counts["requests.mget"] == 1
        assert counts["cache"] == {"kind": "service"}
        assert counts["bytes_written"] > 0 and counts["bytes_read"] > 0


# -- tokens and tenancy ---------------------------------------------------------------------


def test_tokens_confine_the_client_to_its_namespace_and_access(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {n: f"{n}-secret-{uuid.uuid4().hex}" for n in ("admin", "writer", "reader")}
    path = tokens_file(
        tmp_path,
        {
            "admin": {"token": secrets["admin"]},
            "writer": {"token": secrets["writer"], "namespace": "tenant"},
            "reader": {"token": secrets["reader"], "namespace": "tenant", "access": "read"},
        },
    )
    service = start("memory", HttpConfig(tokens=load_tokens(path, None)))
    url = remote_url(service)
    with kvstore.open(url, token=secrets["writer"]) as writer:
        assert writer.set("k", "tenant's") and writer.append("log", "x") == 1
        assert writer.keys() == ["k", "log"]
        health = writer.health()
        assert health["ok"] and "url" not in health["store"]  # where the data lives: admin's
    with kvstore.open(url, token=secrets["reader"]) as reader:
        assert reader.get("k") == b"tenant's"
        for write in (
            lambda: reader.set("k", "no"),
            lambda: reader.append("log", "no"),
            lambda: reader.artifacts.save("a", b"no"),
            lambda: reader.artifacts.save("a", io.BytesIO(b"no" * (9 << 20))),
            lambda: reader.sessions.create("app", "user"),
            lambda: reader.fsck(),
        ):
            with pytest.raises(kvstore.ForbiddenError) as refused:
                write()
            assert isinstance(refused.value, PermissionError)
    monkeypatch.setenv("KVSTORE_HTTP_TOKEN", secrets["admin"])
    with kvstore.open(url) as admin:
        assert admin.get("k") is None  # the tenant's keys are in its namespace
        assert admin.namespace("tenant").get("k") == b"tenant's"
        assert admin.namespaces() == ["tenant"]
        assert admin.health()["store"]["url"].startswith("memory://")
    assert service.store.namespace("tenant").range("log") == [b"x"]
    monkeypatch.delenv("KVSTORE_HTTP_TOKEN")
    for token in (None, "not-a-token-of-this-service"):
        with kvstore.open(url, token=token) as stranger, pytest.raises(kvstore.ForbiddenError):
            stranger.get("k")


# -- the wire -------------------------------------------------------------------------------

plain = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False)
    | st.binary(max_size=50)
    | st.text(st.characters(codec=None), max_size=20)  # lone surrogates too
    # fixed offsets: the wire carries a datetime's offset, not its zone's name, and Python
    # compares two zones' datetimes in a repeated (DST fold) hour as unequal
    | st.datetimes(
        timezones=st.none()
        | st.builds(
            datetime.timezone,
            st.timedeltas(-datetime.timedelta(hours=23), datetime.timedelta(hours=23)).map(
                lambda d: datetime.timedelta(minutes=d // datetime.timedelta(minutes=1))
            ),
        )
    )
    | st.timedeltas()
    | st.builds(range, st.integers(-5, 5), st.integers(-5, 5), st.sampled_from([1, 2, -1]))
)
values = st.recursive(
    plain
    | st.builds(Versioned, st.binary(max_size=5), st.text(max_size=5))
    | st.builds(
        KeyInfo, st.sampled_from(["string", "hash"]), st.integers(-2, 10**6), st.integers(0)
    )
    | st.builds(
        Event, st.integers(0, 10), st.floats(0, 2e9), st.dictionaries(st.text(), st.integers())
    ),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5) | st.binary(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_the_wire_carries_what_the_library_takes_and_returns(value: Any) -> None:
    back = wire.unpack(wire.pack(value))
    assert back == value and type(back) is type(value)
    if isinstance(value, datetime.datetime):
        assert back.utcoffset() == value.utcoffset()


def test_the_wire_builds_nothing_the_sender_chooses() -> None:
    bad = [
        msgpack.ExtType(99, b""),
        msgpack.ExtType(wire.RECORD, wire.pack(["Popen", {"args": "true"}])),
        msgpack.ExtType(wire.RECORD, wire.pack(["Versioned", {"value": 1, "nope": 2}])),
        msgpack.ExtType(wire.RECORD, b"\xc1"),
        msgpack.ExtType(wire.BIGINT, b"1" * 5000),  # past Python's digit limit
        msgpack.ExtType(wire.BIGINT, b"0x10"),
        msgpack.ExtType(wire.DATETIME, wire.pack([1e300, None])),
        msgpack.ExtType(wire.DATETIME, wire.pack([2026, 13, 1, 0, 0, 0, 0, None])),
        msgpack.ExtType(wire.DATETIME, wire.pack([2026, 1, 1, 0, 0, 0, 0, [2, 0, 0]])),
        msgpack.ExtType(wire.TIMEDELTA, wire.pack(["a"])),
        msgpack.ExtType(wire.RANGE, wire.pack([1, 2, 0])),
    ]
    for ext in bad:
        with pytest.raises(wire.WireError):
            wire.unpack(msgpack.packb(ext))
    opaque = wire.unpack(wire.pack(object()))
    assert isinstance(opaque, wire.Opaque) and type(opaque).__name__ == "object"


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _post(http: httpx.Client, body: bytes) -> httpx.Response:
    return http.post("/v1/call", content=body, headers={"Content-Type": wire.MEDIA_TYPE})


def test_malformed_calls_are_refused_and_change_nothing(start: Start) -> None:
    service = start("memory")
    calls = [
        b"",
        b"\xc1",
        b"not msgpack at all",
        msgpack.packb({"op": "get"}),
        msgpack.packb(["get", ["k"]]),
        msgpack.packb(["get", "k", {}]),
        msgpack.packb(["get", ["k"], []]),
        msgpack.packb(["set", ["k", "v"], {"not an identifier": 1}]),
        msgpack.packb(["set", ["k", "v"], {"bogus": 1}]),
        msgpack.packb(["set", [], {}]),
        msgpack.packb(["set", ["k", "v", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], {}]),
        *(
            msgpack.packb([op, [], {}])
            for op in (
                "_values",
                "close",
                "namespace",
                "__class__",
                "artifacts.ctx",
                "sessions._read",
                "artifacts.open",
                "stats",
                "hset",
                7,
                None,
            )
        ),
        msgpack.packb(["set", ["k", msgpack.ExtType(99, b"")], {}]),
        msgpack.packb(["set", ["k", _nested(30)], {}]),
        b"\x91" * 100_000 + b"\xc0",  # arrays nested 100,000 deep
        msgpack.packb(["set", ["k", msgpack.ExtType(wire.OPAQUE, b"socket")], {}]),
    ]
    with service.http() as http:
        for body in calls:
            answer = _post(http, body)
            assert answer.status_code == 400, (body[:60], answer.status_code, answer.text)
            error_of(answer, 400)
    assert service.store.keys() == []


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    op=st.sampled_from(sorted(wire.OPS)) | st.text(max_size=10),
    args=st.lists(values, max_size=4),
    kwargs=st.dictionaries(
        st.sampled_from(
            ["ex", "px", "nx", "start", "count", "version", "state", "expect_last", "prefix", "x"]
        ),
        values,
        max_size=3,
    ),
)
def test_random_calls_get_the_librarys_answers_never_a_500(
    fuzzed_service: Service, op: str, args: list[Any], kwargs: dict[str, Any]
) -> None:
    if op in ("purge", "fsck", "delete_prefix", "sessions.delete_app"):
        return  # whole-view sweeps: correct, and slow to repeat 200 times
    with fuzzed_service.http() as http:
        answer = _post(http, wire.call(op, tuple(args), kwargs))
    assert answer.status_code in (200, 400, 404, 409, 501), (op, args, kwargs, answer.text)
    if answer.status_code != 200:
        error_of(answer, answer.status_code)


@pytest.fixture(scope="module")
def fuzzed_service() -> Iterator[Service]:
    with serving(lambda: kvstore.open_async(f"memory://fuzz-{uuid.uuid4().hex}")) as url:
        yield Service(url, None, kvstore.open("memory://unused"))


# -- what the network adds ------------------------------------------------------------------


def _read_request(conn: socket.socket) -> bytes:
    """One HTTP request, headers and the body its Content-Length announces."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_lost_answer_is_an_error_and_the_call_is_never_sent_twice() -> None:
    """A service that takes the request and closes without answering: the write may have
    happened, so the client says it failed (BackendError) and does not send it again."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    received: list[bytes] = []

    def swallow() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                received.append(_read_request(conn))

    threading.Thread(target=swallow, daemon=True).start()
    port = listener.getsockname()[1]
    try:
        with kvstore.open(f"kvstore+http://127.0.0.1:{port}", timeout=10) as store:
            with pytest.raises(kvstore.BackendError) as failed:
                store.append("log", "once")
            assert failed.value.operation == "append"
            health = store.health()
            assert health["ok"] is False and "failed" in health["store"]["error"]
    finally:
        listener.close()
    appends = [r for r in received if b"append" in r]
    assert len(appends) == 1, received


def test_a_service_that_is_down_is_a_backend_error(start: Start) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        with kvstore.open(f"kvstore+http://127.0.0.1:{port}") as store:
            with pytest.raises(kvstore.BackendError):
                store.get("k")
            with pytest.raises(kvstore.BackendError):
                store.artifacts.save("a", io.BytesIO(b"x" * (17 << 20)))
            assert store.health()["ok"] is False


def test_artifact_bytes_changed_on_the_way_are_caught(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = start("memory")
    data = bytes(range(256)) * 4096
    service.store.artifacts.save("a.bin", data)
    real = ServiceTransport.send

    async def flipping(self: ServiceTransport, *args: Any, **kwargs: Any) -> httpx.Response:
        answer = await real(self, *args, **kwargs)
        if args[2] == "artifacts.load":
            body = bytearray(answer.content)
            body[len(body) // 2] ^= 1
            answer._content = bytes(body)  # what a lying proxy would pass on
        return answer

    monkeypatch.setattr(ServiceTransport, "send", flipping)
    with kvstore.open(remote_url(service)) as store:
        with pytest.raises(kvstore.CorruptDataError, match="sha256"):
            store.artifacts.load("a.bin")
        file = store.artifacts.open("a.bin")
        assert file is not None
        with pytest.raises(kvstore.CorruptDataError):
            file.read()


def test_a_version_deleted_while_it_is_read(start: Start) -> None:
    service = start("memory")
    service.store.artifacts.save("a.bin", b"x" * (20 << 20))
    with kvstore.open(remote_url(service)) as store:
        file = store.artifacts.open("a.bin")
        assert file is not None and file.read(10) == b"x" * 10
        service.store.artifacts.delete("a.bin")
        file.seek(17 << 20)  # a piece the client has not fetched
        with pytest.raises(kvstore.CorruptDataError, match="deleted"):
            file.read(10)
        assert store.artifacts.load("a.bin") is None


# -- processes racing through the service ---------------------------------------------------


def test_processes_racing_through_the_service_lose_and_double_nothing(start: Start) -> None:
    """Four processes, each its own client, through one service on a real S3 server:
    exactly one wins SET NX and one the stale-checked event; no append is lost or doubled;
    every compare-and-swap increment counts once."""
    service = start("seaweedfs")
    service.store.set("counter", 0)
    service.store.sessions.create("app", "user", "shared")
    racers, appends = 4, 25
    results = run_in_processes(
        remote_racer,
        [(remote_url(service), me, appends) for me in range(racers)],
        barrier=True,
        timeout=240,
    )
    assert sum(r["won"] for r in results) == 1
    assert sum(r["appended"] for r in results) == 1
    records = service.store.range("log")
    assert sorted(records) == sorted(
        f"{m}:{i}".encode() for m in range(racers) for i in range(appends)
    )
    for me in range(racers):  # each writer's records in its order
        mine = [r for r in records if r.startswith(f"{me}:".encode())]
        assert mine == [f"{me}:{i}".encode() for i in range(appends)]
    lengths = [n for r in results for n in r["lengths"]]
    assert sorted(lengths) == list(range(1, racers * appends + 1))
    assert service.store.get("counter") == str(racers * 10).encode()
    session = service.store.sessions.get("app", "user", "shared")
    assert session is not None and session.last_seq == 0
