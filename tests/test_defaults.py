"""The default concurrency: an eighth of the open-file limit, between 32 and 256 (why 256:
kvstore.api._default_concurrency and BENCHMARKS.md, "Concurrency probe")."""

from __future__ import annotations

import resource

import pytest

import kvstore
from kvstore import api


@pytest.mark.parametrize(
    ("soft", "expected"),
    [(65536, 256), (1_048_576, 256), (resource.RLIM_INFINITY, 256), (1024, 128), (100, 32)],
)
def test_default_concurrency_follows_the_file_limit_within_bounds(
    monkeypatch: pytest.MonkeyPatch, soft: int, expected: int
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (soft, soft))
    assert api._default_concurrency() == expected


def test_the_default_is_what_open_uses() -> None:
    assert 32 <= kvstore.DEFAULT_CONCURRENCY <= 256
    with kvstore.open("memory://defaults", cache=None) as store:
        assert store.aio._ctx.concurrency == kvstore.DEFAULT_CONCURRENCY
