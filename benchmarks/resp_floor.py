"""The floor of S16: the least a Python RESP server can do per command.

``python -m benchmarks.resp_floor PORT [uvloop]``: an asyncio server (an ``asyncio.Protocol``,
the same event loop and transport ``kvstore serve`` uses) that parses multibulk commands
and answers GET, SET and INCR from a dict, PING and CONFIG trivially - no store, no
cache, no checks. What it costs per request is what any asyncio RESP server in CPython
pays for the loop, the parsing and the socket; ``kvstore serve``'s cost over it is the
price of the command layer, the cache and the store.
"""

from __future__ import annotations

import asyncio
import sys

DATA: dict[bytes, bytes] = {}


def _parse(buf: bytearray, pos: int) -> tuple[list[bytes], int] | None:
    if pos >= len(buf):
        return None
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    count = int(buf[pos + 1 : end])
    pos = end + 2
    args = []
    for _ in range(count):
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None
        start = end + 2
        stop = start + int(buf[pos + 1 : end])
        if stop + 2 > len(buf):
            return None
        args.append(bytes(buf[start:stop]))
        pos = stop + 2
    return args, pos


def _answer(args: list[bytes]) -> bytes:
    name = args[0].upper()
    if name == b"GET":
        value = DATA.get(args[1])
        return b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)
    if name == b"SET":
        DATA[args[1]] = args[2]
        return b"+OK\r\n"
    if name == b"INCR":
        number = int(DATA.get(args[1], b"0")) + 1
        DATA[args[1]] = b"%d" % number
        return b":%d\r\n" % number
    if name == b"PING":
        return b"+PONG\r\n"
    return b"*0\r\n"  # CONFIG GET (redis-benchmark asks) and anything else


class Floor(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        pos, out = 0, []
        while (got := _parse(self.buf, pos)) is not None:
            args, pos = got
            out.append(_answer(args))
        del self.buf[:pos]
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Floor, "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    # ``python -m benchmarks.resp_floor PORT [uvloop]``: on asyncio's loop, or uvloop's
    if sys.argv[2:] == ["uvloop"]:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main(int(sys.argv[1])))
    else:
        asyncio.run(main(int(sys.argv[1])))
