"""Adversarial tests of the HTTP service (``kvstore serve --http``): tenancy (a token
confined to a namespace), read-only tokens, the console's cookie, bodies and limits,
error answers, metrics labels and the loopback rule. One service on memory://, tokens:
``admin`` (the whole store), ``tenant`` (read-write, namespace "a") and ``reader``
(read-only, namespace "a").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from http_server import client, serving, value_url

import kvstore
from kvstore.errors import ConfigurationError
from kvstore.http.config import HttpConfig, Token, load_tokens
from kvstore.http.metrics import METHODS

ADMIN = "admin-secret-0123456789"
TENANT = "tenant-secret-0123456789"
READER = "reader-secret-0123456789"
MAX_BODY = 64 << 10
SECRET = b"root-secret-value"
OTHER = b"namespace-b-secret"


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    config = HttpConfig(
        tokens=(
            Token("admin", ADMIN.encode(), None, True),
            Token("tenant", TENANT.encode(), "a", True),
            Token("reader", READER.encode(), "a", False),
        ),
        max_body=MAX_BODY,
    )
    with serving(lambda: kvstore.open_async("memory://http-security"), config) as url:
        with client(url, ADMIN) as admin:
            assert admin.put(value_url("k"), content=SECRET).status_code == 204
            assert admin.put(value_url("k", ns="b"), content=OTHER).status_code == 204
            assert admin.put(value_url("k", ns="a/b"), content=b"own-child").status_code == 204
        yield url


@pytest.fixture
def admin(base: str) -> Iterator[httpx.Client]:
    with client(base, ADMIN) as c:
        yield c


@pytest.fixture
def tenant(base: str) -> Iterator[httpx.Client]:
    with client(base, TENANT) as c:
        yield c


@pytest.fixture
def reader(base: str) -> Iterator[httpx.Client]:
    with client(base, READER) as c:
        yield c


@pytest.fixture
def anonymous(base: str) -> Iterator[httpx.Client]:
    with client(base) as c:
        yield c


# == findings: these fail while the bug is there ===========================================


def test_artifact_download_cannot_run_html_at_the_console_origin(
    base: str, tenant: httpx.Client
) -> None:
    """A tenant saves an HTML artifact; the admin, signed in to the console (cookie),
    follows its "download" link: the page must not be rendered as HTML on the service's
    origin (its script could read every namespace with the admin's cookie)."""
    page = b"<script>fetch('/v1/values/k').then(r => r.text()).then(alert)</script>"
    saved = tenant.put(
        "/v1/artifacts/evil.html", content=page, headers={"Content-Type": "text/html"}
    )
    assert saved.status_code == 201, saved.text
    with httpx.Client(base_url=base, cookies={"kvstore_token": ADMIN}, trust_env=False) as web:
        listed = web.get("/console/artifact", params={"ns": "a", "name": "evil.html"})
        assert listed.status_code == 200 and "download" in listed.text
        got = web.get("/v1/artifacts/evil.html", params={"ns": "a"})
    assert got.status_code == 200 and got.content == page
    disposition = got.headers.get("content-disposition", "")
    csp = got.headers.get("content-security-policy", "")
    assert disposition.startswith("attachment") or "sandbox" in csp, dict(got.headers)
    assert got.headers.get("x-content-type-options") == "nosniff", dict(got.headers)


def test_json_bodies_are_bounded_by_max_body(admin: httpx.Client) -> None:
    """Session, event and TTL bodies are read whole by FastAPI, with no limit: a body
    over max_body must be refused (413) as a value's or a record's is."""
    big = {"state": {"blob": "x" * (2 * MAX_BODY)}}
    response = admin.post("/v1/sessions/app/user", json=big)
    assert response.status_code == 413, (response.status_code, response.text[:200])


def test_json_body_is_not_read_before_the_token_is_checked(anonymous: httpx.Client) -> None:
    """Without a token, a JSON route must answer 401 - not read and parse the body first
    (a 400 for bad JSON shows it did: anyone can make the service buffer any body)."""
    for method, path in (
        ("POST", "/v1/sessions/app/user"),
        ("POST", "/v1/sessions/app/user/s/events"),
        ("PATCH", "/v1/sessions/app/user/s"),
        ("PUT", "/v1/ttl/k"),
    ):
        response = anonymous.request(method, path, content=b"{", headers=_json())
        assert response.status_code == 401, (method, path, response.status_code, response.text)


@pytest.mark.parametrize(
    "header", ["bytes=" + "1" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000]
)
def test_range_with_a_huge_number_is_not_a_500(tenant: httpx.Client, header: str) -> None:
    assert tenant.put("/v1/artifacts/r", content=b"0123456789").status_code == 201
    response = tenant.get("/v1/artifacts/r", headers={"Range": header})
    assert response.status_code in (200, 206, 416), (response.status_code, response.text)


def test_log_batch_of_deeply_nested_json_is_a_400(tenant: httpx.Client) -> None:
    body = b'{"records": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = tenant.post("/v1/logs/deep", content=body, headers=_json())
    assert response.status_code == 400, (response.status_code, response.text)


def test_artifact_metadata_deeply_nested_is_a_400(tenant: httpx.Client) -> None:
    metadata = '{"m": ' + "[" * 3000 + "]" * 3000 + "}"
    response = tenant.put(
        "/v1/artifacts/deep", content=b"x", headers={"X-KVStore-Metadata": metadata}
    )
    assert response.status_code == 400, (response.status_code, response.text)


def test_session_state_deeply_nested_is_refused_not_stored_then_a_500(
    tenant: httpx.Client,
) -> None:
    """The session is created, then its answer (``jsonable``) recurses too deep: a 500
    after the write, and every later read of it (and the app's list) is a 500."""
    body = '{"session_id": "deep", "state": {"s": ' + "[" * 950 + "]" * 950 + "}}"
    response = tenant.post("/v1/sessions/deep/user", content=body, headers=_json())
    status = response.status_code
    listed = tenant.get("/v1/sessions/deep").status_code
    assert status in (201, 400) and listed == 200, (status, listed)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/logs/x?start=" + "9" * 30,
        "/v1/logs/x?end=" + "9" * 30,
        "/v1/logs/x?from_seq=" + "9" * 30,
        "/v1/artifacts/r?version=" + "9" * 30,
        "/v1/artifact-info/r?version=" + "9" * 30,
        "/v1/sessions/app/user/s?recent=" + "9" * 30,
        "/v1/sessions/app/user/s?after_seq=" + "9" * 30,
        "/v1/sessions/app/user/s?after_time=nan",
        "/v1/sessions/app/user/s?after_time=inf",
        "/console/log?key=x&start=" + "9" * 30,
        "/v1/sessions/app?cursor=../../x",
        "/v1/keys?after=%00",
        "/v1/keys?limit=" + "9" * 30,
    ],
)
def test_huge_or_odd_numbers_in_queries_are_not_a_500(tenant: httpx.Client, path: str) -> None:
    tenant.post("/v1/logs/x", content=b"r")
    tenant.post("/v1/sessions/app/user", json={"session_id": "s"})
    response = tenant.get(path)
    assert response.status_code < 500, (path, response.status_code, response.text[:300])


def test_stats_do_not_show_a_namespace_token_the_store_url(reader: httpx.Client) -> None:
    """A token confined to a namespace learns nothing of the deployment or of the other
    tenants' traffic: /v1/stats (the store's URL, every namespace's counters) and /metrics
    are for whole-store tokens - 403, and nothing of them in the answer."""
    for path in ("/v1/stats?health=true", "/metrics"):
        response = reader.get(path)
        assert response.status_code == 403, (path, response.text[:300])
        assert "memory://http-security" not in response.text, response.text[:500]
        assert "requests" not in response.text, response.text[:500]


def test_env_token_is_as_long_as_a_file_token() -> None:
    """A file's token needs 16 characters; $KVSTORE_HTTP_TOKEN (which lets the service
    listen beyond loopback) must too."""
    with pytest.raises(ConfigurationError):
        load_tokens(None, "x")


def test_reading_a_log_whole_is_bounded(tenant: httpx.Client) -> None:
    """GET /v1/logs/{key} without from_seq/count returns every record (start/end default
    to the whole log): one request can make the service load a log of any length. The
    from_seq path caps count at 10_000; the start/end path must too."""
    for records in ([""] * 10_000, [""]):
        response = tenant.post("/v1/logs/long", json={"records": records})
        assert response.status_code == 201, response.text
    got = tenant.get("/v1/logs/long")
    assert got.status_code in (200, 400), got.text[:200]
    if got.status_code == 200:
        assert len(got.json()["records"]) <= 10_000


# == refused attacks: these pass, and should stay so ======================================


@pytest.mark.parametrize(
    "ns", ["..", "../b", "a/../b", "..%2Fb", "%2E%2E", "b", "\uff41", "a/..", ".", "./b"]
)
def test_a_namespace_token_stays_inside_its_namespace(tenant: httpx.Client, ns: str) -> None:
    response = tenant.get(f"{value_url('k')}?ns={ns}")
    assert response.content not in (SECRET, OTHER), ns
    if response.status_code == 200:  # its own child a/b
        assert response.content == b"own-child", ns
    else:
        assert response.status_code in (400, 404), (ns, response.status_code)


@pytest.mark.parametrize("ns", ["", "/", "a//b", "/a", "a/", "%2F", "a%2F%2Fb"])
def test_empty_namespace_parts_are_refused(tenant: httpx.Client, ns: str) -> None:
    response = tenant.get(f"{value_url('k')}?ns={ns}")
    assert response.status_code == 400, (ns, response.status_code, response.text)


def test_a_namespace_token_nests_its_ns(tenant: httpx.Client) -> None:
    """?ns=b of the tenant of "a" is a/b - its own child, never the root's b."""
    got = tenant.get(value_url("k", ns="b"))
    assert got.status_code == 200 and got.content == b"own-child"


@pytest.mark.parametrize(
    "key", ["../k", "..%2Fk", "%2E%2E%2Fk", "/k", "ns/b/k", "a/../k", "..%2F..%2Fk"]
)
def test_keys_cannot_reach_out_of_the_namespace(tenant: httpx.Client, key: str) -> None:
    response = tenant.get(f"/v1/values/{key}")
    assert response.content not in (SECRET, OTHER), key
    assert response.status_code in (400, 404), (key, response.status_code)


def test_console_pages_stay_inside_the_namespace(base: str) -> None:
    with httpx.Client(base_url=base, cookies={"kvstore_token": TENANT}, trust_env=False) as web:
        for ns in (None, "..", "a/.."):
            page = web.get("/console/value", params={"key": "k", "ns": ns})
            assert SECRET.decode() not in page.text and OTHER.decode() not in page.text
            keys = web.get("/console/keys", params={"ns": ns})
            assert keys.status_code in (200, 400)


WRITES = [
    ("PUT", "/v1/values/w"),
    ("DELETE", "/v1/values/k"),
    ("PUT", "/v1/ttl/k"),
    ("POST", "/v1/logs/w"),
    ("PUT", "/v1/artifacts/w"),
    ("DELETE", "/v1/artifacts/r"),
    ("POST", "/v1/sessions/app/user"),
    ("POST", "/v1/sessions/app/user/s/events"),
    ("PATCH", "/v1/sessions/app/user/s"),
    ("DELETE", "/v1/sessions/app/user/s"),
    ("DELETE", "/v1/sessions/app/user"),
]


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_a_read_only_token_cannot_write(reader: httpx.Client, method: str, path: str) -> None:
    body = json.dumps({"ttl_ms": 5, "event": {}}).encode()
    response = reader.request(method, path, content=body, headers=_json())
    assert response.status_code == 403, (method, path, response.status_code, response.text)


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_the_cookie_is_not_a_token_for_writes(base: str, method: str, path: str) -> None:
    body = json.dumps({"ttl_ms": 5, "event": {}}).encode()
    with httpx.Client(base_url=base, cookies={"kvstore_token": ADMIN}, trust_env=False) as web:
        response = web.request(method, path, content=body, headers=_json())
    assert response.status_code in (401, 405), (method, path, response.status_code)


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "PROPFIND", "HEAD", "PATCH", "POST"])
def test_other_methods_write_nothing(tenant: httpx.Client, method: str) -> None:
    """Only PUT writes a value: every other method, known or not, leaves it as it was."""
    assert tenant.put(value_url("m"), content=b"original").status_code == 204
    response = tenant.request(method, value_url("m"), content=b"overwritten")
    assert response.status_code in (200, 405), (method, response.status_code)
    assert tenant.get(value_url("m")).content == b"original"


def test_health_says_nothing_secret(anonymous: httpx.Client) -> None:
    response = anonymous.get("/health")
    assert response.status_code == 200
    assert set(response.json()) == {"ok", "store", "cache"}
    assert set(response.json()["store"]) == {"ok", "latency_ms"}
    assert "memory://" not in response.text


@pytest.mark.parametrize("path", ["/metrics", "/v1/stats", "/", "/console/keys", "/v1/keys"])
def test_no_token_no_data(anonymous: httpx.Client, path: str) -> None:
    response = anonymous.get(path)
    assert response.status_code == 401, (path, response.status_code)
    assert "memory://" not in response.text and "admin" not in response.text


def test_a_wrong_token_is_refused_and_not_named(anonymous: httpx.Client) -> None:
    for header in (f"Bearer {ADMIN[:-1]}", f"Bearer {ADMIN}x", f"Basic {ADMIN}", "Bearer"):
        response = anonymous.get("/v1/keys", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert "admin" not in response.text


def test_metrics_labels_stay_bounded(base: str, admin: httpx.Client) -> None:
    """Labels are route templates and known methods, whatever paths and methods come."""
    with client(base) as anon:
        for i in range(40):
            anon.request(f"X{i}METHOD", f"/nowhere/{i}")
            anon.get(f"/v1/values/random-{i}")
            anon.request(f"Z{i}", f"/v1/values/random-{i}")
    text = admin.get("/metrics").text
    routes = {
        line.split('route="')[1].split('"')[0] for line in text.splitlines() if 'route="' in line
    }
    methods = {
        line.split('method="')[1].split('"')[0] for line in text.splitlines() if 'method="' in line
    }
    assert not any("random-" in r or "nowhere" in r for r in routes), routes
    assert methods <= METHODS | {"OTHER"}, methods


def test_console_escapes_hostile_text(base: str, tenant: httpx.Client) -> None:
    evil = "<img src=x onerror=alert(1)>\"'&"
    assert tenant.put(value_url(evil), content=evil.encode()).status_code == 204
    tenant.put(
        f"/v1/artifacts/{quote(evil, safe='')}",
        content=b"x",
        headers={"X-KVStore-Metadata": json.dumps({evil: evil}), "Content-Type": evil},
    )
    tenant.post(
        "/v1/sessions/app/user", json={"session_id": evil, "title": evil, "state": {evil: 1}}
    )
    with httpx.Client(base_url=base, cookies={"kvstore_token": TENANT}, trust_env=False) as web:
        for path, params in (
            ("/console/keys", {"prefix": evil}),
            ("/console/value", {"key": evil}),
            ("/console/artifacts", {"prefix": evil}),
            ("/console/artifact", {"name": evil}),
            ("/console/sessions", {"app": "app", "user": evil}),
            ("/console/session", {"app": "app", "user": "user", "id": evil}),
            ("/console/value", {"key": "missing", "ns": evil}),
            ("/", {"ns": evil}),
        ):
            page = web.get(path, params=params)
            assert "<img" not in page.text, (path, page.text[:300])
            assert "script-src" not in page.headers["content-security-policy"]
            assert "default-src 'none'" in page.headers["content-security-policy"]


def test_a_value_body_streamed_without_length_is_cut_at_max_body(tenant: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(4 * MAX_BODY // 1024):
            yield b"x" * 1024

    response = tenant.put(value_url("big"), content=chunks())
    assert response.status_code == 413, response.status_code
    response = tenant.post("/v1/logs/big", content=chunks())
    assert response.status_code == 413, response.status_code


def test_login_form_is_bounded(anonymous: httpx.Client) -> None:
    response = anonymous.post("/console/login", content=b"token=" + b"x" * 100_000)
    assert response.status_code == 413


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "::ffff:127.0.0.1", "localhost.", "example.com", "127.1", ""]
)
def test_no_tokens_beyond_loopback(host: str) -> None:
    with pytest.raises(ConfigurationError):
        HttpConfig(host=host).check()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_no_tokens_on_loopback(host: str) -> None:
    HttpConfig(host=host).check()


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
    ],
)
def test_a_sign_in_or_out_posted_from_another_site_is_refused(
    anonymous: httpx.Client, headers: dict[str, str]
) -> None:
    """Login CSRF: a page elsewhere posting the console's login form (with its own token)
    or logout form gets 403 and no cookie is set or cleared."""
    signed = anonymous.post("/console/login", data={"token": ADMIN}, headers=headers)
    assert signed.status_code == 403, signed.text[:300]
    assert "set-cookie" not in signed.headers
    out = anonymous.post("/console/logout", headers=headers)
    assert out.status_code == 403 and "set-cookie" not in out.headers


def test_a_sign_in_from_the_services_own_page_is_accepted(
    anonymous: httpx.Client, base: str
) -> None:
    for headers in ({"Sec-Fetch-Site": "same-origin"}, {"Origin": base}, {}):
        signed = anonymous.post(
            "/console/login", data={"token": ADMIN}, headers=headers, follow_redirects=False
        )
        assert signed.status_code == 303, (headers, signed.text[:300])
        assert "kvstore_token=" in signed.headers.get("set-cookie", "")
