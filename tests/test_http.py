"""Contract tests of the HTTP service (``kvstore serve --http``, issue 19) over real HTTP:
the service started by the tests on a free loopback port (tests/http_server.py), httpx as
the client, on memory, local disk and a real S3 server (SeaweedFS); what the service wrote
is checked with the library on the same store. Plus the CLI as a subprocess, tokens and
tenancy, bad input (JSON errors, never a 500), and processes racing over HTTP.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Target
from http_server import (
    Service,
    Services,
    Start,
    b64,
    cli,
    client,
    create_once,
    error_of,
    increment,
    log_url,
    parse_metrics,
    serving,
    tokens_file,
    value_url,
    wait_until_healthy,
)

import kvstore
from kvstore.errors import ConfigurationError
from kvstore.http.config import TOKEN_ENV, HttpConfig, load_tokens
from kvstore.testing import FaultyBlobStore, run_in_processes
from kvstore.testing.servers._process import free_port

BACKENDS = ["memory", "local", "seaweedfs"]


@pytest.fixture
def start(make_target: Callable[[str], Target]) -> Iterator[Start]:
    """``start(backend, config=None, open_store=None, target=None)``: a service on a
    fresh target of ``backend`` (or on ``target``; its store ``open_store(target)``);
    stopped after the test."""
    with Services(make_target) as services:
        yield services.start


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, start: Start) -> Service:
    return start(request.param)


@pytest.fixture
def http(service: Service) -> Iterator[httpx.Client]:
    with service.http() as c:
        yield c


KEYS = ["plain", "a/b/c", "with space", "ünïcødé/日本語", "100%", "q?x#y&z=1+2", "a/../b", "/lead"]
VALUES = [b"\x00\xff\xfe\x80 binary", b"", "ü".encode(), bytes(range(256))]


# -- values ----------------------------------------------------------------------------


def test_values_round_trip_any_bytes_under_any_key(service: Service, http: httpx.Client) -> None:
    for i, key in enumerate(KEYS):
        value = VALUES[i % len(VALUES)]
        put = http.put(value_url(key), content=value)
        assert put.status_code == 204, (key, put.text)
        got = http.get(value_url(key))
        assert got.status_code == 200 and got.content == value, key
        assert got.headers["content-type"] == "application/octet-stream"
        assert (
            got.headers["etag"] == put.headers["etag"] == http.get(value_url(key)).headers["etag"]
        )
        head = http.head(value_url(key))
        assert head.status_code == 200 and head.content == b""
        assert head.headers["etag"] == got.headers["etag"]
        assert int(head.headers["content-length"]) == len(value)
        assert service.store.get(key) == value, key  # the library reads what HTTP wrote
    assert sorted(service.store.keys()) == sorted(KEYS)
    service.store.set("plain", b"changed by the library")
    changed = http.get(value_url("plain"))
    assert changed.content == b"changed by the library"
    assert changed.headers["etag"] != http.put(value_url("x"), content=VALUES[0]).headers["etag"]
    for key in KEYS:
        assert http.delete(value_url(key)).status_code == 204
        error_of(http.get(value_url(key)), 404)
        assert http.head(value_url(key)).status_code == 404
        assert error_of(http.delete(value_url(key)), 404)["type"] == "NotFoundError"
        assert service.store.get(key) is None


def test_etag_changes_with_the_value_and_conditional_get(http: httpx.Client) -> None:
    first = http.put(value_url("k"), content=b"one").headers["etag"]
    second = http.put(value_url("k"), content=b"two").headers["etag"]
    assert first != second and http.get(value_url("k")).headers["etag"] == second
    assert http.put(value_url("k"), content=b"one").headers["etag"] == first  # a digest
    for header in (first, f'"nope", {first}', f"W/{first}", "*"):
        not_modified = http.get(value_url("k"), headers={"If-None-Match": header})
        assert not_modified.status_code == 304 and not_modified.content == b"", header
        assert not_modified.headers["etag"] == first
    fresh = http.get(value_url("k"), headers={"If-None-Match": second})
    assert fresh.status_code == 200 and fresh.content == b"one"
    error_of(http.get(value_url("missing"), headers={"If-None-Match": "*"}), 404)


def test_put_if_none_match_creates_only_once(service: Service, http: httpx.Client) -> None:
    create = {"If-None-Match": "*"}
    assert http.put(value_url("once"), content=b"first", headers=create).status_code == 204
    refused = error_of(http.put(value_url("once"), content=b"second", headers=create), 412)
    assert refused["type"] == "PreconditionFailed"
    assert service.store.get("once") == b"first"
    error_of(http.put(value_url("once"), content=b"x", headers={"If-None-Match": '"a"'}), 400)


def test_put_if_match_is_a_compare_and_swap(service: Service, http: httpx.Client) -> None:
    tag = http.put(value_url("cas"), content=b"v1").headers["etag"]
    swapped = http.put(value_url("cas"), content=b"v2", headers={"If-Match": tag})
    assert swapped.status_code == 204
    error_of(http.put(value_url("cas"), content=b"v3", headers={"If-Match": tag}), 412)  # stale
    assert service.store.get("cas") == b"v2"
    listed = f'"other", {swapped.headers["etag"]}'
    assert http.put(value_url("cas"), content=b"v3", headers={"If-Match": listed}).is_success
    assert http.put(value_url("cas"), content=b"v4", headers={"If-Match": "*"}).is_success
    assert service.store.get("cas") == b"v4"
    error_of(http.put(value_url("absent"), content=b"x", headers={"If-Match": "*"}), 412)
    error_of(http.put(value_url("absent"), content=b"x", headers={"If-Match": tag}), 412)
    assert service.store.get("absent") is None
    both = {"If-Match": "*", "If-None-Match": "*"}
    error_of(http.put(value_url("cas"), content=b"x", headers=both), 400)
    assert service.store.get("cas") == b"v4"


def test_ttls(service: Service, http: httpx.Client) -> None:
    ttl = "/v1/ttl/"
    assert http.put(value_url("t", ttl_ms=60_000), content=b"a").status_code == 204
    assert 0 < http.get(ttl + "t").json()["ttl_ms"] <= 60_000
    assert http.put(value_url("t", keepttl="true"), content=b"b").status_code == 204
    assert 0 < http.get(ttl + "t").json()["ttl_ms"] <= 60_000
    assert service.store.get("t") == b"b" and 0 < service.store.pttl("t") <= 60_000
    http.put(value_url("t"), content=b"c")  # a plain SET drops the TTL
    assert http.get(ttl + "t").json() == {"ttl_ms": None}
    assert http.put(ttl + "t", json={"ttl_ms": 30_000}).json() == {"ttl_ms": 30_000}
    assert 0 < http.get(ttl + "t").json()["ttl_ms"] <= 30_000
    assert http.put(ttl + "t", json={"ttl_ms": None}).json() == {"ttl_ms": None}
    assert service.store.pttl("t") == -1
    error_of(http.get(ttl + "missing"), 404)
    error_of(http.put(ttl + "missing", json={"ttl_ms": 1000}), 404)
    error_of(http.put(ttl + "missing", json={"ttl_ms": None}), 404)
    error_of(http.put(ttl + "t", json={"ttl_ms": 0}), 400)
    error_of(http.put(ttl + "t", json={"ttl_ms": "soon"}), 400)
    error_of(http.put(value_url("t", ttl_ms=1000, keepttl="true"), content=b"x"), 400)
    for bad in (0, -5, "x", 1.5):
        error_of(http.put(value_url("t", ttl_ms=bad), content=b"x"), 400)
    assert service.store.get("t") == b"c" and service.store.pttl("t") == -1
    http.put(value_url("short", ttl_ms=1), content=b"gone soon")
    deadline = time.monotonic() + 30  # a bound for liveness: it expires
    while http.get(value_url("short")).status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    error_of(http.get(value_url("short")), 404)
    assert service.store.get("short") is None


def test_keys_come_in_pages_each_key_once_in_order(service: Service, http: httpx.Client) -> None:
    keys = [f"page/{i:04d}" for i in range(250)]
    service.store.mset({k: b"v" for k in keys} | {"other/x": b"v", "pag": b"v"})
    service.store.append("page/zz-log", b"a log, not a value")
    seen: list[str] = []
    pages: list[int] = []
    after: str | None = None
    while True:
        query = {"prefix": "page/", "limit": 100} | ({} if after is None else {"after": after})
        page = http.get("/v1/keys", params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += body["keys"]
        pages.append(len(body["keys"]))
        after = body["next"]
        if after is None:
            break
        assert after == body["keys"][-1]
    assert seen == keys and pages == [100, 100, 50]
    exact = http.get("/v1/keys", params={"prefix": "page/00", "limit": 100}).json()
    assert exact == {"keys": keys[:100], "next": None}
    everything = http.get("/v1/keys", params={"limit": 1000}).json()  # in listing order
    assert sorted(everything["keys"]) == sorted([*keys, "other/x", "pag"])
    assert everything["next"] is None
    assert http.get("/v1/keys", params={"prefix": "nothing/"}).json() == {"keys": [], "next": None}
    tail = http.get("/v1/keys", params={"prefix": "page/", "after": keys[-3]}).json()
    assert tail == {"keys": keys[-2:], "next": None}
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "ten"}):
        error_of(http.get("/v1/keys", params=bad), 400)


def test_a_hash_written_by_the_library_is_the_wrong_type(
    service: Service, http: httpx.Client
) -> None:
    kvstore.Redis(store=service.store).hset("h", mapping={"field": "1"})
    assert error_of(http.get(value_url("h")), 409)["type"] == "WrongTypeError"
    assert http.head(value_url("h")).status_code == 409
    error_of(http.put(value_url("h"), content=b"x", headers={"If-Match": '"a-tag"'}), 409)
    error_of(http.put(value_url("h"), content=b"x", headers={"If-None-Match": "*"}), 412)
    assert kvstore.Redis(store=service.store).hgetall("h") == {b"field": b"1"}
    # a plain PUT (Redis SET) replaces whatever the key held, as in Redis
    assert http.put(value_url("h"), content=b"now a value").status_code == 204
    assert service.store.get("h") == b"now a value"
    # values and logs are separate key spaces in the native API: a log is no value
    service.store.append("chat", b"hi")
    error_of(http.get(value_url("chat")), 404)


# -- logs ------------------------------------------------------------------------------


def test_logs_append_and_read_ranges(service: Service, http: httpx.Client) -> None:
    key = "chat/one two"
    raw = http.post(log_url(key), content=b"\x00\xff raw")
    assert raw.status_code == 201 and raw.json() == {"first": 0, "next": 1}
    text = http.post(log_url(key), json={"records": ["hé", "llo"]})
    assert text.status_code == 201 and text.json() == {"first": 1, "next": 3}
    batch = {"records": b64(b"\x01", b"fin"), "encoding": "base64"}
    assert http.post(log_url(key), json=batch).json() == {"first": 3, "next": 5}
    records = [b"\x00\xff raw", "hé".encode(), b"llo", b"\x01", b"fin"]
    assert service.store.range(key) == records  # the library reads what HTTP appended
    conflict = error_of(http.post(log_url(key, expect_next=3), content=b"late"), 409)
    assert conflict["type"] == "ConflictError"
    assert service.store.length(key) == 5
    assert http.post(log_url(key, expect_next=5), content=b"ok").json() == {"first": 5, "next": 6}
    records.append(b"ok")

    def read(**query: Any) -> dict[str, Any]:
        response = http.get(log_url(key, **query))
        assert response.status_code == 200, (query, response.text)
        return response.json()

    assert read() == {"first": 0, "records": b64(*records), "encoding": "base64"}
    assert read(start=-2) == {"first": 4, "records": b64(b"fin", b"ok"), "encoding": "base64"}
    assert read(start=1, end=2, encoding="utf-8")["records"] == ["hé", "llo"]
    assert read(start=-3, end=-2)["records"] == b64(b"\x01", b"fin")
    assert read(start=4, end=100)["first"] == 4 and read(start=10)["records"] == []
    assert read(from_seq=2, count=2) == {
        "first": 2,
        "records": b64(b"llo", b"\x01"),
        "encoding": "base64",
    }
    assert read(from_seq=4)["records"] == b64(b"fin", b"ok")
    assert read(from_seq=99) == {"first": 99, "records": [], "encoding": "base64"}
    assert read(from_seq=1, count=0)["records"] == []
    not_text = error_of(http.get(log_url(key, encoding="utf-8")), 400)
    assert "base64" in not_text["message"]
    assert http.get(f"/v1/length/{key}").json() == {"length": 6, "next_seq": 6}
    assert http.get("/v1/length/never").json() == {"length": 0, "next_seq": 0}
    assert read(start=0) == read() and http.get(log_url("never")).json()["records"] == []


def test_logs_are_listed_and_bad_appends_and_reads_are_refused(
    service: Service, http: httpx.Client
) -> None:
    for key in ("logs/b", "logs/a", "elsewhere"):
        http.post(log_url(key), content=b"r")
    http.put(value_url("logs/value"), content=b"a value, not a log")
    assert http.get("/v1/logs", params={"prefix": "logs/"}).json() == {"keys": ["logs/a", "logs/b"]}
    assert http.get("/v1/logs").json() == {"keys": ["elsewhere", "logs/a", "logs/b"]}
    bad_batches: list[Any] = [
        b"not json",
        b"[1, 2]",
        json.dumps({"records": []}).encode(),
        json.dumps({"records": "abc"}).encode(),
        json.dumps({"records": [1]}).encode(),
        json.dumps({"records": ["a"], "encoding": "latin-1"}).encode(),
        json.dumps({"records": ["!!not base64"], "encoding": "base64"}).encode(),
    ]
    for batch in bad_batches:
        sent = http.post(
            log_url("logs/a"), content=batch, headers={"content-type": "application/json"}
        )
        error_of(sent, 400)
    for query in (
        {"encoding": "latin-1"},
        {"from_seq": 0, "start": 0},
        {"count": 3},
        {"from_seq": -1},
        {"count": -1, "from_seq": 0},
        {"start": "x"},
    ):
        error_of(http.get(log_url("logs/a", **query)), 400)
    error_of(http.post(log_url("logs/a", expect_next=-1), content=b"x"), 400)
    assert service.store.range("logs/a") == [b"r"]


# -- operations ------------------------------------------------------------------------


def test_stats_and_metrics_count_requests(service: Service, http: httpx.Client) -> None:
    before = http.get("/v1/stats").json()
    assert set(before) == {"store", "service"}
    metrics_before = parse_metrics(http.get("/metrics").text)
    http.put(value_url("counted"), content=b"1")
    http.get(value_url("counted"))
    after = http.get("/v1/stats", params={"health": "true"}).json()
    assert after["store"]["requests.put"] > before["store"].get("requests.put", 0)
    assert after["store"]["requests"] > before["store"]["requests"]
    assert after["health"]["ok"] is True
    routes = {
        (r["method"], r["route"], r["status"]): r["count"] for r in after["service"]["requests"]
    }
    assert routes[("PUT", "/v1/values/{key:text}", 204)] >= 1
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    metrics = parse_metrics(response.text)
    put = 'kvstore_http_requests_total{method="PUT",route="/v1/values/{key:text}",status="204"}'
    assert metrics[put] == metrics_before.get(put, 0) + 1
    store_puts = 'kvstore_store_requests_total{kind="put"}'
    assert metrics[store_puts] > metrics_before.get(store_puts, 0)
    count = 'kvstore_http_request_seconds_count{method="GET",route="/v1/values/{key:text}"}'
    assert metrics[count] >= 1
    assert any(name.startswith("kvstore_store_bytes_written") for name in metrics)


@pytest.mark.parametrize("fault", ["hangs", "fails"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_health_says_503_within_bounds_when_the_store_hangs_or_fails(
    start: Start, backend: str, fault: str
) -> None:
    faulty: list[FaultyBlobStore] = []

    def open_faulty(target: Target) -> kvstore.AsyncKVStore:
        faulty.append(FaultyBlobStore(target.blob_store()))
        return kvstore.open_async(faulty[0], cache=None)

    service = start(backend, open_store=open_faulty)
    with service.http() as http:
        assert http.get("/health").status_code == 200
        if fault == "hangs":
            faulty[0].slow("get", seconds=3600)
        else:
            faulty[0].outage()
        sick = http.get("/health", timeout=30)  # the bound: /health answers in ~2 s
        assert sick.status_code == 503
        body = sick.json()
        assert body["ok"] is False and body["store"]["ok"] is False
        assert "error" not in body["store"]  # no error text without a token
        if fault == "fails":  # a data request: the store's error as JSON, not a 500
            assert error_of(http.get(value_url("k")), 503)["type"] == "BackendError"
        faulty[0].restore()
        assert http.get("/health").status_code == 200


# -- tokens and tenancy ----------------------------------------------------------------

ADMIN, READER, TENANT_A = (
    "admin-secret-0123456789",
    "reader-secret-0123456789",
    "a-secret-0123456789",
)


@pytest.fixture(params=BACKENDS)
def guarded(request: pytest.FixtureRequest, start: Start, tmp_path: Path) -> Service:
    """A service with tokens: the environment's (read-write, whole store), a reader of
    the whole store, and a read-write token confined to namespace ``a``."""
    path = tokens_file(
        tmp_path,
        {
            "reader": {"token": READER, "access": "read"},
            "tenant-a": {"token": TENANT_A, "namespace": "a", "access": "read-write"},
        },
    )
    return start(request.param, HttpConfig(tokens=load_tokens(path, ADMIN)))


def test_tokens_are_required_and_checked(guarded: Service) -> None:
    with guarded.http() as anonymous:
        for method, path in (
            ("GET", value_url("k")),
            ("GET", "/v1/keys"),
            ("GET", "/metrics"),
            ("GET", "/v1/stats"),
            ("PUT", value_url("k")),
        ):
            denied = anonymous.request(method, path)
            assert error_of(denied, 401)["type"] == "Unauthorized"
            assert denied.headers["www-authenticate"].startswith("Bearer")
        assert anonymous.get("/health").status_code == 200  # no token needed
        for header in ("Bearer wrong-token-0123456789", f"Basic {ADMIN}", "Bearer", ADMIN):
            wrong = anonymous.get(value_url("k"), headers={"Authorization": header})
            assert error_of(wrong, 401) and "www-authenticate" in wrong.headers
    assert guarded.store.keys() == []
    with guarded.http(ADMIN) as admin:
        assert admin.put(value_url("k"), content=b"by admin").status_code == 204
        assert admin.get("/v1/stats").status_code == 200
    assert guarded.store.get("k") == b"by admin"


def test_a_read_token_cannot_write(guarded: Service) -> None:
    guarded.store.set("k", b"before")
    guarded.store.append("log", b"r")
    with guarded.http(READER) as reader:
        assert reader.get(value_url("k")).content == b"before"
        assert reader.get(log_url("log")).json()["records"] == b64(b"r")
        for method, path, body in (
            ("PUT", value_url("k"), {"content": b"after"}),
            ("PUT", value_url("new"), {"content": b"x"}),
            ("DELETE", value_url("k"), {}),
            ("POST", log_url("log"), {"content": b"more"}),
            ("PUT", "/v1/ttl/k", {"json": {"ttl_ms": 1000}}),
        ):
            assert error_of(reader.request(method, path, **body), 403)["type"] == "Forbidden"
    assert guarded.store.get("k") == b"before" and guarded.store.get("new") is None
    assert guarded.store.range("log") == [b"r"] and guarded.store.pttl("k") == -1


def test_a_namespaced_token_sees_only_its_namespace(guarded: Service) -> None:
    lib = guarded.store
    lib.set("root-key", b"root")
    lib.namespace("b").set("b-key", b"b")
    lib.namespace("b").append("b-log", b"b")
    with guarded.http(TENANT_A) as tenant:
        assert tenant.put(value_url("mine"), content=b"a's").status_code == 204
        assert tenant.post(log_url("my-log"), content=b"r").status_code == 201
        assert lib.namespace("a").get("mine") == b"a's" and lib.get("mine") is None
        assert lib.namespace("a").range("my-log") == [b"r"] and lib.range("my-log") == []
        for key in ("root-key", "b-key", "b/b-key", "../b-key"):
            error_of(tenant.get(value_url(key)), 404)
        error_of(tenant.get(value_url("b-key", ns="b")), 404)  # that is a/b, not b
        error_of(tenant.delete(value_url("root-key")), 404)
        assert tenant.get("/v1/keys").json() == {"keys": ["mine"], "next": None}
        assert tenant.get("/v1/logs").json() == {"keys": ["my-log"]}
        assert tenant.get(log_url("b-log")).json()["records"] == []
        nested = tenant.put(value_url("deep", ns="x/y"), content=b"nested")
        assert nested.status_code == 204
        assert lib.namespace("a").namespace("x").namespace("y").get("deep") == b"nested"
        assert tenant.get(value_url("deep", ns="x/y")).content == b"nested"
        error_of(tenant.get(value_url("deep")), 404)
        for bad in ("", "x//y", "/x", "x/"):
            error_of(tenant.get(value_url("deep", ns=bad)), 400)
    assert lib.get("root-key") == b"root" and lib.namespace("b").get("b-key") == b"b"
    with guarded.http(ADMIN) as admin:  # the whole store: the root, and ?ns= for the rest
        assert admin.get(value_url("root-key")).content == b"root"
        assert admin.get(value_url("mine", ns="a")).content == b"a's"


def test_exposure_without_tokens_is_refused() -> None:
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.com"):
        with pytest.raises(ConfigurationError, match="without tokens"):
            HttpConfig(host=host).check()
        with (
            pytest.raises(ConfigurationError, match="without tokens"),
            serving(lambda: kvstore.open_async("memory://never"), HttpConfig(host=host)),
        ):
            pytest.fail("the service started")
    HttpConfig(host="0.0.0.0", tokens=load_tokens(None, ADMIN)).check()
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        HttpConfig(host=host).check()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"short": {"token": "too-short"}}, "'short'.*at least 16"),
        ({"odd": {"token": ADMIN, "access": "admin"}}, "'odd'.*access must be one of"),
        ({"ns": {"token": ADMIN, "namespace": ""}}, "'ns'.*namespace"),
        ({"extra": {"token": ADMIN, "scope": "all"}}, "'extra'.*unknown fields"),
        ({"bare": "just-a-secret-0123456789"}, "'bare'"),
        ({"one": {"token": ADMIN}, "two": {"token": ADMIN}}, "'one'.*'two'.*same secret"),
        ({"env-too": {"token": READER}}, f"{TOKEN_ENV}.*'env-too'.*same secret"),
        (["a", "list"], "JSON object"),
    ],
)
def test_bad_tokens_files_are_refused_naming_the_entry(
    tmp_path: Path, entries: Any, message: str
) -> None:
    path = tokens_file(tmp_path, entries)
    with pytest.raises(ConfigurationError, match=message) as raised:
        load_tokens(path, READER)
    assert ADMIN not in str(raised.value) and READER not in str(raised.value)  # no secrets
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_tokens(str(tmp_path / "missing.json"), None)


# -- bad input -------------------------------------------------------------------------


def test_bad_keys_and_parameters_are_json_400s(service: Service, http: httpx.Client) -> None:
    long_key = "k" * 1025
    for response in (
        http.get(value_url(long_key)),
        http.put(value_url(long_key), content=b"x"),
        http.delete(value_url(long_key)),
        http.get(f"/v1/ttl/{long_key}"),
        http.post(log_url(long_key), content=b"x"),
        http.get(log_url(long_key)),
        http.get(f"/v1/length/{long_key}"),
    ):
        assert error_of(response, 400)["type"] == "InvalidKeyError", response.request.url
    for response in (
        http.put(value_url("k", keepttl="perhaps"), content=b"x"),
        http.get("/v1/stats", params={"health": "perhaps"}),
        http.put("/v1/ttl/k", content=b"not json", headers={"content-type": "application/json"}),
        http.put("/v1/ttl/k", json=["not", "an", "object"]),
    ):
        error_of(response, 400)
    for escaped in ("%FF", "a%FE", "%C3"):  # not UTF-8: refused, not read as U+FFFD
        key_error = error_of(http.put(f"/v1/values/{escaped}", content=b"x"), 400)
        assert key_error["type"] == "InvalidKeyError"
        error_of(http.post(f"/v1/logs/{escaped}", content=b"x"), 400)
    assert service.store.keys() == [] and service.store.log_keys() == []
    assert http.put(value_url("\ufffd"), content=b"a real U+FFFD").status_code == 204
    assert service.store.keys() == ["\ufffd"]
    error_of(http.get("/v1/no-such-resource"), 404)
    error_of(http.post(value_url("k")), 405)
    answered = http.get("/v1/stats").json()["service"]["requests"]
    assert not [r for r in answered if r["status"] >= 500], answered  # never a 500


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bodies_over_the_limit_are_413_and_nothing_is_written(
    start: Start, backend: str, chunked: bool
) -> None:
    service = start(backend, HttpConfig(max_body=1000))

    def body(size: int) -> Any:
        data = b"x" * size
        if not chunked:
            return data
        return iter([data[i : i + 300] for i in range(0, size, 300)])  # Transfer-Encoding

    with service.http() as http:
        assert http.put(value_url("fits"), content=body(1000)).status_code == 204
        assert http.post(log_url("log"), content=body(1000)).status_code == 201
        over = http.put(value_url("big"), content=body(1001))
        assert error_of(over, 413)["type"] == "PayloadTooLarge"
        error_of(http.post(log_url("log"), content=body(1001)), 413)
        batch = json.dumps({"records": ["y" * 1000]}).encode()
        error_of(
            http.post(log_url("log"), content=batch, headers={"content-type": "application/json"}),
            413,
        )
        assert http.get(value_url("fits")).content == b"x" * 1000  # the connection still works
    assert service.store.get("big") is None and service.store.get("fits") == b"x" * 1000
    assert service.store.range("log") == [b"x" * 1000]


# -- the CLI ---------------------------------------------------------------------------


def test_the_cli_serves_until_sigterm_and_the_value_is_durable(tmp_path: Path) -> None:
    port = free_port()
    proc = cli("--url", str(tmp_path / "store"), "--port", str(port), env={TOKEN_ENV: ADMIN})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(base, proc)
        with client(base) as anonymous:
            error_of(anonymous.put(value_url("k"), content=b"x"), 401)
        with client(base, ADMIN) as http:
            assert http.put(value_url("cli/k"), content=b"\x00 from the CLI").status_code == 204
            assert http.post(log_url("cli/log"), content=b"r").status_code == 201
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)  # promptly: well within its 30 s grace
        assert proc.returncode == 0, err
        assert f"listening on 127.0.0.1:{port}" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    with kvstore.open(str(tmp_path / "store"), cache=None) as store:
        assert store.get("cli/k") == b"\x00 from the CLI"
        assert store.range("cli/log") == [b"r"]


def test_the_cli_refuses_to_expose_the_store_without_tokens(tmp_path: Path) -> None:
    proc = cli("--url", str(tmp_path), "--bind", "0.0.0.0", "--port", str(free_port()))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode not in (0, None)
    assert "refusing to listen on '0.0.0.0' without tokens" in err, err
    assert "Traceback" not in err
    bad = tokens_file(tmp_path, {"weak": {"token": "short"}})
    proc = cli("--url", str(tmp_path), "--tokens", bad, "--port", str(free_port()))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode not in (0, None) and "'weak'" in err and "Traceback" not in err
    assert not any(tmp_path.glob("kv*")), "nothing written by a refused start"


# -- processes racing over HTTP on a real S3 server ------------------------------------

RACERS = 4


def _two_services(start: Start) -> list[Service]:
    """Two services on one SeaweedFS location, each with its own store: what makes a
    race atomic is the object store's conditional write, not one server's event loop."""
    first = start("seaweedfs")
    return [first, start("seaweedfs", target=first.target)]


def test_racing_creates_have_exactly_one_winner(start: Start) -> None:
    services = _two_services(start)
    for round_no in range(3):
        key = f"race-{round_no}"
        calls = [(services[me % 2].url, key, me) for me in range(RACERS)]
        statuses = run_in_processes(create_once, calls, barrier=True, timeout=240)
        assert sorted(statuses) == [204] + [412] * (RACERS - 1), statuses
        assert services[0].store.get(key) == f"process-{statuses.index(204)}".encode()


def test_racing_compare_and_swap_increments_lose_none(start: Start) -> None:
    services = _two_services(start)
    services[0].store.set("counter", b"0")
    times = 10
    calls = [(services[me % 2].url, "counter", times) for me in range(RACERS)]
    run_in_processes(increment, calls, barrier=True, timeout=240)
    assert services[0].store.get("counter") == str(RACERS * times).encode()
    for service in services:
        with service.http() as http:
            assert http.get(value_url("counter")).content == str(RACERS * times).encode()
