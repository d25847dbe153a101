"""kvstore.testing for users' tests: mock_s3(), mock_gcs(), redis_server() (issue 21).

What a user's test does, with no endpoint, credential or port in the code under test; and
what the blocks promise: buckets made on first use, each block empty, the environment put
back, nothing listening after, parallel use from several processes, clear errors.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import subprocess
from typing import Any

import pytest

import kvstore
from kvstore.testing import mock_gcs, mock_s3, redis_server, request_delta, run_in_processes
from kvstore.testing.faults import FaultyBlobStore


def _listening(url: str) -> bool:
    host, port = url.removeprefix("http://").removeprefix("redis://").split("/")[0].split(":")
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, int(port))) == 0


def _app_saves(name: str) -> bytes | None:
    """'Application code': knows only its URL."""
    with kvstore.open("s3://app-bucket/users", cache=None) as store:
        store.set(name, f"hello {name}", nx=True)
        return store.get(name)


def test_mock_s3_reaches_a_private_server_with_nothing_in_the_code() -> None:
    before = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID")}
    with mock_s3() as s3:
        assert _app_saves("ada") == b"hello ada"  # the bucket was made on first use

        async def async_face() -> list[str]:
            async with kvstore.open_async("s3://app-bucket/users", cache=None) as store:
                return await store.keys()

        assert asyncio.run(async_face()) == ["ada"]
        cli = shutil.which("kvstore")
        assert cli is not None
        out = subprocess.run(
            [cli, "--url", "s3://app-bucket/users", "--cache", "none", "get", "ada"],
            capture_output=True,
            text=True,
            timeout=60,
        )  # a subprocess inherits the environment the block set
        assert (out.returncode, out.stdout) == (0, "hello ada\n"), out.stderr
        boto = s3.client()  # the same server, from boto3
        keys = [o["Key"] for o in boto.list_objects_v2(Bucket="app-bucket")["Contents"]]
        assert "users/kv/ada~" in keys
        boto.close()
        endpoint = s3.endpoint_url
    assert not _listening(endpoint)  # nothing listens after the block
    assert {k: os.environ.get(k) for k in before} == before  # the environment put back


def test_each_block_starts_empty() -> None:
    with mock_s3():
        assert _app_saves("first") == b"hello first"
    with mock_s3(), kvstore.open("s3://app-bucket/users", cache=None) as store:
        assert store.keys() == []


@mock_s3()
def test_as_a_decorator() -> None:
    assert _app_saves("grace") == b"hello grace"


@mock_s3()
async def _decorated_coroutine() -> list[str]:
    async with kvstore.open_async("s3://my-bucket/x", cache=None) as store:
        await store.set("k", "v")
        return await store.keys()


def test_as_a_decorator_of_a_coroutine_function() -> None:
    assert asyncio.run(_decorated_coroutine()) == ["k"]
    assert asyncio.run(_decorated_coroutine()) == ["k"]  # a fresh server per call


def _in_a_process(me: int, *, barrier: Any) -> tuple[str, list[str]]:
    with mock_s3() as s3:
        barrier.wait(timeout=60)
        with kvstore.open("s3://shared-name/x", cache=None) as store:
            store.set(f"from-{me}", "v")
            return s3.endpoint_url, store.keys()


def test_two_processes_each_get_their_own_server() -> None:
    results = run_in_processes(_in_a_process, [(0,), (1,)], barrier=True, timeout=120)
    (url0, keys0), (url1, keys1) = results
    assert url0 != url1
    assert keys0 == ["from-0"] and keys1 == ["from-1"]


def test_inside_moto_mock_aws_kvstore_says_so_instead_of_reaching_aws() -> None:
    from moto import mock_aws

    with mock_aws():
        with pytest.raises(kvstore.ConfigurationError, match="mock_aws"):
            mock_s3()
        with pytest.raises(kvstore.ConfigurationError, match="mock_aws"):
            kvstore.open("s3://bucket/x")


def test_a_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("moto", "gcp_storage_emulator") else real(name, *a),
    )
    with pytest.raises(kvstore.ConfigurationError, match=r"pip install 'kvstore\[testing\]'"):
        mock_s3()
    with pytest.raises(kvstore.ConfigurationError, match="gcp-storage-emulator"):
        mock_gcs()


def test_mock_gcs() -> None:
    with mock_gcs() as gcs:
        with kvstore.open("gs://app-bucket/users", cache=None) as store:
            assert store.set("k", "v", nx=True) is True
            assert store.set("k", "w", nx=True) is None
            assert store.append("log", "a", "b") == 2
        endpoint = gcs.endpoint_url
    assert not _listening(endpoint)
    assert (
        "STORAGE_EMULATOR_HOST" not in os.environ or os.environ["STORAGE_EMULATOR_HOST"] != endpoint
    )


def test_redis_server_for_a_cache_and_its_outage() -> None:
    with redis_server() as redis, mock_s3():
        with kvstore.open("s3://app/x", cache=redis.url) as store:
            store.set("k", "v")
            assert store.get("k") == b"v"
            redis.pause()  # an outage: reads go on against the object store
            assert store.get("k") == b"v"
            redis.resume()
            assert store.get("k") == b"v"
        url = redis.url
    assert not _listening(url)


# -- faults on demand --------------------------------------------------------------------------


def test_faults_an_outage_then_recovery_on_s3() -> None:
    with mock_s3():
        faults = FaultyBlobStore.open("s3://app-bucket/x")
        with kvstore.open(faults, cache=None) as store:
            store.set("k", "v")
            faults.outage()
            with pytest.raises(kvstore.BackendError, match="injected"):
                store.get("k")
            with pytest.raises(kvstore.BackendError):
                store.keys()  # a listing fails too
            faults.restore()
            assert store.get("k") == b"v" and store.keys() == ["k"]
            assert faults.injected >= 2


def test_faults_are_retried_by_the_store_policy_like_real_ones() -> None:
    faults = FaultyBlobStore.open("memory://faults-retried")  # memory: 4 attempts
    with kvstore.open(faults, cache=None) as store:
        faults.fail("put", times=2)
        assert store.set("k", "v") is True  # two dropped connections, then success
        assert store.stats()["retries"] == 2
        faults.fail("get", error=PermissionError("denied"))  # not transient: no retry
        with pytest.raises(kvstore.BackendError, match="denied"):
            store.get("k")
        assert store.get("k") == b"v"


def test_a_failed_bulk_delete_raises_and_a_retry_finishes_it() -> None:
    """``delete_many``'s requests fail, are retried and reported like any other: a batch
    that fails leaves its objects (the others' batches are applied: not atomic as a
    whole), and the same call again finishes the job."""

    async def main() -> None:
        faults = FaultyBlobStore.open("memory://faults-bulk")  # memory: 4 attempts
        paths = [f"kv/{i:04d}~" for i in range(1500)]  # two batches of memory's 1000
        await asyncio.gather(*(faults.put(p, b"1") for p in paths[::100]))
        faults.fail("delete_many", error=PermissionError("denied"))  # not transient
        with pytest.raises(kvstore.BackendError, match="denied") as info:
            await faults.delete_many(paths)
        assert info.value.operation == "delete_many"
        assert info.value.url.endswith("kv/0000~ (and 999 more)")  # the first batch
        left = [p async for page in faults.list_pages("kv/") for p in page]
        assert left == paths[:1000:100]  # the second batch was applied
        faults.fail("delete_many", times=2)  # transient: retried by the store's policy
        with request_delta(faults, prefix="") as spent:
            await faults.delete_many(paths)
        assert spent["retries"] == 2 and spent["requests.delete_many"] == 2 + 2
        assert [p async for p in faults.list_pages("kv/")] == []
        await faults.put("kv/0000~", b"1")
        faults.drop_answers("delete_many")  # applied, answer lost: deleting again is fine
        with request_delta(faults, prefix="") as spent:
            await faults.delete_many(paths[:10])
        assert spent["retries"] == 1 and spent["requests.delete_many"] == 2
        assert [p async for p in faults.list_pages("kv/")] == []

    asyncio.run(main())


def test_a_dropped_answer_is_recognised_as_the_writers_own() -> None:
    faults = FaultyBlobStore.open("memory://faults-dropped")
    with kvstore.open(faults, cache=None) as store:
        faults.drop_answers("put_if_absent")
        assert store.set("k", "v", nx=True) is True  # landed, answer lost, retried: own
        assert store.get("k") == b"v"
        faults.drop_answers("put_if_absent")
        assert store.append("log", "a") == 1  # not written twice
        assert store.range("log", 0, -1) == [b"a"]


def test_slow_requests() -> None:
    import time

    faults = FaultyBlobStore.open("memory://faults-slow")
    with kvstore.open(faults, cache=None) as store:
        store.set("k", "v")
        faults.slow("get", seconds=0.3, times=1)
        started = time.monotonic()
        assert store.get("k") == b"v"
        assert time.monotonic() - started >= 0.3
        with pytest.raises(kvstore.ConfigurationError, match="unknown operation"):
            faults.fail("gett")


def test_the_pytest_plugin_fixtures(tmp_path: Any) -> None:
    """A user's test file using the plugin's fixtures, run by pytest in a subprocess."""
    import sys

    (tmp_path / "test_app.py").write_text(
        "import kvstore\n"
        "\n"
        "def test_s3_and_redis(kvstore_s3, kvstore_redis):\n"
        "    with kvstore.open('s3://app/x', cache=kvstore_redis.url) as store:\n"
        "        assert store.set('k', 'v', nx=True) is True\n"
        "        assert store.get('k') == b'v'\n"
        "\n"
        "def test_each_test_is_empty(kvstore_s3):\n"
        "    with kvstore.open('s3://app/x', cache=None) as store:\n"
        "        assert store.keys() == []\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "kvstore.testing.pytest_plugin", "-p",
         "no:cacheprovider", str(tmp_path / "test_app.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout


def test_the_unittest_pattern_of_the_readme() -> None:
    import unittest

    seen: list[str] = []

    class ProfilesTest(unittest.TestCase):
        def setUp(self) -> None:
            block = mock_s3()
            self.s3 = block.__enter__()
            self.addCleanup(block.__exit__, None, None, None)

        def test_save(self) -> None:
            with kvstore.open("s3://profiles/app", cache=None) as store:
                store.set("ada", "{}")
                seen.append(self.s3.endpoint_url)
                self.assertEqual(store.keys(), ["ada"])

        @mock_s3()
        def test_decorated(self) -> None:
            with kvstore.open("s3://profiles/app", cache=None) as store:
                self.assertEqual(store.keys(), [])

    result = unittest.TextTestRunner(verbosity=0).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(ProfilesTest)
    )
    assert result.wasSuccessful(), result.failures + result.errors
    assert seen and not _listening(seen[0])


# -- found by an adversarial review -------------------------------------------------------------


def test_decorating_generators_and_classes() -> None:
    @mock_s3()
    def gen() -> Any:
        yield os.environ.get("AWS_ENDPOINT_URL_S3")

    @mock_s3()
    async def agen() -> Any:
        yield os.environ.get("AWS_ENDPOINT_URL_S3")

    async def collect() -> list[Any]:
        return [x async for x in agen()]

    assert next(iter(list(gen()))) is not None
    assert asyncio.run(collect())[0] is not None

    @mock_s3()
    class Tests:
        def test_one(self) -> str | None:
            return os.environ.get("AWS_ENDPOINT_URL_S3")

        def helper(self) -> str | None:
            return os.environ.get("AWS_ENDPOINT_URL_S3")

    assert Tests().test_one() is not None and Tests().helper() is None
    with pytest.raises(TypeError, match="decorates a function or a class"):
        mock_s3()(42)  # type: ignore[arg-type]


def test_blocks_in_two_threads_are_refused_not_cross_wired() -> None:
    import threading

    errors: list[BaseException] = []
    entered = threading.Event()
    release = threading.Event()

    def other() -> None:
        entered.wait(30)
        try:
            with mock_s3():
                pass
        except RuntimeError as exc:
            errors.append(exc)
        finally:
            release.set()

    thread = threading.Thread(target=other)
    thread.start()
    with mock_s3():
        entered.set()
        release.wait(60)
    thread.join(30)
    assert errors and "another thread" in str(errors[0])
    assert "AWS_ENDPOINT_URL_S3" not in os.environ


def test_the_environment_is_put_back_whole_and_proxies_are_bypassed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy that answers nobody
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    monkeypatch.delenv("NO_PROXY", raising=False)
    before = dict(os.environ)
    with mock_s3():
        assert _app_saves("proxied") == b"hello proxied"
    with mock_gcs():
        pass
    assert dict(os.environ) == before


def test_a_bucket_name_s3_refuses_gets_s3s_error() -> None:
    with (
        mock_s3(),
        kvstore.open("s3://b/x", cache=None) as store,
        pytest.raises(kvstore.BackendError, match=r"InvalidBucketName|not valid|invalid"),
    ):
        store.set("k", "v")


def test_fault_arguments_are_checked() -> None:
    faults = FaultyBlobStore.open("memory://faults-args")
    for bad in (lambda: faults.fail(times=1.5), lambda: faults.fail(times="2")):  # type: ignore[arg-type]
        with pytest.raises(kvstore.ConfigurationError, match="times"):
            bad()
    with pytest.raises(kvstore.ConfigurationError, match="Exception"):
        faults.fail(error=SystemExit(3))  # type: ignore[arg-type]
    with pytest.raises(kvstore.ConfigurationError, match="finite"):
        faults.slow(seconds=float("inf"))
