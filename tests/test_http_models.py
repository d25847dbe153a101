"""Contract tests of the HTTP service's artifacts and sessions (``/v1/artifacts``,
``/v1/sessions``) over real HTTP: the service on a free loopback port (tests/http_server.py),
httpx as the client, on memory, local disk and a real S3 server (SeaweedFS). Every answer
is checked against the library on the same store; plus processes racing conditional
appends through two services on SeaweedFS.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import Target
from http_server import Service, Services, Start, append_expecting, error_of, tokens_file

import kvstore.artifacts.limits
from kvstore.http.config import HttpConfig, load_tokens
from kvstore.http.sessions import jsonable
from kvstore.testing import run_in_processes

BACKENDS = ["memory", "local", "seaweedfs"]
PART = 1 << 20
"""The artifacts' part size in these tests (the service runs in this process, in a thread,
so the patched limit is the one it uses): a few MiB span several parts."""
ADMIN, READER = "admin-secret-0123456789", "reader-secret-0123456789"


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kvstore.artifacts.limits, "PART_SIZE", PART)


@pytest.fixture
def start(make_target: Callable[[str], Target]) -> Iterator[Start]:
    with Services(make_target) as services:
        yield services.start


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, start: Start) -> Service:
    return start(request.param)


@pytest.fixture
def http(service: Service) -> Iterator[httpx.Client]:
    with service.http() as c:
        yield c


def art(name: str, resource: str = "artifacts", **query: Any) -> str:
    """The URL path of an artifact (or its ``artifact-versions``/``artifact-info``), the
    name %-encoded whole."""
    path = f"/v1/{resource}/{quote(name, safe='')}"
    return path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunks(data: bytes, size: int = 64 << 10) -> Iterator[bytes]:
    """``data`` as a generator: httpx sends it chunked, with no Content-Length."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def info_json(found: Any) -> dict[str, Any]:
    """A library ArtifactInfo as the service answers it."""
    return {
        "name": found.name,
        "version": found.version,
        "mime_type": found.mime_type,
        "size": found.size,
        "sha256": found.sha256,
        "created_at": found.created_at.isoformat(),
        "metadata": found.metadata,
    }


# -- artifacts -------------------------------------------------------------------------


def test_streamed_versions_round_trip_with_type_metadata_and_headers(
    service: Service, http: httpx.Client
) -> None:
    rng = random.Random(7)
    big = rng.randbytes(3 * PART + 12345)  # four parts, streamed up in 64 KiB chunks
    bodies = [big, b"second version", rng.randbytes(PART + 1)]
    types = ["application/x-model", "text/csv", None]
    meta = [{"run": 1, "tags": ["a", "b"], "nested": {"x": None}}, {}, None]
    name = "models/run 1/weights.bin"
    puts = []
    for version, (body, mime, metadata) in enumerate(zip(bodies, types, meta, strict=True)):
        headers = {} if mime is None else {"Content-Type": mime}
        if metadata is not None:
            headers["X-KVStore-Metadata"] = json.dumps(metadata)
        before = http.get("/v1/stats").json()["store"].get("requests.put", 0)
        put = http.put(art(name), content=chunks(body), headers=headers)
        assert put.status_code == 201 and put.json() == {"version": version}, put.text
        puts.append(http.get("/v1/stats").json()["store"].get("requests.put", 0) - before)
    assert puts == [4, 0, 2], puts  # one PUT per part (the manifest: a conditional create)
    assert service.store.artifacts.versions(name) == [0, 1, 2]
    for version, body in enumerate(bodies):  # what HTTP saved, as the library reads it
        loaded = service.store.artifacts.load(name, version)
        assert loaded is not None and loaded.data == body and loaded.sha256 == sha(body)
        assert loaded.mime_type == (types[version] or "application/octet-stream")
        assert loaded.metadata == (meta[version] or {})
    for query, body in (({}, bodies[2]), *(({"version": v}, b) for v, b in enumerate(bodies))):
        got = http.get(art(name, **query))
        assert got.status_code == 200 and got.content == body, query
        version = query.get("version", 2)
        assert got.headers["etag"] == f'"{sha(body)}"'
        assert got.headers["x-kvstore-version"] == str(version)
        assert got.headers["content-length"] == str(len(body))
        assert got.headers["accept-ranges"] == "bytes"
        assert got.headers["content-type"] == service.store.artifacts.load(name, version).mime_type
    # a library save is the next version over HTTP
    assert service.store.artifacts.save(name, b"by the library", mime_type="text/plain") == 3
    latest = http.get(art(name))
    assert latest.content == b"by the library" and latest.headers["x-kvstore-version"] == "3"
    assert latest.headers["content-type"] == "text/plain"  # as stored: no charset added
    missing = error_of(http.get(art(name, version=9)), 404)
    assert missing["type"] == "NotFoundError"
    error_of(http.get(art("never saved")), 404)
    error_of(http.get(art(name, version=-1)), 400)


def test_ranges_are_exact_and_bad_ones_are_416(service: Service, http: httpx.Client) -> None:
    data = random.Random(3).randbytes(2 * PART + 100)  # three parts
    assert http.put(art("ranged"), content=chunks(data)).json() == {"version": 0}
    size = len(data)
    edge = PART - 10  # the first part's last 10 bytes and the second's first 10
    cases = {
        "bytes=0-0": (0, 0),
        "bytes=10-19": (10, 19),
        "bytes=-5": (size - 5, size - 1),
        "bytes=5-": (5, size - 1),
        f"bytes={edge}-{edge + 19}": (edge, edge + 19),
        f"bytes={PART - 1}-{2 * PART}": (PART - 1, 2 * PART),  # across two boundaries
        f"bytes={size - 3}-{size + 1000}": (size - 3, size - 1),  # clamped to the end
        f"bytes=-{size + 10}": (0, size - 1),  # more than there is: the whole
    }
    for header, (first, last) in cases.items():
        got = http.get(art("ranged"), headers={"Range": header})
        assert got.status_code == 206, (header, got.text)
        assert got.content == data[first : last + 1], header
        assert got.headers["content-range"] == f"bytes {first}-{last}/{size}", header
        assert got.headers["content-length"] == str(last - first + 1), header
        assert got.headers["etag"] == f'"{sha(data)}"'
    for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=9-3", "bytes=-0"):
        refused = http.get(art("ranged"), headers={"Range": header})
        assert error_of(refused, 416)["type"] == "RangeNotSatisfiable", header
        assert refused.headers["content-range"] == f"bytes */{size}", header
    for header in ("bytes=0-1,3-4", "bytes=-", "items=0-1", "bytes=a-b"):  # one range only
        refused = http.get(art("ranged"), headers={"Range": header})
        assert error_of(refused, 416)["type"] == "RangeNotSatisfiable", header
        assert "content-range" not in refused.headers, header
    assert http.get(art("ranged")).content == data  # the connection still serves


def test_empty_artifact_and_info_without_data(service: Service, http: httpx.Client) -> None:
    assert http.put(art("empty"), content=b"").json() == {"version": 0}
    got = http.get(art("empty"))
    assert got.status_code == 200 and got.content == b""
    assert got.headers["content-length"] == "0" and got.headers["etag"] == f'"{sha(b"")}"'
    assert http.get(art("empty"), headers={"Range": "bytes=0-0"}).status_code == 200  # ignored
    loaded = service.store.artifacts.load("empty")
    assert loaded is not None and loaded.data == b"" and loaded.size == 0

    data = random.Random(5).randbytes(3 * PART)
    metadata = {"model": "m", "n": 3, "ok": True}
    for body in (data, data[::-1]):
        headers = {"Content-Type": "application/x-npy", "X-KVStore-Metadata": json.dumps(metadata)}
        assert http.put(art("big"), content=chunks(body), headers=headers).status_code == 201
    library = service.store.artifacts.versions_info("big")
    before = http.get("/v1/stats").json()["store"].get("bytes_read", 0)
    listed = http.get(art("big", "artifact-versions"))
    assert listed.status_code == 200 and listed.json() == [info_json(i) for i in library]
    assert [i["sha256"] for i in listed.json()] == [sha(data), sha(data[::-1])]
    assert [i["size"] for i in listed.json()] == [len(data)] * 2
    assert http.get(art("big", "artifact-info")).json() == info_json(library[1])
    assert http.get(art("big", "artifact-info", version=0)).json() == info_json(library[0])
    read = http.get("/v1/stats").json()["store"].get("bytes_read", 0) - before
    assert read < len(data) // 10, read  # headers of manifests, not the parts' data
    error_of(http.get(art("big", "artifact-info", version=7)), 404)
    error_of(http.get(art("nothing", "artifact-info")), 404)
    assert http.get(art("nothing", "artifact-versions")).json() == []


def test_bad_metadata_is_400_and_nothing_is_saved(service: Service, http: httpx.Client) -> None:
    for bad in ("{not json", "[1, 2]", '"text"', "3", "null", '{"x": NaN}'):
        refused = http.put(art("m"), content=b"data", headers={"X-KVStore-Metadata": bad})
        assert error_of(refused, 400)["type"] in ("ConfigurationError", "InvalidValueError"), bad
    assert service.store.artifacts.versions("m") == [] and service.store.artifacts.list() == []
    ok = http.put(art("m"), content=b"data", headers={"X-KVStore-Metadata": '{"a": [1]}'})
    assert ok.json() == {"version": 0}
    assert service.store.artifacts.load("m").metadata == {"a": [1]}


NAMES = ["dir/sub/file.txt", "with space.bin", "ünïcødé/日本語", "line\nbreak", "q?x#y&z=1+2%"]


def test_names_listing_and_deletes(service: Service, http: httpx.Client) -> None:
    for i, name in enumerate(NAMES):
        for version in range(3 if i == 0 else 1):
            body = f"{name}:{version}".encode()
            put = http.put(art(name), content=body)
            assert put.json() == {"version": version}, (name, put.text)
        assert http.get(art(name)).content == f"{name}:{0 if i else 2}".encode(), name
        assert service.store.artifacts.load(name).data == http.get(art(name)).content
    everything = http.get("/v1/artifacts").json()
    assert sorted(everything["names"]) == sorted(NAMES) == sorted(service.store.artifacts.list())
    under = http.get("/v1/artifacts", params={"prefix": "dir/"}).json()
    assert (
        under == {"names": ["dir/sub/file.txt"]} == {"names": service.store.artifacts.list("dir/")}
    )
    assert http.get("/v1/artifacts", params={"prefix": "none/"}).json() == {"names": []}

    name = NAMES[0]
    assert http.delete(art(name, version=1)).json() == {"deleted": 1}
    assert service.store.artifacts.versions(name) == [0, 2]
    error_of(http.get(art(name, version=1)), 404)
    error_of(http.delete(art(name, version=1)), 404)
    assert [i["version"] for i in http.get(art(name, "artifact-versions")).json()] == [0, 2]
    assert http.get(art(name)).content == f"{name}:2".encode()
    assert http.delete(art(name)).json() == {"deleted": 2}
    error_of(http.get(art(name)), 404)
    error_of(http.get(art(name, "artifact-info")), 404)
    error_of(http.delete(art(name)), 404)
    assert service.store.artifacts.versions(name) == []
    for other in NAMES[1:]:
        assert http.delete(art(other)).json() == {"deleted": 1}, other
    assert http.get("/v1/artifacts").json() == {"names": []} and not service.store.artifacts.list()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_read_token_cannot_save_or_delete(start: Start, backend: str, tmp_path: Path) -> None:
    path = tokens_file(tmp_path, {"reader": {"token": READER, "access": "read"}})
    guarded = start(backend, HttpConfig(tokens=load_tokens(path, ADMIN)))
    guarded.store.artifacts.save("kept", b"v0", metadata={"k": 1})
    guarded.store.sessions.create("app", "u", "s")
    with guarded.http(READER) as reader:
        assert reader.get(art("kept")).content == b"v0"
        for method, url, body in (
            ("PUT", art("kept"), {"content": b"v1"}),
            ("PUT", art("new"), {"content": b"x"}),
            ("DELETE", art("kept"), {}),
            ("DELETE", art("kept", version=0), {}),
            ("POST", "/v1/sessions/app/u", {"json": {"session_id": "t"}}),
            ("POST", "/v1/sessions/app/u/s/events", {"json": {"event": {"x": 1}}}),
            ("PATCH", "/v1/sessions/app/u/s", {"json": {"title": "t"}}),
            ("DELETE", "/v1/sessions/app/u/s", {}),
            ("DELETE", "/v1/sessions/app/u", {}),
        ):
            denied = reader.request(method, url, **body)
            assert error_of(denied, 403)["type"] == "Forbidden", (method, url)
        assert reader.get("/v1/sessions/app/u/s").json()["last_seq"] == -1
    with guarded.http() as anonymous:
        error_of(anonymous.put(art("kept"), content=b"v1"), 401)
    assert guarded.store.artifacts.versions("kept") == [0]
    assert guarded.store.artifacts.list() == ["kept"]
    found = guarded.store.sessions.get("app", "u", "s")
    assert found is not None and found.title is None and found.last_seq == -1
    assert [s.id for s in guarded.store.sessions.list("app").sessions] == ["s"]
    with guarded.http(ADMIN) as admin:
        assert admin.put(art("kept"), content=b"v1").json() == {"version": 1}


# -- sessions --------------------------------------------------------------------------

S = "/v1/sessions"
JSON = {"content-type": "application/json"}


def session_json(found: Any) -> dict[str, Any]:
    """A library Session as the service answers it (bytes as ``{"$base64": ...}``)."""
    return jsonable(dataclasses.asdict(found))  # type: ignore[no-any-return]


def test_create_state_scopes_and_duplicates(service: Service, http: httpx.Client) -> None:
    state = {"app:theme": "dark", "user:lang": "fr", "temp:scratch": 1, "count": 0}
    made = http.post(f"{S}/app/alice", json={"session_id": "s1", "state": state, "title": "T"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["id"] == "s1" and body["app"] == "app" and body["user"] == "alice"
    assert body["state"] == {"app:theme": "dark", "user:lang": "fr", "count": 0}  # no temp:
    assert body["events"] == [] and body["last_seq"] == -1 and body["title"] == "T"
    assert body == session_json(service.store.sessions.get("app", "alice", "s1"))
    assert service.store.sessions.scope_state("app") == {"theme": "dark"}
    assert service.store.sessions.scope_state("app", "alice") == {"lang": "fr"}

    again = http.post(f"{S}/app/alice", json={"session_id": "s1", "state": {"count": 9}})
    assert error_of(again, 409)["type"] == "SessionExistsError"
    assert service.store.sessions.get("app", "alice", "s1").state["count"] == 0

    anonymous = http.post(f"{S}/app/alice", json={})
    assert anonymous.status_code == 201
    other_id = anonymous.json()["id"]
    assert other_id and other_id != "s1"
    # the app's and the user's keys show in the user's other session; a session's own do not
    assert anonymous.json()["state"] == {"app:theme": "dark", "user:lang": "fr"}
    bob = http.post(f"{S}/app/bob", json={"session_id": "s1"}).json()  # same id, another user
    assert bob["state"] == {"app:theme": "dark"}
    got = http.get(f"{S}/app/alice/{other_id}").json()
    assert got == session_json(service.store.sessions.get("app", "alice", other_id))


def test_events_reads_and_stale_appends(service: Service, http: httpx.Client) -> None:
    http.post(f"{S}/app/u", json={"session_id": "chat"}).raise_for_status()
    url = f"{S}/app/u/chat"
    appended = []
    for i in range(4):
        delta = {"count": i, "temp:t": i, "user:seen": i}
        sent = http.post(f"{url}/events", json={"event": {"text": f"m{i}"}, "state_delta": delta})
        assert sent.status_code == 201, sent.text
        event = sent.json()
        assert event["seq"] == i and isinstance(event["timestamp"], float)
        assert event["data"] == {"text": f"m{i}"}
        assert event["state_delta"] == {"count": i, "user:seen": i}  # temp: not kept
        appended.append(event)
    library = service.store.sessions.get("app", "u", "chat")
    whole = http.get(url).json()
    assert whole == session_json(library) and whole["events"] == appended
    assert whole["state"] == {"count": 3, "user:seen": 3} and whole["last_seq"] == 3

    def events(**query: Any) -> list[dict[str, Any]]:
        response = http.get(url, params=query)
        assert response.status_code == 200, (query, response.text)
        return response.json()["events"]  # type: ignore[no-any-return]

    assert events(recent=2) == appended[2:] and events(recent=0) == []
    assert events(after_seq=1) == appended[2:] and events(after_seq=-1) == appended
    assert events(after_seq=3) == [] and events(after_seq=1, recent=1) == appended[3:]
    after_time = appended[1]["timestamp"]
    expected = [e for e in appended if e["timestamp"] > after_time]
    assert events(after_time=after_time) == expected
    lib_after = service.store.sessions.get("app", "u", "chat", after=after_time).events
    assert expected == [vars(e) for e in lib_after]
    both = error_of(http.get(url, params={"after_seq": 1, "after_time": after_time}), 400)
    assert both["type"] == "ConfigurationError"
    for bad in ({"recent": -1}, {"after_seq": -2}, {"recent": "x"}):
        error_of(http.get(url, params=bad), 400)

    stale = http.post(f"{url}/events", json={"event": {"late": True}, "expect_last": 2})
    assert error_of(stale, 409)["type"] == "StaleSessionError"
    assert service.store.sessions.get("app", "u", "chat").last_seq == 3  # nothing appended
    fresh = http.post(f"{url}/events", json={"event": {"ok": True}, "expect_last": 3})
    assert fresh.status_code == 201 and fresh.json()["seq"] == 4
    error_of(http.post(f"{url}/events", json={"event": {}, "expect_last": -2}), 400)
    error_of(http.post(f"{S}/app/u/nobody/events", json={"event": {"x": 1}}), 404)

    # bytes the library stored come back as {"$base64": ...}
    service.store.sessions.append_event("app", "u", "chat", {"blob": b"\x00\xff"}, {"raw": b"r"})
    last = http.get(url, params={"recent": 1}).json()
    assert last["events"][0]["data"] == {
        "blob": {"$base64": base64.b64encode(b"\x00\xff").decode()}
    }
    assert last["state"]["raw"] == {"$base64": "cg=="} and last["last_seq"] == 5


def test_update_and_clear(service: Service, http: httpx.Client) -> None:
    http.post(f"{S}/app/u", json={"session_id": "p", "state": {"a": 1}}).raise_for_status()
    url = f"{S}/app/u/p"
    change = {
        "title": "Trip",
        "status": "open",
        "metadata": {"k": [1, 2]},
        "state_delta": {"b": 2, "app:flag": True, "user:tz": "UTC", "temp:x": 0},
    }
    changed = http.patch(url, json=change)
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["title"] == "Trip" and body["status"] == "open" and body["events"] == []
    assert body["metadata"] == {"k": [1, 2]}
    assert body["state"] == {"a": 1, "b": 2, "app:flag": True, "user:tz": "UTC"}
    assert body == session_json(service.store.sessions.get("app", "u", "p"))
    assert service.store.sessions.get("app", "u", "p").last_seq == -1  # no event
    merged = http.patch(url, json={"metadata": {"m": "n"}, "status": "done"}).json()
    assert merged["metadata"] == {"k": [1, 2], "m": "n"} and merged["title"] == "Trip"
    cleared = http.patch(url, json={"clear": ["title"]}).json()
    assert cleared["title"] is None and cleared["status"] == "done"
    both = http.patch(url, json={"clear": ["status"], "status": "x"})
    assert error_of(both, 400)["type"] == "ConfigurationError"
    error_of(http.patch(url, json={"clear": ["metadata"]}), 400)
    found = service.store.sessions.get("app", "u", "p")
    assert found.title is None and found.status == "done"
    error_of(http.patch(f"{S}/app/u/missing", json={"title": "x"}), 404)


def test_list_pages_every_session_once_in_order(service: Service, http: httpx.Client) -> None:
    ids = [f"s{i:02d}" for i in range(25)]
    for sid in reversed(ids):
        http.post(f"{S}/app/pager", json={"session_id": sid}).raise_for_status()
    http.post(f"{S}/app/other", json={"session_id": "x"}).raise_for_status()
    http.post(f"{S}/elsewhere/pager", json={"session_id": "y"}).raise_for_status()
    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        query = {"user": "pager", "limit": 10} | ({} if cursor is None else {"cursor": cursor})
        page = http.get(f"{S}/app", params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        library = service.store.sessions.list("app", "pager", 10, cursor)
        assert body == {
            "sessions": [session_json(s) for s in library.sessions],
            "cursor": library.cursor,
        }
        assert all(s["user"] == "pager" and s["events"] == [] for s in body["sessions"])
        seen += [s["id"] for s in body["sessions"]]
        sizes.append(len(body["sessions"]))
        cursor = body["cursor"]
        if cursor is None:
            break
    assert seen == ids and sizes == [10, 10, 5]
    every = http.get(f"{S}/app", params={"limit": 1000}).json()
    assert [(s["user"], s["id"]) for s in every["sessions"]] == [("other", "x")] + [
        ("pager", i) for i in ids
    ]
    assert every["cursor"] is None
    for bad in ({"limit": 0}, {"limit": 1001}, {"user": ""}, {"cursor": "../../x"}):
        error_of(http.get(f"{S}/app", params=bad), 400)


def test_deletes_cascade_to_events_and_artifacts(service: Service, http: httpx.Client) -> None:
    lib = service.store
    for sid in ("a", "b", "c"):
        http.post(f"{S}/app/u", json={"session_id": sid}).raise_for_status()
        http.post(f"{S}/app/u/{sid}/events", json={"event": {"n": sid}}).raise_for_status()
    mine = lib.sessions.artifact_name("app", "u", "a", "f.txt")
    theirs = lib.sessions.artifact_name("app", "u", "b", "f.txt")
    assert http.put(art(mine), content=b"file of a").json() == {"version": 0}
    lib.artifacts.save(theirs, b"file of b")
    deleted = http.delete(f"{S}/app/u/a")
    assert deleted.status_code == 204 and deleted.content == b""
    error_of(http.get(f"{S}/app/u/a"), 404)
    error_of(http.delete(f"{S}/app/u/a"), 404)
    error_of(http.get(art(mine)), 404)
    assert lib.sessions.get("app", "u", "a") is None and lib.artifacts.versions(mine) == []
    assert lib.artifacts.load(theirs).data == b"file of b"  # another session's: kept
    # created again under the same id: a new session, none of the old events
    again = http.post(f"{S}/app/u", json={"session_id": "a"})
    assert again.status_code == 201 and again.json()["last_seq"] == -1
    assert http.delete(f"{S}/app/u").json() == {"deleted": 3}
    assert lib.sessions.list("app", "u").sessions == [] and lib.artifacts.list() == []
    assert http.get(f"{S}/app", params={"user": "u"}).json() == {"sessions": [], "cursor": None}
    assert http.delete(f"{S}/app/u").json() == {"deleted": 0}


def test_bad_ids_are_400(service: Service, http: httpx.Client) -> None:
    longest, too_long = "ü" * 128, "ü" * 128 + "x"  # 256 and 257 UTF-8 bytes
    assert http.post(f"{S}/app/u", json={"session_id": longest}).status_code == 201
    assert http.get(f"{S}/app/u/{quote(longest)}").json()["id"] == longest
    for response in (
        http.post(f"{S}/app/u", json={"session_id": ""}),
        http.post(f"{S}/app/u", json={"session_id": too_long}),
        http.post(f"{S}/{quote(too_long)}/u", json={}),
        http.post(f"{S}/app/{quote(too_long)}", json={}),
        http.get(f"{S}/app/u/{quote(too_long)}"),
        http.post(f"{S}/app/u/{quote(too_long)}/events", json={"event": {}}),
        http.delete(f"{S}/app/u/{quote(too_long)}"),
        http.get(f"{S}/{quote(too_long)}"),
        http.post(f"{S}/app/u", json={"session_id": 5}),
        http.post(f"{S}/app/u", content=b'{"state": {"x": Infinity}}', headers=JSON),
    ):
        error_of(response, 400)
    sessions = service.store.sessions.list("app").sessions
    assert [s.id for s in sessions] == [longest]


# -- processes racing conditional appends through two services on SeaweedFS -------------

RACERS = 4


def test_racing_appends_with_the_same_expect_last_have_one_winner(start: Start) -> None:
    first = start("seaweedfs")
    services = [first, start("seaweedfs", target=first.target)]
    lib = first.store
    lib.sessions.create("app", "u", "race")
    path = f"{S}/app/u/race"
    for expect_last in (-1, 0):
        calls = [(services[me % 2].url, path, expect_last, me) for me in range(RACERS)]
        statuses = run_in_processes(append_expecting, calls, barrier=True, timeout=240)
        assert sorted(statuses) == [201] + [409] * (RACERS - 1), statuses
        winner = statuses.index(201)
        found = lib.sessions.get("app", "u", "race")
        assert found.last_seq == expect_last + 1
        assert found.events[-1].data == {"by": winner} and found.events[-1].seq == expect_last + 1
    with services[1].http() as http:
        assert [e["seq"] for e in http.get(path).json()["events"]] == [0, 1]
