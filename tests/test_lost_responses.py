"""A conditional write whose response is lost, retried by the client library, is
recognised as the store's own - whoever retried it.

botocore and gcsfs retry a request whose response never arrived (a connection reset after
the server applied it). The retry of a conditional write then meets the write itself: a
create finds the object present, a compare-and-swap or conditional delete finds the tag
changed. kvstore only sees that final "not applied". These tests put a wrapper in front of
the real S3 (moto) and GCS (emulator) blob stores that does exactly what the library does:
the first matching conditional request is applied by the server, and the answer the store
gets is the retry's.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import REMOTE, Target

import kvstore
from kvstore.blob import Blob, WrapperBlobStore


class LibraryRetries(WrapperBlobStore):
    """The first conditional write on a path containing ``where`` lands, and its answer is
    the one a library retry of it gets."""

    where = ""
    fired = 0

    def _armed(self, path: str) -> bool:
        if self.fired or self.where not in path:
            return False
        type(self).fired += 1
        return True

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        if self._armed(path):
            await self.inner._put_if_absent(path, data)
        return await self.inner._put_if_absent(path, data)

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        if self._armed(path):
            await self.inner._put_if_match(path, data, tag)
        return await self.inner._put_if_match(path, data, tag)

    async def _delete_if_match(self, path: str, tag: str) -> bool:
        if self._armed(path):
            await self.inner._delete_if_match(path, tag)
        return await self.inner._delete_if_match(path, tag)

    async def _get(self, path: str, head: int | None = None) -> Blob | None:
        return await self.inner._get(path, head)


def lossy(target: Target, where: str) -> Any:
    """A store on ``target`` whose first conditional write below ``where`` loses its
    response, and the wrapper class (``.fired`` counts the losses)."""
    wrapper = type("Lossy", (LibraryRetries,), {"where": where, "fired": 0})
    return target.blob_store(), wrapper


def open_lossy(target: Target, where: str, **kwargs: Any) -> tuple[kvstore.KVStore, Any]:
    blob, wrapper = lossy(target, where)
    return kvstore.open(wrapper(blob), cache=None, **kwargs), wrapper


@pytest.fixture(params=REMOTE)
def remote(request: pytest.FixtureRequest, make_target: Any) -> Target:
    return make_target(request.param)


def test_artifact_save_is_not_duplicated(remote: Target) -> None:
    store, wrapper = open_lossy(remote, "art/")
    with store:
        assert store.artifacts.save("report", b"only once") == 0
        assert wrapper.fired == 1
        assert store.artifacts.versions("report") == [0]
        assert store.artifacts.save("report", b"second") == 1


def test_set_nx_reports_its_own_create(remote: Target) -> None:
    store, wrapper = open_lossy(remote, "kv/")
    with store:
        assert store.set("lock", "me", nx=True) is True
        assert wrapper.fired == 1
        assert store.get("lock") == b"me"
        assert store.set("lock", "other", nx=True) is None


def test_swaps_report_what_they_did(remote: Target) -> None:
    store, wrapper = open_lossy(remote, "kv/")
    with store:
        store.set("k", "v", ex=100)  # a plain PUT: not conditional, not armed
        assert store.persist("k") is True  # the CAS landed; the retry saw a new tag
        assert wrapper.fired == 1
        assert store.ttl("k") == -1
        wrapper.fired = 0
        assert store.set("k", "w", xx=True, keepttl=True) is True
        assert wrapper.fired == 1
        assert store.get("k") == b"w"


def test_expire_to_the_past_reports_the_delete(remote: Target) -> None:
    store, wrapper = open_lossy(remote, "kv/")
    with store:
        store.set("k", "v")
        wrapper.fired = 0
        assert store.expire("k", -1) is True
        assert wrapper.fired == 1
        assert store.get("k") is None and store.exists("k") == 0


def test_purge_expired_counts_what_it_deleted(remote: Target) -> None:
    store, wrapper = open_lossy(remote, "kv/")
    with store:
        store.set("gone", "v", px=1)
        store.set("kept", "v")
        wrapper.fired = 0
        time.sleep(0.01)
        assert store.purge_expired() == 1
        assert wrapper.fired == 1
        assert store.keys() == ["kept"]


def test_log_append_is_not_doubled(remote: Target) -> None:
    store, wrapper = open_lossy(remote, "log/")
    with store:
        assert store.append("chat", "hello") == 1
        assert wrapper.fired == 1
        assert store.append("chat", "again") == 2
        assert store.range("chat") == [b"hello", b"again"]
