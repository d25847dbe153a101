"""The two S3 transports (issue 16): obstore by default, s3fs by choice or by option.

Both write the same objects: a store opened on one reads, swaps and deletes what the other
wrote. The options users pass reach both; a child forked after its parent used obstore
(whose runtime does not survive fork) still works, on s3fs. The whole S3 suite runs on the
default transport (the ``s3`` and ``seaweedfs`` backends); the contract kit and the
transport-specific tests run on ``s3fs`` too.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Target

import kvstore
from kvstore.blob import open_blob_store
from kvstore.blob.s3 import S3BlobStore
from kvstore.blob.s3_obstore import ObstoreS3BlobStore, just_before, unmapped
from kvstore.errors import ConfigurationError
from kvstore.stats import Stats


def _blob(options: dict[str, Any] | None) -> Any:
    return open_blob_store("s3://bucket/prefix", options, stats=Stats())


def test_obstore_is_the_default_and_s3fs_only_options_choose_s3fs() -> None:
    assert type(_blob({"endpoint_url": "http://127.0.0.1:1"})) is ObstoreS3BlobStore
    assert type(_blob(None)).transport == "obstore"
    chosen = _blob({"transport": "s3fs", "endpoint_url": "http://127.0.0.1:1"})
    assert type(chosen) is S3BlobStore and chosen.transport == "s3fs"
    # options only s3fs can honour: the store opens on s3fs, never ignoring them
    for only_s3fs in (
        {"config_kwargs": {"read_timeout": 3}},
        {"s3_additional_kwargs": {"ServerSideEncryption": "AES256"}},
        {"client_kwargs": {"verify": False}},
        {"version_aware": True},
    ):
        assert type(_blob(only_s3fs)) is S3BlobStore, only_s3fs
        assert unmapped(only_s3fs)


def test_a_transport_that_cannot_honour_the_options_is_refused_clearly() -> None:
    with pytest.raises(ConfigurationError, match=r"config_kwargs.*s3fs's alone"):
        _blob({"transport": "obstore", "config_kwargs": {"read_timeout": 3}})
    with pytest.raises(ConfigurationError, match=r"client_kwargs\['verify'\]"):
        _blob({"transport": "obstore", "client_kwargs": {"verify": False}})
    with pytest.raises(ConfigurationError, match="'auto', 'obstore' or 's3fs'"):
        _blob({"transport": "boto"})
    with pytest.raises(ConfigurationError, match="unknown storage_options"):
        _blob({"transport": "s3fs", "no_such_option": 1})


@pytest.mark.parametrize("transport", ["obstore", "s3fs"])
def test_the_options_users_pass_reach_both_transports(transport: str) -> None:
    options = {
        "transport": transport,
        "endpoint_url": "http://127.0.0.1:9/",
        "key": "AKID",
        "secret": "SECRET",
        "token": "TOKEN",
        "region": "eu-west-3",
    }
    blob = _blob(options)
    assert blob.transport == transport
    assert blob.identity.endswith("@http://127.0.0.1:9")
    if transport == "obstore":
        settings = blob._settings
        assert settings["config"] == {
            "endpoint": "http://127.0.0.1:9",
            "access_key_id": "AKID",
            "secret_access_key": "SECRET",
            "session_token": "TOKEN",
            "region": "eu-west-3",
        }
        assert settings["client_options"]["allow_http"] is True
        assert settings["credential_provider"] is None
        anon = _blob({"transport": transport, "anon": True})._settings
        assert anon["config"] == {"skip_signature": True} and not anon["credential_provider"]
    else:
        built = blob._filesystem_options()
        assert built["client_kwargs"] == {"region_name": "eu-west-3"}
        assert (built["key"], built["secret"], built["token"]) == ("AKID", "SECRET", "TOKEN")


def test_without_keys_obstore_takes_botocores_credential_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "FROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "ENVTOKEN")
    provider = _blob({"transport": "obstore"})._settings["credential_provider"]
    assert provider() == {
        "access_key_id": "FROMENV",
        "secret_access_key": "ENVSECRET",
        "token": "ENVTOKEN",
        "expires_at": None,
    }


def test_no_credentials_anywhere_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    provider = _blob({"transport": "obstore"})._settings["credential_provider"]
    with pytest.raises(ConfigurationError, match="no AWS credentials found"):
        provider()


def test_a_prefix_ending_inside_a_name_lists_from_just_before_it() -> None:
    assert just_before("kv/ab") < "kv/ab" and just_before("kv/ab") > "kv/aa~"
    assert just_before("kv/a\x00") == "kv/a"


@pytest.mark.parametrize("backend", ["s3", "seaweedfs"])
def test_the_transports_share_objects_and_tags(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    """What one transport writes, the other reads, swaps and deletes: same object names,
    same envelopes, same (quoted ETag) version tags."""
    target = make_target(backend)
    via_s3fs = {**target.storage_options, "transport": "s3fs"}
    with (
        kvstore.open(target.url, storage_options=target.storage_options, cache=None) as fast,
        kvstore.open(target.url, storage_options=via_s3fs, cache=None) as slow,
    ):
        assert fast.aio._ctx.blob.transport == "obstore"
        assert slow.aio._ctx.blob.transport == "s3fs"
        fast.set("k", "1")
        assert slow.get("k") == b"1"
        seen = slow.get_versioned("k")
        assert fast.get_versioned("k") == seen
        assert fast.set("k", "2", if_version=seen.version)  # tag from s3fs, swap on obstore
        assert slow.set("k", "3", if_version=seen.version) is None  # stale on s3fs
        assert slow.get("k") == b"2"
        fast.append("log", *range(5))
        assert slow.range("log", 0, -1) == [str(i).encode() for i in range(5)]
        slow.set("gone", 1, ex=60)
        assert fast.delete("gone", "k") == 2
        assert slow.mget(["k", "gone"]) == [None, None]
        assert sorted(fast.scan_iter()) == sorted(slow.scan_iter()) == ["log"]


def _child_uses_the_store(url: str, options: dict[str, Any], queue: Any) -> None:
    # forked after the parent sent obstore requests: obstore's runtime is gone here
    try:
        with kvstore.open(url, storage_options=options, cache=None) as store:
            store.set("child", os.getpid())
            blob = store.aio._ctx.blob
            got = (store.get("child"), store.get("parent"), blob._fast() is None)
            queue.put((int(got[0]), int(got[1]), got[2]))
    except BaseException as exc:  # reported to the parent, which fails the test
        queue.put(repr(exc))


def test_a_child_forked_after_obstore_was_used_works_on_s3fs(
    make_target: Callable[[str], Target],
) -> None:
    target = make_target("seaweedfs")
    with target.open() as store:
        store.set("parent", 1)  # obstore's runtime now runs in this process
        assert store.aio._ctx.blob._fast() is not None
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(
            target=_child_uses_the_store, args=(target.url, target.storage_options, queue)
        )
        child.start()
        child.join(60)
        if child.is_alive():
            child.kill()
            pytest.fail("the forked child hung")
        pid_seen, parent_seen, on_s3fs = queue.get(timeout=5)
        assert (pid_seen, parent_seen, on_s3fs) == (child.pid, 1, True)
        assert store.get("child") == str(child.pid).encode()  # landed; the parent reads it


def test_an_unreachable_endpoint_fails_within_the_bound_on_obstore() -> None:
    """Nothing listens: connection refused, retried ATTEMPTS times with backoff (< 10 s)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "k", "secret": "s"}
    with kvstore.open("s3://bucket", storage_options=options, cache=None) as store:
        assert store.aio._ctx.blob.transport == "obstore"
        start = time.monotonic()
        with pytest.raises(kvstore.BackendError, match="get s3://bucket"):
            store.get("k")
        assert time.monotonic() - start < 10


def test_one_obstore_store_serves_every_event_loop(make_target: Callable[[str], Target]) -> None:
    """obstore's connections live on its own runtime: a store first used from a loop in
    another thread, then from successive ``asyncio.run`` loops, works on each."""
    import asyncio
    import threading

    store = make_target("seaweedfs").open_async()
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(store.set("k", "v"), other).result(30)
        assert asyncio.run(store.get("k")) == b"v"
        assert asyncio.run(store.get("k")) == b"v"
        assert store._ctx.blob.transport == "obstore"
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(10)
        other.close()
        asyncio.run(store.close())


@pytest.mark.parametrize("backend", ["s3", "seaweedfs"])
def test_obstores_dated_listing_never_overstates_an_age(
    backend: str, make_target: Callable[[str], Target], monkeypatch: pytest.MonkeyPatch
) -> None:
    """obstore's dated listing dates objects by their LastModified and "now" by the newest
    of them (no answer's Date): no age above what s3fs's listing (the server's Date) says;
    a fresh listing sends no other request; an idle one (or an empty one) asks the server's
    clock with one HEAD, and then agrees with s3fs's."""
    import asyncio

    from kvstore.blob import s3_obstore

    target = make_target(backend)
    fast = target.blob_store()
    slow = open_blob_store(
        target.url, {**target.storage_options, "transport": "s3fs"}, stats=Stats()
    )
    assert fast.transport == "obstore" and slow.transport == "s3fs"

    async def main() -> None:
        empty = await fast.list_dated("dated/")
        assert empty.paths == () and fast.stats.snapshot().get("requests.head") == 1
        await fast.put("dated/old", b"1")
        await asyncio.sleep(1.2)  # LastModified has a resolution of one second
        await fast.put("dated/new", b"2")
        monkeypatch.setattr(s3_obstore, "DATE_PROBE_AFTER_MS", 60_000)  # "new" is fresh
        before = fast.stats.snapshot()
        quick, exact = await fast.list_dated("dated/"), await slow.list_dated("dated/")
        after = fast.stats.snapshot()
        assert after.get("requests.head", 0) == before.get("requests.head", 0)  # fresh
        assert after["requests.list"] == before["requests.list"] + 1
        assert quick.paths == exact.paths == ("dated/new", "dated/old")
        assert quick.modified == exact.modified
        assert quick.now <= exact.now
        for path, age in quick.ages().items():
            assert age <= exact.ages()[path], path
        assert quick.ages()["dated/old"] >= 1000  # what the newest object tells
        # idle: the newest object is "old" by this process's clock -> the server's clock
        monkeypatch.setattr(s3_obstore, "DATE_PROBE_AFTER_MS", -60_000)
        idle = await fast.list_dated("dated/")
        assert fast.stats.snapshot()["requests.head"] == after.get("requests.head", 0) + 1
        exact = await slow.list_dated("dated/")
        assert abs(idle.now - exact.now) <= 2000 and idle.now >= quick.now
        # this process's clock far behind the store's: no HEAD, ages still never overstated
        monkeypatch.setattr(s3_obstore, "DATE_PROBE_AFTER_MS", 60_000)
        monkeypatch.setattr(s3_obstore, "_wall_ms", lambda: 0.0)
        behind = await fast.list_dated("dated/")
        assert behind.now == max(behind.modified) <= exact.now
        await fast.close()
        await slow.close()

    asyncio.run(main())
