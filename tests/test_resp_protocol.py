"""RESP reading and writing (kvstore.resp.protocol), checked against hiredis - the parser
redis-py uses - as an independent reader of what the server writes."""

from __future__ import annotations

import random

import hiredis
import pytest

from kvstore.commands.reply import OK, CommandError, Status
from kvstore.resp.protocol import (
    NULL_ARRAY,
    CommandReader,
    Double,
    Limits,
    Map,
    ProtocolError,
    Push,
    SetReply,
    Verbatim,
    encode,
    encode_many,
    split_args,
)


def multibulk(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def read_all(reader: CommandReader, authenticated: bool = True) -> list[list[bytes]]:
    commands = []
    while (command := reader.next(authenticated)) is not None:
        commands.append(command)
    return commands


# --------------------------------------------------------------------------- reading
def test_pipelined_commands_come_out_in_order_however_the_bytes_are_cut() -> None:
    stream = b"".join(
        [
            multibulk(b"SET", b"k", b"v\r\n\x00binary"),
            multibulk(b"GET", b"k"),
            b"PING\r\n",
            b"\r\n",  # an empty inline line: nothing
            multibulk(b"MSET", b"", b"", b"a" * 300, b"b"),
            b"SET \"quoted key\" 'single'\n",
        ]
    )
    expected = [
        [b"SET", b"k", b"v\r\n\x00binary"],
        [b"GET", b"k"],
        [b"PING"],
        [b"MSET", b"", b"", b"a" * 300, b"b"],
        [b"SET", b"quoted key", b"single"],
    ]
    whole = CommandReader()
    whole.feed(stream)
    assert read_all(whole) == expected
    for step in (1, 2, 3, 7, 64):
        reader = CommandReader()
        got: list[list[bytes]] = []
        for at in range(0, len(stream), step):
            reader.feed(stream[at : at + step])
            got += read_all(reader)
        assert got == expected, step
        assert reader.buffered == 0


def test_inline_arguments_split_as_redis_splits_them() -> None:
    assert split_args(b"  set  a   b ") == [b"set", b"a", b"b"]
    assert split_args(b'set "a b" "\\x41\\n\\"" \'it\\\'s\'') == [b"set", b"a b", b'A\n"', b"it's"]
    assert split_args(b'"\\q"') == [b"q"]
    assert split_args(b"") == []
    assert split_args(b'"open') is None
    assert split_args(b"'open") is None
    assert split_args(b'"closed"x') is None  # a closing quote must end the argument


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"*2\r\n:1\r\n", "expected '$', got ':'"),
        (b"*x\r\n", "invalid multibulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$abc\r\n", "invalid bulk length"),
        (b"*1\r\n$3\r\nabcde\r\n", "bulk not followed by CRLF"),
        (b"*1\r\n$" + b"9" * 40, "invalid bulk length"),
        (b'GET "unbalanced\r\n', "unbalanced quotes"),
    ],
)
def test_a_malformed_command_is_a_protocol_error_in_redis_words(
    stream: bytes, message: str
) -> None:
    reader = CommandReader()
    reader.feed(multibulk(b"PING") + stream)
    assert reader.next() == [b"PING"]  # what came before the error stands
    with pytest.raises(ProtocolError) as raised:
        read_all(reader)
    assert str(raised.value) == f"Protocol error: {message}" or message in str(raised.value)


def test_lengths_are_refused_at_their_header_before_anything_is_kept() -> None:
    limits = Limits(max_bulk=1000, max_args=5, max_inline=100)
    reader = CommandReader(limits)
    reader.feed(b"*1\r\n$1001\r\n")  # no data follows: refused on the header alone
    with pytest.raises(ProtocolError, match="invalid bulk length"):
        reader.next()
    reader = CommandReader(limits)
    reader.feed(b"*6\r\n")
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        reader.next()
    reader = CommandReader(limits)
    reader.feed(b"x" * 101)
    with pytest.raises(ProtocolError, match="too big inline request"):
        reader.next()
    reader = CommandReader(Limits(max_pending=2000))
    reader.feed(
        b"*3\r\n$1000\r\n" + b"a" * 1000 + b"\r\n$1000\r\n" + b"b" * 1000 + b"\r\n$1000\r\n"
    )
    with pytest.raises(ProtocolError, match="larger than the query buffer"):
        reader.next()


def test_a_connection_that_has_not_authenticated_gets_redis_tighter_limits() -> None:
    reader = CommandReader()
    reader.feed(multibulk(*[b"x"] * 11))
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        reader.next(authenticated=False)
    reader = CommandReader()
    reader.feed(b"*2\r\n$4\r\nAUTH\r\n$16385\r\n")
    with pytest.raises(ProtocolError, match="invalid bulk length"):
        reader.next(authenticated=False)
    reader = CommandReader()
    reader.feed(multibulk(b"AUTH", b"x" * 16384))
    assert reader.next(authenticated=False) == [b"AUTH", b"x" * 16384]


def test_random_bytes_give_commands_or_a_protocol_error_never_anything_else() -> None:
    rng = random.Random(20261130)
    alphabet = b"*$:+-\r\n0123456789 \"'\\xabcGETSET\x00\xff"
    for _ in range(3000):
        reader = CommandReader(Limits(max_bulk=4096, max_args=64, max_inline=256))
        size = rng.randrange(1, 200)
        if rng.random() < 0.5:
            data = bytes(rng.choice(alphabet) for _ in range(size))
        else:
            data = bytes(rng.randrange(256) for _ in range(size))
        try:
            for at in range(0, len(data), rng.randrange(1, 16)):
                reader.feed(data[at : at + 16])
                for command in read_all(reader):
                    assert command and all(type(a) is bytes for a in command)
        except ProtocolError:
            pass


# --------------------------------------------------------------------------- writing
def hiredis_read(data: bytes, resp3: bool) -> list[object]:
    reader = hiredis.Reader(notEnoughData=Ellipsis)
    reader.feed(data)
    out = []
    while (item := reader.gets()) is not Ellipsis:
        out.append(item)
    return out


def test_replies_read_back_with_hiredis_in_both_protocols() -> None:
    replies = [
        OK,
        b"bulk \r\n with CRLF",
        b"",
        42,
        -7,
        None,
        [b"a", 1, None, [OK]],
        [],
    ]
    for protocol in (2, 3):
        got = hiredis_read(encode_many(replies, protocol), protocol == 3)
        assert got == [
            b"OK",
            b"bulk \r\n with CRLF",
            b"",
            42,
            -7,
            None,
            [b"a", 1, None, [b"OK"]],
            [],
        ]


def test_resp3_shapes_and_their_resp2_forms() -> None:
    pairs = Map([(b"f1", b"v1"), (b"f2", 2)])
    assert hiredis_read(encode(pairs, 3), True) == [{b"f1": b"v1", b"f2": 2}]
    assert hiredis_read(encode(pairs, 2), False) == [[b"f1", b"v1", b"f2", 2]]
    members = SetReply([b"a", b"b"])
    assert encode(members, 3) == b"~2\r\n$1\r\na\r\n$1\r\nb\r\n"
    assert encode(members, 2) == b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    assert encode(Double(1.5), 3) == b",1.5\r\n"
    assert encode(Double(3.0), 2) == b"$1\r\n3\r\n"
    assert encode(Double(float("inf")), 3) == b",inf\r\n"
    assert hiredis_read(encode(Double(2.25), 3), True) == [2.25]
    assert encode(Push([b"message", b"ch", b"hi"]), 3).startswith(b">3\r\n")
    assert encode(Push([b"message", b"ch", b"hi"]), 2).startswith(b"*3\r\n")
    assert encode(Verbatim(b"# Server"), 3) == b"=12\r\ntxt:# Server\r\n"
    assert encode(Verbatim(b"# Server"), 2) == b"$8\r\n# Server\r\n"
    assert encode(True, 3) == b"#t\r\n" and encode(True, 2) == b":1\r\n"
    assert encode(None, 3) == b"_\r\n" and encode(None, 2) == b"$-1\r\n"
    assert encode(NULL_ARRAY, 2) == b"*-1\r\n" and encode(NULL_ARRAY, 3) == b"_\r\n"


def test_an_error_is_one_line_whatever_its_message() -> None:
    data = encode(CommandError("ERR bad\r\nthing\nhere"), 2)
    assert data == b"-ERR bad  thing here\r\n"
    (error,) = hiredis_read(data, False)
    assert isinstance(error, hiredis.ReplyError) and str(error) == "ERR bad  thing here"
    assert encode(Status(b"odd\r\nstatus"), 2) == b"+odd  status\r\n"


def test_what_is_not_a_reply_is_refused() -> None:
    with pytest.raises(TypeError, match="not a reply: object"):
        encode(object())
