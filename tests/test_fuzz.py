"""Decoders under fuzzing: whatever bytes they are given, they return or raise
CorruptDataError - never another exception, never a crash.

Each decoder gets ``KVSTORE_FUZZ_N`` inputs (20,000 by default: about 3 s for all of them;
``KVSTORE_FUZZ_N=1000000`` for a long run): bit flips, truncations,
splices and random bytes of valid encodings, and - for manifests, whose checksums would
otherwise stop everything before the parser - valid envelopes carrying fuzzed metadata.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from kvstore import codec
from kvstore.artifacts.manifest import FORMAT, Manifest
from kvstore.errors import CorruptDataError
from kvstore.logs.model import Piece, Plan, decode_records

N = int(os.environ.get("KVSTORE_FUZZ_N", "20000"))


def mutations(valid: list[bytes], rng: random.Random) -> Any:
    """N inputs derived from valid encodings."""
    for _ in range(N):
        data = bytearray(rng.choice(valid))
        how = rng.randrange(5)
        if how == 0 and data:  # flip bits
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif how == 1:  # truncate
            del data[rng.randrange(len(data) + 1) :]
        elif how == 2:  # splice two encodings
            other = rng.choice(valid)
            data = data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]
        elif how == 3:  # random bytes
            data = bytearray(rng.randbytes(rng.randrange(64)))
        else:  # overwrite a run
            start = rng.randrange(len(data) + 1)
            data[start : start + 8] = rng.randbytes(8)
        yield bytes(data)


def only_corrupt_data_error(decode: Callable[[bytes], Any], inputs: Any) -> int:
    refused = 0
    for data in inputs:
        try:
            decode(data)
        except CorruptDataError:
            refused += 1
        except Exception as exc:  # pragma: no cover - the failure this test exists for
            pytest.fail(f"{type(exc).__name__}: {exc} for input {data!r}")
    return refused


ENVELOPES = [
    codec.encode(b"small"),
    codec.encode(b"x" * 5000, expires_at_ms=1_700_000_000_000),
    codec.encode(bytes(msgpack.packb([b"a", b"b"])), meta={"n": 2, "b": "ab", "t": 1}, count=2),
    codec.encode(b"", meta={"@": "kv/key~"}, bind="kv/key~"),
    codec.encode(b"x" * 5000, meta={"n": 1, "u": "v" * 40}, bind="kv/key~", meta_crc=True),
    codec.encode(b"tiny", bind="kv/key~", meta_crc=True),
]


def test_envelope_decode() -> None:
    rng = random.Random(1)
    refused = only_corrupt_data_error(
        lambda d: codec.decode(d, bound="kv/key~"), mutations(ENVELOPES, rng)
    )
    assert refused > N // 2


def test_envelope_header_peeks() -> None:
    rng = random.Random(2)
    only_corrupt_data_error(codec.peek_expiry, mutations(ENVELOPES, rng))
    only_corrupt_data_error(codec.peek_count, mutations(ENVELOPES, rng))


def test_envelope_peek_meta() -> None:
    """peek_meta on any prefix of any damaged object: a dict, None (read more) or
    CorruptDataError (NoMetaChecksum included)."""
    rng = random.Random(7)

    def peek(data: bytes) -> Any:
        meta = codec.peek_meta(data, bound="kv/key~")
        assert meta is None or isinstance(meta, dict)
        if meta is not None:
            assert codec.meta_span(data) <= len(data)

    refused = only_corrupt_data_error(peek, mutations(ENVELOPES, rng))
    assert refused > N // 4


def test_cached_values() -> None:
    """A damaged cache entry is reported as damaged (then repaired), never raised."""
    rng = random.Random(3)
    valid = [codec.pack_cached(b"v" * n, n * 1000) for n in (0, 1, 100)]
    for data in mutations(valid, rng):
        values, damaged = codec.unpack_cached([data])
        assert (values[0] is None) or (not damaged and isinstance(values[0][0], bytes))


def test_sealed_plans() -> None:
    rng = random.Random(4)
    plan = Plan(0, (Piece("c/" + "0" * 20, 0, 3),), 3, ("c/" + "0" * 20,))
    valid = [codec.seal(plan.to_bytes())]

    def decode(data: bytes) -> Any:
        try:
            return Plan.from_bytes(codec.unseal(data))
        except CorruptDataError:
            raise
        except Exception as exc:  # the read path treats any failure as a damaged entry
            raise CorruptDataError(f"damaged: {exc}") from exc

    only_corrupt_data_error(decode, mutations(valid, rng))


def test_log_records() -> None:
    rng = random.Random(5)
    valid = [codec.encode(bytes(msgpack.packb([b"a" * n for n in range(5)])), count=5)]

    def decode(data: bytes) -> Any:
        return decode_records(codec.decode(data), 0, 5)

    only_corrupt_data_error(decode, mutations(valid, rng))


def fuzzed_meta(rng: random.Random) -> dict[str, Any]:
    """A manifest's metadata with some fields of the wrong kind or out of range."""
    weird: list[Any] = [
        None, -1, 2**63 - 1, -(2**63), 1e308, float("nan"), "", "x" * 300, b"\xff", [], {},
        [1, 2], {"a": 1}, True, 10**18, -(10**18),
    ]  # fmt: skip
    meta: dict[str, Any] = {
        "f": FORMAT,
        "mime": "text/plain",
        "user": {"k": "v"},
        "size": 3,
        "sha256": "0" * 64,
        "created": 1_700_000_000_000,
        "upload": "u" * 24,
    }
    for field in rng.sample([*sorted(meta), "parts", "deleted"], rng.randint(1, 3)):
        if rng.random() < 0.2:
            meta.pop(field, None)
        else:
            meta[field] = rng.choice(weird)
    return meta


def test_manifests() -> None:
    rng = random.Random(6)
    refused = 0
    for _ in range(N):
        data = codec.encode(b"abc", meta=fuzzed_meta(rng), meta_crc=True)
        env = codec.decode(data)
        try:
            manifest = Manifest.parse(env, "name", "art/name~/0")
            if manifest is not None:
                manifest.info("name", 0)
        except CorruptDataError:
            refused += 1
        try:  # what info reads: the metadata alone, from the first bytes
            meta = codec.peek_meta(data)
            assert meta is not None
            described = Manifest.from_meta(meta, "name", "art/name~/0")
            if described is not None:
                described.info("name", 0)
        except CorruptDataError:
            pass
        except Exception as exc:  # pragma: no cover - the failure this test exists for
            pytest.fail(f"{type(exc).__name__}: {exc} for metadata {env.meta!r}")
    assert refused > N // 2
