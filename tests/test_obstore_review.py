"""Review of the obstore transport (kvstore/blob/s3_obstore.py): defects found, each
pinned by a test that fails without its fix.

* listings whose start position object_store cannot parse as a ``Path`` (a prefix ending
  in ``0`` right after a ``/``: ``store.keys("0")``), raised a bare ValueError;
* botocore's refreshable credentials (SSO, roles, containers) carry a dateutil ``tzutc``
  expiry, which obstore refuses (it wants ``datetime.timezone.utc``);
* S3 error codes were found by substring in obstore's whole message, which names the
  object: a key named ``NoSuchBucket`` read as a missing bucket, a key named
  ``ConditionalRequestConflict`` as a 409, a failed range read of a path holding ``416``
  as a read past the end (``b""``);
* obstore's errors were neither short (a "Debug source" dump of ~1.5 KB in every
  BackendError) nor seen as transient, so ``retry=RetryPolicy(...)`` never retried a 503
  or a refused connection on this transport.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from conftest import Target
from http_faults import FaultProxy

import kvstore
from kvstore.blob import open_blob_store
from kvstore.blob.s3_obstore import ObstoreS3BlobStore, just_before
from kvstore.errors import BackendError
from kvstore.stats import Stats

SLOW_DOWN = (
    503,
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>",
)


async def _listed(blob: Any, prefix: str, start_after: str | None = None) -> list[str]:
    return [p async for page in blob.list_pages(prefix, start_after) for p in page]


# -- listing positions object_store cannot name ----------------------------------------------


@pytest.mark.parametrize("backend", ["s3", "seaweedfs"])
def test_keys_under_a_prefix_ending_in_0(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    """``kv/0`` listed from ``just_before``: ``kv//<max>``, an empty path segment."""
    with make_target(backend).open() as store:
        store.set("0abc", 1)
        store.set("1", 1)
        store.append("0log", "x")
        assert store.keys("0") == ["0abc", "0log"]
        assert list(store.scan_iter("0")) == ["0abc", "0log"]
        assert store.delete_prefix("0") == 2
        assert store.keys() == ["1"]


def test_blob_listings_from_positions_object_store_cannot_parse(
    make_target: Callable[[str], Target],
) -> None:
    """Raw paths (the blob contract): prefixes whose ``just_before`` would hold a control
    character, an empty segment or a leading ``/``, and such a ``start_after`` (which moto
    answers 500 on s3fs): the paths S3's order gives, never a bare ValueError."""
    target = make_target("s3")  # moto lists in S3's order
    fast = open_blob_store(target.url, target.storage_options, stats=Stats())
    slow = open_blob_store(
        target.url, {**target.storage_options, "transport": "s3fs"}, stats=Stats()
    )
    assert isinstance(fast, ObstoreS3BlobStore)
    names = ["0", "0a", "a", "a ", "a b", "a!", "a0", "a/0", "a/0x", "b", "d/0/x"]

    async def run() -> None:
        try:
            await asyncio.gather(*(slow.put(n, b"") for n in names))
            for prefix in ("0", "a ", "a/0", "d/0", "a", ""):
                for start_after in (None, "a\x01", "a/\x00z", "/a", "0"):
                    want = sorted(
                        n
                        for n in names
                        if n.startswith(prefix) and (start_after is None or n > start_after)
                    )
                    assert await _listed(fast, prefix, start_after) == want, (prefix, start_after)
        finally:
            await fast.close()
            await slow.close()

    asyncio.run(run())


def test_just_before_is_a_path_object_store_parses() -> None:
    for prefix in ("kv/0", "0", "a ", "a\x01", "kv/a\x00", "x\ue000", "kv/ab"):
        bound = just_before(prefix)
        assert bound is None or bound < prefix, prefix
        if bound is not None:
            assert "//" not in bound and not bound.startswith("/"), prefix
            assert all(ord(c) >= 0x20 and ord(c) != 0x7F for c in bound), prefix
            assert not any(0xD800 <= ord(c) < 0xE000 for c in bound), prefix


# -- credentials -----------------------------------------------------------------------------


def test_refreshable_botocore_credentials_reach_obstore(
    make_target: Callable[[str], Target], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSO, assume-role, container and instance credentials are botocore
    RefreshableCredentials, their expiry a dateutil ``tzutc`` datetime."""
    import botocore.credentials
    import botocore.session

    target = make_target("seaweedfs")
    options = dict(target.storage_options)
    key, secret = options.pop("key"), options.pop("secret")
    expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    credentials = botocore.credentials.RefreshableCredentials.create_from_metadata(
        metadata={
            "access_key": key,
            "secret_key": secret,
            "token": None,
            "expiry_time": expiry.isoformat(),
        },
        refresh_using=lambda: {},
        method="review",
    )
    monkeypatch.setattr(botocore.session.Session, "get_credentials", lambda self: credentials)
    with kvstore.open(target.url, storage_options=options, cache=None) as store:
        assert store.aio._ctx.blob.transport == "obstore"
        store.set("k", "v")
        assert store.get("k") == b"v"
    provider = store.aio._ctx.blob._settings["credential_provider"]
    assert provider()["expires_at"].tzinfo is datetime.timezone.utc


# -- S3 error codes, not substrings of the message -------------------------------------------


@pytest.mark.parametrize("backend", ["s3", "seaweedfs"])
def test_keys_named_like_s3_error_codes(backend: str, make_target: Callable[[str], Target]) -> None:
    with make_target(backend).open() as store:
        assert store.get("NoSuchBucket") is None  # not "the bucket does not exist"
        assert store.set("ConditionalRequestConflict", 1, nx=True) is True
        assert store.set("ConditionalRequestConflict", 2, nx=True) is None  # a 412, no 409
        assert store.stats().get("s3.conditional_conflicts", 0) == 0
        assert store.get("ConditionalRequestConflict") == b"1"


def _proxied(target: Target, answer: Callable[[str, str, Mapping[str, str]], Any]) -> FaultProxy:
    return FaultProxy(target.storage_options["endpoint_url"], answer)


def test_a_failed_range_read_of_a_path_holding_416_is_an_error_not_empty(
    make_target: Callable[[str], Target],
) -> None:
    target = make_target("seaweedfs")

    def answer(method: str, path: str, headers: Mapping[str, str]) -> Any:
        return SLOW_DOWN if headers.get("Range") == "bytes=2-4" else None

    with _proxied(target, answer) as proxy:
        blob = open_blob_store(
            target.url, {**target.storage_options, "endpoint_url": proxy.url}, stats=Stats()
        )

        async def run() -> None:
            try:
                await blob.put("blk416", b"0123456789")
                with pytest.raises(BackendError, match="SlowDown"):
                    await blob.get_range("blk416", 2, 3)
            finally:
                await blob.close()

        asyncio.run(run())


# -- errors: short, and retried by kvstore's RetryPolicy as on s3fs ------------------------


@pytest.mark.parametrize("backend", ["seaweedfs", "seaweedfs+s3fs"])
def test_a_503_is_short_and_retried_by_the_retry_policy(
    backend: str, make_target: Callable[[str], Target]
) -> None:
    target = make_target(backend)
    sent: list[str] = []

    def answer(method: str, path: str, headers: Mapping[str, str]) -> Any:
        sent.append(method)
        return SLOW_DOWN

    with _proxied(target, answer) as proxy:
        options = {**target.storage_options, "endpoint_url": proxy.url}
        retry = kvstore.RetryPolicy(attempts=2, base_delay=0.01)
        stats = Stats()
        blob = open_blob_store(target.url, options, retry=retry, stats=stats)

        error = asyncio.run(_failing_get(blob))
    assert stats.get("retries") == 1  # kvstore saw a transient fault and tried again
    assert len(sent) == 6  # 2 x the client library's 3 tries
    if backend == "seaweedfs+s3fs":
        return  # the s3fs transport's message is botocore's
    text = str(error)
    assert "SlowDown" in text and "503" in text and len(text) < 400, text
    assert "Debug source" not in text


async def _failing_get(blob: Any) -> BackendError:
    """The BackendError a get of "k" raises (the store closed after it)."""
    try:
        with pytest.raises(BackendError) as caught:
            await blob.get("k")
        return caught.value
    finally:
        await blob.close()


def test_a_refused_connection_is_short_transient_and_says_why() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "k", "secret": "s"}
    stats = Stats()
    retry = kvstore.RetryPolicy(attempts=2, base_delay=0.01)
    blob = open_blob_store(f"s3://bucket/{uuid.uuid4().hex}", options, retry=retry, stats=stats)
    assert isinstance(blob, ObstoreS3BlobStore)

    text = str(asyncio.run(_failing_get(blob)))
    assert stats.get("retries") == 1
    assert "Connection refused" in text and len(text) < 400, text
    assert "Debug source" not in text


def test_a_missing_bucket_is_a_short_error(make_target: Callable[[str], Target]) -> None:
    target = make_target("s3")  # moto: SeaweedFS creates a bucket on the first PUT
    url = target.url.replace("s3://kvstore-test/", "s3://no-such-bucket-review/")
    blob = open_blob_store(url, target.storage_options, stats=Stats())

    async def run() -> None:
        try:
            for read in (blob.get("k"), blob.get_range("k", 0, 4), _listed(blob, "")):
                with pytest.raises(BackendError, match="NoSuchBucket") as caught:
                    await read
                assert len(str(caught.value)) < 400, str(caught.value)
        finally:
            await blob.close()

    asyncio.run(run())


# -- URLs whose prefix object_store cannot name ----------------------------------------------


def test_a_prefix_object_store_cannot_name_opens_on_s3fs() -> None:
    """``s3://bucket/a//b`` (an empty segment) or ``.``/``..`` segments: S3 names them,
    object_store refuses them at the first request ("bad storage_options")."""
    from kvstore.blob.s3 import S3BlobStore
    from kvstore.errors import ConfigurationError

    options = {"endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s"}
    for url in ("s3://bucket/a//b", "s3://bucket/a/./b", "s3://bucket/../b"):
        assert type(open_blob_store(url, options, stats=Stats())) is S3BlobStore, url
        with pytest.raises(ConfigurationError, match="transport'] = 's3fs'"):
            open_blob_store(url, {**options, "transport": "obstore"}, stats=Stats())
    assert type(open_blob_store("s3://bucket/a/b/", options, stats=Stats())) is ObstoreS3BlobStore
