"""SeaweedFS (``backends.SeaweedFS``): a real S3 server started here on 127.0.0.1.

kvstore's nx/xx/expire rely on S3 conditional writes, so this file checks that SeaweedFS
enforces them - one at a time and under racing writers - before anything builds on it.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import kvstore  # noqa: E402
from backends import SeaweedFS  # noqa: E402
from kvstore.testing.servers import BackendError  # noqa: E402

BUCKET = "kvstore-seaweed"

pytest.importorskip("s3fs")
pytest.importorskip("boto3")


def _server() -> SeaweedFS:
    try:
        return SeaweedFS(buckets=(BUCKET,))
    except BackendError as exc:  # no `weed` binary
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def weed() -> Iterator[SeaweedFS]:
    with _server() as server:
        yield server


def _status(call: Callable[[], Any]) -> int:
    """HTTP status of a boto3 call: 200 on success, else the error's status."""
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200


def test_kvstore_on_seaweedfs_then_stop_leaves_nothing() -> None:
    server = _server().start()
    workdir, ports, pid = server.workdir, server.ports, server.pid
    try:
        url = server.url_for(prefix=f"t-{uuid.uuid4().hex[:8]}")
        with kvstore.open(url, storage_options=server.storage_options, cache=None) as store:
            assert store.set("k", b"v1") is True
            assert store.get("k") == b"v1"
            assert store.set("fresh", b"a", nx=True) is True
            assert store.set("fresh", b"b", nx=True) is None
            assert store.get("fresh") == b"a"
            assert store.expire("k", 1) is True
            assert 0 < store.pttl("k") <= 1000
            time.sleep(1.2)
            assert store.get("k") is None
    finally:
        server.stop()
    assert not server.running and pid is not None
    assert not workdir.exists()
    for role in ("master", "volume", "filer", "s3"):
        assert not Path(f"/tmp/seaweedfs-{role}-grpc-{ports[role + '.grpc']}.sock").exists()


def test_if_none_match_star(weed: SeaweedFS) -> None:
    s3 = weed.client()
    key = f"inm/{uuid.uuid4().hex}"
    assert _status(lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"1", IfNoneMatch="*")) == 200
    assert _status(lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"2", IfNoneMatch="*")) == 412
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"1"


def test_if_match(weed: SeaweedFS) -> None:
    s3 = weed.client()
    key = f"im/{uuid.uuid4().hex}"
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=b"1")["ETag"]
    wrong = '"00000000000000000000000000000000"'
    assert _status(lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"x", IfMatch=wrong)) == 412
    assert _status(lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"2", IfMatch=etag)) == 200
    assert _status(lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"x", IfMatch=etag)) == 412
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"2"
    # an absent key fails the precondition too (AWS answers 404 here; kvstore takes both)
    absent = f"{key}-absent"
    assert _status(lambda: s3.put_object(Bucket=BUCKET, Key=absent, Body=b"x", IfMatch=etag)) in (
        404,
        412,
    )
    assert _status(lambda: s3.delete_object(Bucket=BUCKET, Key=key, IfMatch=etag)) == 412
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"2"


def _race(s3: Any, key: str, writers: int, **condition: str) -> list[int]:
    """``writers`` threads PUT ``key`` at once under ``condition``; their statuses."""
    barrier = threading.Barrier(writers)
    statuses = [0] * writers

    def write(i: int) -> None:
        body = f"w{i}".encode()
        barrier.wait()
        statuses[i] = _status(lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=body, **condition))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return statuses


@pytest.mark.parametrize("header", ["IfNoneMatch", "IfMatch"])
def test_conditional_put_is_atomic_under_races(weed: SeaweedFS, header: str) -> None:
    """8 writers race on one key, 5 rounds: exactly one wins each round, and its body stays.

    SeaweedFS makes contended conditional PUTs wait (about 1 s steps), so rounds are few."""
    from botocore.config import Config

    s3 = weed.client(config=Config(max_pool_connections=16))
    writers = 8
    for _ in range(5):
        key = f"race/{uuid.uuid4().hex}"
        condition = "*"
        if header == "IfMatch":
            condition = s3.put_object(Bucket=BUCKET, Key=key, Body=b"base")["ETag"]
        statuses = _race(s3, key, writers, **{header: condition})
        assert sorted(statuses) == [200] + [412] * (writers - 1), statuses
        winner = statuses.index(200)
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == f"w{winner}".encode()


def _first_use(url: str, storage_options: dict[str, Any], redis_url: str, *, barrier: Any) -> str:
    """One process's first use of a store with a shared cache; the cache prefix it took."""
    with kvstore.open(
        url, storage_options=storage_options, cache=kvstore.RedisCache(redis_url)
    ) as store:
        barrier.wait()  # all make the store's id at once
        assert store.get("k") is None
        return store.aio._ctx.cache_prefix


def test_processes_that_first_use_a_store_at_once_agree_on_its_id(
    weed: SeaweedFS, redis_server: Any
) -> None:
    """The store id is made by conditional create: of several processes that find none at
    the same moment, one writes it and all read the same back - on a server that enforces
    If-None-Match, not only on moto's serialised requests."""
    from kvstore.testing import run_in_processes

    url = weed.url_for(prefix=f"id-{uuid.uuid4().hex[:8]}")
    options = weed.storage_options
    prefixes = run_in_processes(
        _first_use, [(url, options, redis_server.url)] * 6, barrier=True, timeout=180
    )
    assert len(set(prefixes)) == 1
    keys = [o["Key"] for o in weed.client().list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert [k for k in keys if k.startswith(url.split("/", 3)[3] + "/.kvstore/")] == [
        url.split("/", 3)[3] + "/.kvstore/id"
    ]


def _run_with(env: dict[str, str], script: str) -> list[str]:
    """What ``script`` prints, run by a fresh Python with ``env`` added (the exports of
    ``backends up``); it must succeed."""
    import os
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_backends_up_starts_seaweedfs_and_its_exports_reach_it() -> None:
    """``python -m backends up --only seaweedfs``: the printed exports are all a process
    needs (``kvstore.open()`` with no argument), conditional writes included."""
    from conftest import backends_up, exports

    _server()  # skips without a weed binary
    with backends_up("seaweedfs", "seaweedfs_store = kvstore.open(") as lines:
        env = exports(lines)
        assert env["KVSTORE_URL"].startswith("s3://kvstore-test/")
        script = (
            "import kvstore\n"
            "with kvstore.open(cache=None) as s:\n"
            "    assert s.set('k', 'v', nx=True) is True\n"
            "    assert s.set('k', 'w', nx=True) is None\n"
            "    print(s.get('k').decode(), s.stats()['probe.runs'])\n"
        )
        assert _run_with(env, script) == ["v", "1"]


def test_backends_up_serves_the_redis_protocol_on_seaweedfs() -> None:
    """``--only seaweedfs,redis,serve``: ``kvstore serve`` on the SeaweedFS bucket, cached
    by the redis-server started beside it; what a Redis client writes through it is in
    the bucket, read back by the library."""
    import re

    import redis
    from conftest import backends_up, exports

    _server()  # skips without a weed binary
    with backends_up("seaweedfs,redis,serve", "seaweedfs_store = kvstore.open(") as lines:
        env = exports(lines)
        (served,) = [line for line in lines if "kvstore serve" in line]
        found = re.search(r"redis://127\.0\.0\.1:(\d+)/0", served)
        assert found is not None and f"cache: {env['REDIS_URL']}" in served
        client = redis.Redis(port=int(found.group(1)), socket_timeout=30)
        assert client.set("through", "serve") is True
        assert client.incr("n", 2) == 2
        client.close()
        script = (
            "import os, kvstore\n"
            "with kvstore.open(os.environ['KVSTORE_URL'] + '-serve', cache=None) as s:\n"
            "    print(s.get('through').decode())\n"
        )
        assert _run_with(env, script) == ["serve"]
