"""Key validation and the object-name encoding: nothing escapes its root (docs/architecture.md,
invariant 7)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import FAST, stable_repr
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import kvstore
from kvstore import keys
from kvstore.errors import InvalidKeyError

FORBIDDEN_CHARS = set("\\\x00*?[]#:")

# Valid keys: non-empty text whose UTF-8 form is at most 1024 bytes (no lone surrogates).
valid_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=400
).filter(lambda s: len(s.encode("utf-8")) <= keys.MAX_KEY_BYTES)
# Keys rich in the characters that matter to paths and escaping.
nasty_text = (
    st.lists(st.sampled_from([*"./\\%~\x00:*?[]#a-_ Zé€🔑", "..", "../"]), min_size=1, max_size=200)
    .map("".join)
    .filter(lambda s: len(s.encode("utf-8")) <= keys.MAX_KEY_BYTES)
)
long_text = st.text(alphabet=st.sampled_from(list("a./%\x00é")), min_size=200, max_size=700).filter(
    lambda s: len(s.encode("utf-8")) <= keys.MAX_KEY_BYTES
)
any_key = st.one_of(valid_text, nasty_text, long_text)
binary_key = any_key.map(lambda s: s.encode("utf-8"))


def assert_confined(name: str) -> None:
    assert not name.startswith("/")
    assert not FORBIDDEN_CHARS & set(name), name
    for segment in name.split("/"):
        assert segment not in ("", ".", ".."), name
        assert not segment.startswith("."), name
        assert len(segment) <= keys.SEGMENT, (len(segment), name)
    assert name.isascii()


@settings(max_examples=300, deadline=None)
@given(any_key)
@example("..")
@example("a" * 1024)
@example("." * 1024)
@example("/" * 1024)
@example("\x00" * 341)
@example("🔑" * 256)
def test_round_trip_text(key: str) -> None:
    name = keys.encode_name(key)
    assert keys.decode_name(name) == key
    assert_confined(name)


@settings(max_examples=200, deadline=None)
@given(binary_key)
def test_round_trip_bytes(key: bytes) -> None:
    name = keys.encode_name(key)
    assert keys.decode_name(name) == key.decode("utf-8")
    assert name == keys.encode_name(key.decode("utf-8"))
    assert_confined(name)


@settings(max_examples=300, deadline=None)
@given(any_key, st.data())
def test_prefix_preserving(key: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(key)))
    prefix = key[:cut]
    assert keys.encode_name(key).startswith(keys.encode_prefix(prefix))


@settings(max_examples=300, deadline=None)
@given(any_key, any_key)
def test_non_prefix_is_not_matched(key: str, other: str) -> None:
    """A listing by prefix finds exactly the keys that start with the prefix."""
    matched = keys.encode_name(key).startswith(keys.encode_prefix(other))
    assert matched == key.startswith(other)


@settings(max_examples=300, deadline=None)
@given(any_key, any_key)
def test_distinct_keys_distinct_names(a: str, b: str) -> None:
    assume(a != b)
    assert keys.encode_name(a) != keys.encode_name(b)
    # and no key's name is a "directory" of another key's file
    na, nb = keys.encode_name(a), keys.encode_name(b)
    assert not nb.startswith(na + "/")
    assert not na.startswith(nb + "/")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([*"%~/.aZ09-+2EF", "%2E", "%00", "é"]), max_size=40).map("".join))
def test_decode_rejects_or_round_trips_any_string(name: str) -> None:
    """decode_name either rejects a foreign name with ValueError or is the exact inverse."""
    try:
        key = keys.decode_name(name)
    except ValueError:
        return
    assert keys.encode_name(key) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "abc",  # no terminator
        "a~b~",
        "%zz~",
        "%4~",
        "%+1~",
        "% 1~",
        "%41~",  # non-canonical: "A" must be literal
        "a%2E~",  # non-canonical: a dot after the first character is literal
        ".a~",  # a leading dot is always escaped
        "a b~",
        "a/b~",  # a slash only appears at segment boundaries
        "ключ~",
        "a" * 240 + "/" + "a" * 240 + "/" + "a" * 240 + "/" + "a" * 240 + "/" + "a" * 65 + "~",
    ],
)
def test_decode_rejects_foreign_names(name: str) -> None:
    with pytest.raises(ValueError):
        keys.decode_name(name)


@pytest.mark.parametrize(
    "key",
    [
        "..",
        ".",
        "../../etc/passwd",
        "/abs",
        "a\\b",
        "\x00",
        "ключ",
        "🔑",
        "a" * 1024,
        "é" * 512,
        "~",
        "%2E",
        "a/../b",
        "C:\\Windows",
        "*?[]#:",
        " ",
        "\n",
    ],
)
def test_examples_round_trip_and_confined(key: str) -> None:
    name = keys.encode_name(key)
    assert keys.decode_name(name) == key
    assert_confined(name)
    assert keys.key_str(key) == key
    assert keys.key_bytes(key) == key.encode("utf-8")


def test_length_limit() -> None:
    assert keys.key_bytes("a" * 1024) == b"a" * 1024
    assert keys.key_bytes(b"a" * 1024) == b"a" * 1024
    for too_long in ("a" * 1025, "é" * 513, b"a" * 1025):
        with pytest.raises(InvalidKeyError, match="1024") as info:
            keys.encode_name(too_long)
        assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "bad",
    [None, 5, 1.5, object(), ["a"], "\ud800", "a\udbffb"],
    ids=stable_repr,
)
def test_invalid_keys(bad: object) -> None:
    with pytest.raises(InvalidKeyError) as info:
        keys.encode_name(bad)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, kvstore.KVStoreError)
    assert str(info.value)  # says what is wrong


def test_bytes_like_keys() -> None:
    assert keys.key_str(bytearray(b"k")) == "k"
    assert keys.key_str(memoryview(b"k")) == "k"


def test_prefix_encoding() -> None:
    assert keys.encode_prefix("") == ""
    assert keys.encode_prefix(b"") == ""
    with pytest.raises(InvalidKeyError):
        keys.encode_prefix(None)
    with pytest.raises(InvalidKeyError):
        keys.encode_prefix("a" * 1025)


# -- end to end: the encoding keeps objects inside the store's root ------------------------

ESCAPE_KEYS = [
    "../../x",
    "../x",
    "..",
    ".",
    "/abs",
    "/../../../../tmp/evil",
    "a/../../b",
    "a\\..\\..\\b",
    "\x00",
    "a\x00/..",
    "~",
    ".kvstore/tmp/x",
    "%2E%2E/x",
    "ns/other~/kv/x~",
    "x" * 1024,
    "/" * 1024,
    "." * 1024,
]


def _files_under(top: Path) -> list[Path]:
    out = []
    for dirpath, _dirs, files in os.walk(top):
        out.extend(Path(dirpath, f) for f in files)
    return out


def test_local_store_never_escapes_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    sibling = tmp_path / "sibling"
    sibling.mkdir()
    (sibling / "x").write_bytes(b"keep")
    with kvstore.open(str(root), cache=None) as store:
        ns = store.namespace("../../ns")
        for i, key in enumerate(ESCAPE_KEYS):
            assert store.set(key, f"v{i}")
            assert ns.set(key, f"n{i}")
        for i, key in enumerate(ESCAPE_KEYS):
            assert store.get(key) == f"v{i}".encode()
            assert ns.get(key) == f"n{i}".encode()
        assert sorted(store.keys()) == sorted(ESCAPE_KEYS)
        assert sorted(ns.keys()) == sorted(ESCAPE_KEYS)
    everything = _files_under(tmp_path)
    resolved_root = root.resolve()
    inside = [p for p in everything if p.resolve().is_relative_to(resolved_root)]
    outside = [p for p in everything if p not in inside]
    assert outside == [sibling / "x"]
    assert (sibling / "x").read_bytes() == b"keep"
    data_files = [p for p in inside if ".kvstore" not in p.relative_to(root).parts]
    assert len(data_files) == 2 * len(ESCAPE_KEYS)
    for p in data_files:
        rel = p.relative_to(root)
        assert rel.parts[0] in ("kv", "ns")
        assert all(len(part) <= keys.SEGMENT for part in rel.parts)
        assert not p.is_symlink()


@pytest.mark.parametrize("backend", FAST)
def test_namespaces_are_confined(backend: str, make_target) -> None:  # type: ignore[no-untyped-def]
    with make_target(backend).open() as store:
        a = store.namespace("a")
        b = store.namespace("b")
        nested = a.namespace("b")
        tricky = store.namespace("a~/kv/")  # looks like a's area once encoded naively
        assert a.set("k", "in a")
        assert b.set("k", "in b")
        assert nested.set("k", "in a/b")
        assert tricky.set("k", "tricky")
        assert store.get("k") is None
        assert store.set("k", "root")
        assert [ns.get("k") for ns in (store, a, b, nested, tricky)] == [
            b"root",
            b"in a",
            b"in b",
            b"in a/b",
            b"tricky",
        ]
        # keys that look like paths into another namespace stay inside their own
        assert store.get("../ns/a~/kv/k~") is None
        assert a.get("../b/k") is None
        assert a.get("../../kv/k") is None
        for view in (store, a, b, nested, tricky):
            assert view.keys() == ["k"]
        assert a.delete("k") == 1
        assert [ns.get("k") for ns in (store, b, nested, tricky)] == [
            b"root",
            b"in b",
            b"in a/b",
            b"tricky",
        ]


@pytest.mark.parametrize(
    "key", [b"", "", b"\xff\xfe", b"a\x80", b"\x00", "a\udcffb"], ids=stable_repr
)
def test_keys_are_binary_safe_and_may_be_empty(key: object) -> None:
    """As in Redis: any bytes; a non-UTF-8 key is a str by surrogateescape (exact round
    trip), and the empty key's name is the terminator alone."""
    raw = keys.key_bytes(key)
    name = keys.encode_name(key)
    assert keys.decode_name(name) == raw.decode("utf-8", "surrogateescape")
    assert keys.key_bytes(keys.decode_name(name)) == raw
    assert name == keys.encode_name(raw)


def test_names_stay_text() -> None:
    for bad in (b"", b"\xff"):
        with pytest.raises(InvalidKeyError):
            keys.key_bytes(bad, "namespace")
