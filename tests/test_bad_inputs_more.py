"""Bad inputs found by an adversarial sweep: each gets a clear kvstore error at once, and the
caller's arguments are left as they were."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from conftest import Target

import kvstore


def test_a_long_namespace_and_key_on_local_disk_is_an_invalid_key(tmp_path: Any) -> None:
    """Each is within the 1024-byte limit; together, escaped, they pass the filesystem's
    PATH_MAX. Before: a 12 kB BackendError from the OS."""
    with kvstore.open(str(tmp_path / "store"), cache=None) as store:
        tenant = store.namespace("é" * 512)  # 1024 bytes, 3072 characters escaped
        with pytest.raises(kvstore.InvalidKeyError, match=r"filesystem allows") as info:
            tenant.set("ü" * 512, "v")
        assert len(str(info.value)) < 300
        for call in (lambda: tenant.append("ü" * 512, "r"), lambda: tenant.get("ü" * 512)):
            with pytest.raises(kvstore.InvalidKeyError):
                call()
        tenant.set("short", "v")  # the namespace itself still works
        assert tenant.get("short") == b"v"


def test_an_fsspec_url_that_cannot_be_opened_is_a_configuration_error() -> None:
    with pytest.raises(kvstore.ConfigurationError, match="zip://"):
        kvstore.open("zip://x")


@pytest.mark.parametrize(
    ("url", "options", "field"),
    [
        ("s3://bucket/p", {"endpoint_url": 5}, "endpoint_url"),
        ("s3://bucket/p", {"key": 123, "secret": "s"}, "key"),
        ("s3://bucket/p", {"client_kwargs": "us-east-1"}, "client_kwargs"),
        ("s3://bucket/p", {"anon": "yes"}, "anon"),
        ("gs://bucket/p", {"project": 7}, "project"),
        ("gs://bucket/p", {"endpoint_url": ["http://x"]}, "endpoint_url"),
    ],
)
def test_wrong_typed_storage_options_fail_at_open(
    url: str, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(kvstore.ConfigurationError, match=field):
        kvstore.open(url, storage_options=options)


@pytest.mark.parametrize("ttl", [math.inf, -math.inf, math.nan, 0, -1, "60"])
def test_cache_ttl_must_be_a_finite_positive_number(ttl: Any) -> None:
    with pytest.raises(kvstore.ConfigurationError, match="cache_ttl"):
        kvstore.open("memory://ttl", cache_ttl=ttl)


def test_the_callers_storage_options_are_not_changed(make_target: Any) -> None:
    target: Target = make_target("s3")
    options = {
        **target.storage_options,
        "client_kwargs": {"region_name": "us-east-1"},
        "config_kwargs": {"connect_timeout": 5, "retries": {"max_attempts": 2}},
    }
    before = copy.deepcopy(options)
    with kvstore.open(target.url, storage_options=options, cache=None) as store:
        store.set("k", "v")
        assert store.mget(["k", "x"]) == [b"v", None]
    assert options == before


def test_decode_responses_on_a_value_that_is_not_text(make_target: Any) -> None:
    target: Target = make_target("memory")
    with target.open() as raw, target.open(decode_responses=True) as text:
        raw.set("bin", b"\xff\xfe")
        raw.append("log", b"\xff")
        for call in (
            lambda: text.get("bin"),
            lambda: text.mget(["bin"]),
            lambda: text.range("log"),
        ):
            with pytest.raises(kvstore.ResponseDecodeError, match="decode_responses=False"):
                call()
        assert raw.get("bin") == b"\xff\xfe"  # nothing lost
