"""The envelope codec: round trips, when it compresses, and a decoder that only ever raises
CorruptDataError on bad input (docs/architecture.md, invariant 6)."""

from __future__ import annotations

import contextlib
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
    meta_crc=st.booleans(),
)
def test_round_trip_property(
    payload: bytes, expires: int, meta: dict, compress: bool | None, meta_crc: bool
) -> None:
    data = codec.encode(
        payload, expires_at_ms=expires, meta=meta, compress=compress, meta_crc=meta_crc
    )
    env = codec.decode(data)
    assert env.payload == payload
    assert env.expires_at_ms == expires
    assert env.meta == meta
    assert codec.peek_expiry(data) == expires
    assert bool(flags_of(data) & codec.FLAG_META_CRC) == meta_crc
    if meta_crc:
        span = codec.meta_span(data)
        assert codec.peek_meta(data) == meta
        assert codec.peek_meta(data[:span]) == meta
        assert codec.peek_meta(data[: span - 1]) is None
    else:
        with pytest.raises(codec.NoMetaChecksum):
            codec.peek_meta(data)


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
    "meta_crc": codec.encode(b"payload!", meta={"a": 1, "b": [1, 2]}, meta_crc=True),
    "meta_crc_zstd": codec.encode(text_payload(600), meta={"@": "art/x~/0"}, meta_crc=True),
    "meta_crc_empty": codec.encode(b"", meta_crc=True),
}


def test_samples_are_what_they_claim() -> None:
    assert flags_of(SAMPLES["zstd"]) & codec.FLAG_ZSTD
    assert flags_of(SAMPLES["raw"]) == 0
    assert flags_of(SAMPLES["meta_crc"]) == codec.FLAG_META_CRC
    assert flags_of(SAMPLES["meta_crc_zstd"]) == codec.FLAG_META_CRC | codec.FLAG_ZSTD


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


# -- the meta's own checksum (FLAG_META_CRC) and peek_meta ------------------------------------

META = {"f": 1, "mime": "text/plain", "user": {"k": "v" * 50}, "@": "art/doc~/0"}
# An object as kvstore wrote it before FLAG_META_CRC existed (encode(b"payload!",
# meta={"a": 1, "b": [1, 2]}, nonce=42, bind="art/x~/0") by that version): still decoded.
OLD_OBJECT = bytes.fromhex(
    "4b56531e0100000000000000000000002a00000000000000140000004b1db08d83a16101a162920102a140"
    "a86172742f787e2f307061796c6f616421a15e6f2d"
)


def _meta_crc_object(payload: bytes = b"payload" * 100) -> bytes:
    return codec.encode(payload, meta=META, meta_crc=True)


def test_old_objects_decode_as_before_and_are_written_the_same_without_the_flag() -> None:
    env = codec.decode(OLD_OBJECT, bound="art/x~/0")
    assert (env.payload, env.meta, env.nonce) == (
        b"payload!",
        {"a": 1, "b": [1, 2], "@": "art/x~/0"},
        42,
    )
    again = codec.encode(b"payload!", meta={"a": 1, "b": [1, 2]}, nonce=42, bind="art/x~/0")
    assert again == OLD_OBJECT  # meta_crc=False: byte for byte the old format
    for peek in (codec.peek_meta, codec.meta_span):
        with pytest.raises(codec.NoMetaChecksum) as info:
            peek(OLD_OBJECT, key="x", path="art/x~/0")
        assert isinstance(info.value, CorruptDataError)
        assert info.value.path == "art/x~/0"


def test_meta_crc_layout() -> None:
    payload = random.Random(SEED).randbytes(1000)  # stored raw
    data = codec.encode(payload, meta=META, meta_crc=True)
    meta_len = struct.unpack_from("<I", data, 24)[0]
    span = codec.meta_span(data)
    assert span == codec.HEADER_SIZE + meta_len + 4
    assert len(data) == span + len(payload) + 4
    meta_bytes = data[codec.HEADER_SIZE : span - 4]
    assert data[span - 4 : span] == struct.pack("<I", zlib.crc32(meta_bytes))
    assert data[span : span + len(payload)] == payload
    assert data[-4:] == struct.pack("<I", zlib.crc32(data[codec.HEADER_SIZE : -4]))
    assert len(codec.encode(payload, meta=META)) == len(data) - 4


@pytest.mark.parametrize("payload", [b"", b"small", text_payload(20_000)])
def test_peek_meta_reads_the_meta_from_the_first_bytes(payload: bytes) -> None:
    data = _meta_crc_object(payload)
    span = codec.meta_span(data)
    assert codec.decode(data).meta == META
    assert codec.decode(data).payload == payload
    for head in (data, data[:span], data[: span + 1]):
        assert codec.peek_meta(head, bound="art/doc~/0") == META
    for length in range(span):  # too short: the caller reads more
        assert codec.peek_meta(data[:length]) is None
    for length in range(codec.HEADER_SIZE, span):
        assert codec.meta_span(data[:length]) == span
    with pytest.raises(CorruptDataError):
        codec.meta_span(data[: codec.HEADER_SIZE - 1])


def test_peek_meta_checks_the_binding() -> None:
    data = _meta_crc_object()
    with pytest.raises(CorruptDataError, match="misplaced") as info:
        codec.peek_meta(data, key="doc", path="s3://b/art/doc~/1", bound="art/doc~/1")
    assert not isinstance(info.value, codec.NoMetaChecksum)
    assert "art/doc~/0" in str(info.value) and "s3://b/art/doc~/1" in str(info.value)
    unbound = codec.encode(b"x", meta={"k": 1}, meta_crc=True)
    assert codec.peek_meta(unbound, bound="anything") == {"k": 1}  # written before bindings


def test_every_bit_flip_in_header_meta_or_meta_crc_is_caught_by_peek_meta() -> None:
    data = _meta_crc_object()
    span = codec.meta_span(data)
    for pos in range(span):
        for bit in range(8):
            mutated = bytearray(data)
            mutated[pos] ^= 1 << bit
            with pytest.raises(CorruptDataError) as info:
                codec.peek_meta(bytes(mutated), bound="art/doc~/0")
            assert not isinstance(info.value, codec.NoMetaChecksum)  # the flag is checked
            decode_must_fail(bytes(mutated))


def test_a_flip_in_the_payload_is_not_peek_metas_business_but_decodes() -> None:
    data = _meta_crc_object()
    span = codec.meta_span(data)
    for pos in range(span, len(data)):
        mutated = bytearray(data)
        mutated[pos] ^= 0x04
        assert codec.peek_meta(bytes(mutated)) == META
        decode_must_fail(bytes(mutated))


def test_decode_checks_the_meta_crc_even_when_the_body_crc_agrees() -> None:
    """A writer's bug (or a forgery) that left the meta CRC wrong and the body CRC right."""
    data = bytearray(_meta_crc_object())
    span = codec.meta_span(bytes(data))
    data[span - 1] ^= 0x01
    data[-4:] = struct.pack("<I", zlib.crc32(data[codec.HEADER_SIZE : -4]))
    exc = decode_must_fail(bytes(data))
    assert "metadata checksum" in str(exc)
    with pytest.raises(CorruptDataError, match="metadata checksum"):
        codec.peek_meta(bytes(data))


@pytest.mark.parametrize(
    ("body", "meta_len"),
    [
        (b"", 0),  # the flag, but no room for the meta CRC
        (b"\x80\x00\x00", 1),  # empty map, meta CRC cut short
        (b"\x80" + struct.pack("<I", zlib.crc32(b"\x80")), 1),  # body has nothing left
        (b"\xc1" + struct.pack("<I", zlib.crc32(b"\xc1")) + b"x", 1),  # bad msgpack, CRC right
        (b"\x93\x01\x02\x03" + struct.pack("<I", zlib.crc32(b"\x93\x01\x02\x03")), 4),
    ],
)
def test_forged_meta_crc_envelopes_are_rejected(body: bytes, meta_len: int) -> None:
    forged = _forge(body, flags=codec.FLAG_META_CRC, meta_len=meta_len)
    env = decode_safely(forged)
    assert env is None or (env.payload == b"" and env.meta == {})
    with contextlib.suppress(CorruptDataError):  # a dict, None or CorruptDataError only
        codec.peek_meta(forged)


def test_rebind_and_with_expiry_keep_the_meta_crc() -> None:
    data = codec.encode(text_payload(5000), meta=META, meta_crc=True)
    moved = codec.rebind(data, "art/doc~/7")
    assert flags_of(moved) == flags_of(data)
    assert codec.peek_meta(moved, bound="art/doc~/7") == {**META, "@": "art/doc~/7"}
    assert codec.decode(moved, bound="art/doc~/7").payload == text_payload(5000)
    aged = codec.with_expiry(moved, 99)
    assert codec.peek_meta(aged) == codec.decode(aged).meta
    assert codec.decode(aged).expires_at_ms == 99


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_hypothesis_garbage_peek_meta(data: bytes) -> None:
    with contextlib.suppress(CorruptDataError):  # never another exception
        codec.peek_meta(data, bound="art/doc~/0")


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
