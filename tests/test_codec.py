"""The envelope codec: round trips, when it compresses, and a decoder that only ever raises
CorruptDataError on bad input (docs/architecture.md, invariant 6)."""

from __future__ import annotations

import gzip
import os
import random
import struct
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from kvstore import codec
from kvstore.errors import CorruptDataError

SEED = 20240611


def flags_of(data: bytes) -> int:
    return data[5]


def text_payload(size: int) -> bytes:
    rng = random.Random(SEED)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"session", b"user", b"assistant"]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"x",
        b"hello world",
        b"\x00" * 255,
        b"\x00" * 256,
        text_payload(10 * 1024),
        os.urandom(10 * 1024),
        text_payload(3 * 2**20),
        random.Random(SEED).randbytes(2**20),
    ],
    ids=["empty", "one", "small", "255zeros", "256zeros", "text10k", "rand10k", "text3m", "rand1m"],
)
@pytest.mark.parametrize("expires", [0, 1, 1_700_000_000_000, 2**63 - 1])
def test_round_trip(payload: bytes, expires: int) -> None:
    data = codec.encode(payload, expires_at_ms=expires)
    env = codec.decode(data)
    assert env.payload == payload
    assert env.expires_at_ms == expires
    assert env.meta == {}
    assert codec.peek_expiry(data) == expires
    assert codec.peek_expiry(data[: codec.HEADER_SIZE]) == expires


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=4096),
    expires=st.integers(min_value=0, max_value=2**63 - 1),
    meta=st.dictionaries(
        st.text(max_size=10),
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=20), st.binary(max_size=20)),
        max_size=5,
    ),
    compress=st.sampled_from([None, True, False]),
)
def test_round_trip_property(
    payload: bytes, expires: int, meta: dict, compress: bool | None
) -> None:
    data = codec.encode(payload, expires_at_ms=expires, meta=meta, compress=compress)
    env = codec.decode(data)
    assert env.payload == payload
    assert env.expires_at_ms == expires
    assert env.meta == meta
    assert codec.peek_expiry(data) == expires


def test_meta_round_trip() -> None:
    meta = {"mime_type": "text/plain", "n": 3, "nested": {"a": [1, 2, b"x"]}, 7: "int key"}
    env = codec.decode(codec.encode(b"payload", meta=meta))
    assert env.meta == meta
    assert env.payload == b"payload"


def test_nonce_differs_per_write_and_can_be_fixed() -> None:
    a = codec.encode(b"same")
    b = codec.encode(b"same")
    assert a != b  # a writer can recognise its own object
    assert codec.decode(a).nonce != codec.decode(b).nonce
    fixed = codec.encode(b"same", nonce=42)
    assert codec.decode(fixed).nonce == 42
    assert codec.encode(b"same", nonce=42) == fixed


def test_expired() -> None:
    env = codec.decode(codec.encode(b"v", expires_at_ms=1000))
    assert not env.expired(999)
    assert env.expired(1000)
    assert env.expired(1001)
    assert not codec.decode(codec.encode(b"v")).expired(2**62)


# -- compression only when it pays ---------------------------------------------------------


def test_text_is_compressed() -> None:
    payload = text_payload(10 * 1024)
    data = codec.encode(payload)
    assert flags_of(data) & codec.FLAG_ZSTD
    assert len(data) < len(payload) // 2
    assert codec.decode(data).payload == payload


def test_random_bytes_are_stored_raw() -> None:
    payload = random.Random(SEED).randbytes(64 * 1024)
    data = codec.encode(payload)
    assert flags_of(data) == 0
    assert len(data) == len(payload) + codec.MIN_SIZE
    assert codec.decode(data).payload == payload


def test_small_payload_is_stored_raw() -> None:
    payload = b"a" * (codec.COMPRESS_THRESHOLD - 1)
    data = codec.encode(payload)
    assert flags_of(data) == 0
    assert codec.decode(data).payload == payload
    assert flags_of(codec.encode(b"a" * codec.COMPRESS_THRESHOLD)) & codec.FLAG_ZSTD


@pytest.mark.parametrize(
    "payload",
    [
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 10_000,
        b"\xff\xd8\xff\xe0" + b"\x00" * 10_000,
        gzip.compress(b"hello " * 10_000) + b"\x00" * 10_000,
        b"PK\x03\x04" + b"\x00" * 10_000,
        b"\x28\xb5\x2f\xfd" + b"\x00" * 10_000,
    ],
    ids=["png", "jpeg", "gzip", "zip", "zstd"],
)
def test_already_compressed_formats_are_not_recompressed(payload: bytes) -> None:
    """Even when zstd would shrink them (zero padding here), known media are stored raw."""
    assert codec.looks_compressed(payload)
    data = codec.encode(payload)
    assert flags_of(data) == 0
    assert codec.decode(data).payload == payload


def test_forced_compression_kept_only_if_it_saves() -> None:
    payload = random.Random(SEED).randbytes(4096)
    assert flags_of(codec.encode(payload, compress=True)) == 0
    assert flags_of(codec.encode(b"a" * 10, compress=True)) == 0  # zstd frame overhead
    assert flags_of(codec.encode(b"a" * 10_000, compress=False)) == 0


# -- with_expiry ---------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"small", text_payload(20_000)])
def test_with_expiry_keeps_payload_and_meta(payload: bytes) -> None:
    data = codec.encode(payload, expires_at_ms=5, meta={"m": 1})
    changed = codec.with_expiry(data, 123_456)
    env = codec.decode(changed)
    assert env.payload == payload
    assert env.meta == {"m": 1}
    assert env.expires_at_ms == 123_456
    assert codec.peek_expiry(changed) == 123_456
    assert changed[codec.HEADER_SIZE :] == data[codec.HEADER_SIZE :]
    assert codec.decode(changed).nonce != codec.decode(data).nonce
    assert codec.decode(codec.with_expiry(changed, 0)).expires_at_ms == 0


def test_with_expiry_rejects_corrupt_header() -> None:
    data = bytearray(codec.encode(b"v"))
    data[10] ^= 1
    with pytest.raises(CorruptDataError):
        codec.with_expiry(bytes(data), 1, key="k", path="kv/k~")


# -- the decoder on hostile input ----------------------------------------------------------


def decode_must_fail(data: bytes) -> CorruptDataError:
    try:
        env = codec.decode(data)
    except CorruptDataError as exc:
        return exc
    except Exception as exc:  # pragma: no cover - the assertion is the point
        raise AssertionError(
            f"decode raised {type(exc).__name__}: {exc!r} on {data[:64]!r}"
        ) from exc
    raise AssertionError(f"decode accepted corrupt input and returned {env!r}")


def decode_safely(data: bytes) -> codec.Envelope | None:
    """None if rejected (with CorruptDataError only), else the envelope."""
    try:
        return codec.decode(data)
    except CorruptDataError:
        return None
    except Exception as exc:  # pragma: no cover
        raise AssertionError(
            f"decode raised {type(exc).__name__}: {exc!r} on {data[:64]!r}"
        ) from exc


SAMPLES = {
    "raw": codec.encode(b"the quick brown fox", expires_at_ms=1_700_000_000_000),
    "meta": codec.encode(b"payload!", meta={"a": 1, "b": [1, 2]}),
    "zstd": codec.encode(text_payload(600)),
    "empty": codec.encode(b""),
}


def test_samples_are_what_they_claim() -> None:
    assert flags_of(SAMPLES["zstd"]) & codec.FLAG_ZSTD
    assert flags_of(SAMPLES["raw"]) == 0


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_single_bit_flip_is_detected(name: str) -> None:
    data = SAMPLES[name]
    count = 0
    for pos in range(len(data)):
        for bit in range(8):
            mutated = bytearray(data)
            mutated[pos] ^= 1 << bit
            exc = decode_must_fail(bytes(mutated))
            assert isinstance(exc, CorruptDataError)
            if pos < codec.HEADER_SIZE:
                with pytest.raises(CorruptDataError):
                    codec.peek_expiry(bytes(mutated))
            count += 1
    assert count == 8 * len(data)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_truncation_is_detected(name: str) -> None:
    data = SAMPLES[name]
    for length in range(len(data)):
        decode_must_fail(data[:length])
    for length in range(codec.HEADER_SIZE):
        with pytest.raises(CorruptDataError):
            codec.peek_expiry(data[:length])


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_appended_bytes_are_detected(name: str) -> None:
    data = SAMPLES[name]
    rng = random.Random(SEED)
    for n in range(1, 200):
        decode_must_fail(data + rng.randbytes(n))
    decode_must_fail(data + b"\x00")
    decode_must_fail(data + data)


def test_random_splices_never_yield_a_wrong_payload() -> None:
    rng = random.Random(SEED)
    originals = list(SAMPLES.values())
    payloads = {codec.decode(d).payload for d in originals}
    accepted = 0
    for _ in range(5000):
        a, b = rng.choice(originals), rng.choice(originals)
        i, j = sorted(rng.randrange(len(a) + 1) for _ in range(2))
        k, m = sorted(rng.randrange(len(b) + 1) for _ in range(2))
        mutated = a[:i] + b[k:m] + a[j:]
        env = decode_safely(mutated)
        if env is not None:
            # only possible when the splice reproduced a whole valid envelope
            assert env.payload in payloads
            assert mutated in originals
            accepted += 1
    assert accepted < 5000


def test_random_mutations() -> None:
    """Multi-byte overwrites, inserts and deletes at random positions: always rejected."""
    rng = random.Random(SEED)
    originals = list(SAMPLES.values())
    for _ in range(5000):
        data = bytearray(rng.choice(originals))
        op = rng.randrange(3)
        pos = rng.randrange(len(data))
        if op == 0:
            n = rng.randint(1, 8)
            new = rng.randbytes(n)
            if bytes(data[pos : pos + n]) == new[: len(data[pos : pos + n])]:
                continue
            data[pos : pos + n] = new
        elif op == 1:
            data[pos:pos] = rng.randbytes(rng.randint(1, 8))
        else:
            del data[pos : pos + rng.randint(1, 8)]
        if bytes(data) in originals:
            continue
        decode_must_fail(bytes(data))


def test_random_garbage_is_rejected() -> None:
    rng = random.Random(SEED)
    for _ in range(5000):
        n = rng.choice([0, 1, 4, 31, 32, 35, 36, 37, 64, rng.randrange(2000)])
        decode_must_fail(rng.randbytes(n))
    # garbage with a valid magic and a valid header checksum gets further into the decoder
    for _ in range(5000):
        header = bytearray(rng.randbytes(28))
        header[:4] = codec.MAGIC
        header[4] = codec.VERSION
        header[5] = rng.choice([0, 1, 2, 0xFF])
        crc = struct.pack("<I", zlib.crc32(header))
        decode_must_fail(bytes(header) + crc + rng.randbytes(rng.randrange(100)))


def _forge(
    body: bytes, *, flags: int = 0, meta_len: int = 0, expires: int = 0, version: int = 1
) -> bytes:
    """A structurally valid envelope (both checksums right) around arbitrary content."""
    header = struct.pack("<4sBBHqQI", codec.MAGIC, version, flags, 0, expires, 7, meta_len)
    return (
        header + struct.pack("<I", zlib.crc32(header)) + body + struct.pack("<I", zlib.crc32(body))
    )


@pytest.mark.parametrize(
    ("body", "kwargs"),
    [
        (b"not zstd at all", {"flags": codec.FLAG_ZSTD}),
        (b"\x28\xb5\x2f\xfd" + b"\x00" * 20, {"flags": codec.FLAG_ZSTD}),
        (b"\xc1", {"meta_len": 1}),  # msgpack: reserved byte
        (b"\x93\x01\x02\x03", {"meta_len": 4}),  # msgpack array, not a map
        (b"\x81\xa1", {"meta_len": 2}),  # truncated msgpack map
        (b"\xdd\xff\xff\xff\xff", {"meta_len": 5}),  # array claiming 4G items
        (b"", {"meta_len": 10}),  # meta longer than the object
        (b"x", {"flags": 0x80}),  # unknown flag
        (b"x", {"version": 2}),
        (b"x", {"expires": -1}),
    ],
)
def test_forged_envelopes_are_rejected(body: bytes, kwargs: dict) -> None:
    exc = decode_must_fail(_forge(body, **kwargs))
    assert str(exc)


def test_damaged_zstd_frames_are_rejected() -> None:
    """Frames damaged *before* checksumming (so the CRC is right) still fail cleanly."""
    good = zstandard.ZstdCompressor().compress(text_payload(5000))
    assert codec.decode(_forge(good, flags=codec.FLAG_ZSTD)).payload == text_payload(5000)
    rng = random.Random(SEED)
    for pos in range(len(good)):
        frame = bytearray(good)
        frame[pos] ^= 1 << rng.randrange(8)
        env = decode_safely(_forge(bytes(frame), flags=codec.FLAG_ZSTD))
        # zstd has no checksum by default: a flip in a literal may decode to other bytes,
        # but the decoder must never crash or leak a zstd exception
        assert env is None or isinstance(env.payload, bytes)
    decode_must_fail(_forge(good[:-1], flags=codec.FLAG_ZSTD))
    decode_must_fail(_forge(good[:10], flags=codec.FLAG_ZSTD))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_hypothesis_garbage(data: bytes) -> None:
    decode_safely(data)  # never anything but CorruptDataError


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(sorted(SAMPLES)), st.data())
def test_hypothesis_mutation(name: str, data: st.DataObject) -> None:
    original = SAMPLES[name]
    pos = data.draw(st.integers(0, len(original) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != original[pos]))
    mutated = original[:pos] + bytes([value]) + original[pos + 1 :]
    decode_must_fail(mutated)


def test_error_names_key_and_path() -> None:
    with pytest.raises(CorruptDataError) as info:
        codec.decode(b"garbage", key="user:1", path="kv/user%3A1~")
    assert "user:1" in str(info.value)
    assert "kv/user%3A1~" in str(info.value)
    assert info.value.key == "user:1"
    assert info.value.path == "kv/user%3A1~"


# -- the cache's form of a value -------------------------------------------------------------


@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=2**62))
def test_cached_form_round_trips(payload: bytes, expires: int) -> None:
    entry = codec.pack_cached(payload, expires)
    assert entry.startswith(codec.CACHED_TAG)
    assert len(entry) == codec.CACHED_OVERHEAD + len(payload)  # never compressed
    assert codec.unpack_cached([entry]) == ([(payload, expires, codec.STRING)], [])
    typed = codec.pack_cached(payload, expires, codec.ZSET)
    assert codec.unpack_cached([typed]) == ([(payload, expires, codec.ZSET)], [])


def test_cached_form_detects_every_damage() -> None:
    payload = b'{"role": "user", "content": "hi"}'
    entry = codec.pack_cached(payload, 1_700_000_000_000)
    damaged = [entry[:i] + bytes([entry[i] ^ 0x01]) + entry[i + 1 :] for i in range(len(entry))]
    damaged += [entry[:-1], entry[: codec.CACHED_OVERHEAD - 1], entry + b"x", b"KVc"]
    damaged += [codec.encode(b"an envelope is not a cache entry"), b"\0" * 40]
    values, bad = codec.unpack_cached([None, b"", entry, *damaged])
    assert values[:3] == [None, None, (payload, 1_700_000_000_000, codec.STRING)]
    assert values[3:] == [None] * len(damaged)
    assert bad == list(range(3, 3 + len(damaged)))


def test_expired_helper_for_cached_values() -> None:
    assert not codec.expired(0, 2**62)
    assert codec.expired(1000, 1000)
    assert not codec.expired(1000, 999)
