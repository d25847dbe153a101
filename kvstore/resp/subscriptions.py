"""The pub/sub commands of ``kvstore serve`` (delivery: :mod:`.pubsub`), registered on
:data:`.session.CONNECTION_COMMANDS`. Replies are Redis's: one ``subscribe`` /
``unsubscribe`` message per channel (a RESP3 push, a RESP2 array), the subscription count
after each."""

from __future__ import annotations

from typing import Any

from ..commands.reply import err
from .protocol import Push
from .session import Connection, Many, connection_command


def _count(c: Connection) -> int:
    return len(c.channels) + len(c.patterns)


def _join(c: Connection, names: list[bytes], pattern: bool) -> Many:
    """SUBSCRIBE / PSUBSCRIBE: one confirmation per name, with the count after it."""
    held = c.patterns if pattern else c.channels
    add = c.server.hub.psubscribe if pattern else c.server.hub.subscribe
    word = b"psubscribe" if pattern else b"subscribe"
    replies = []
    for name in names:
        if name not in held:
            held.add(name)
            add(c, c.namespace, name)
        replies.append(Push([word, name, _count(c)]))
    return Many(replies)


def _leave(c: Connection, names: list[bytes], pattern: bool) -> Many:
    """UNSUBSCRIBE / PUNSUBSCRIBE (no names: all of them)."""
    held = c.patterns if pattern else c.channels
    drop = c.server.hub.punsubscribe if pattern else c.server.hub.unsubscribe
    word = b"punsubscribe" if pattern else b"unsubscribe"
    names = names or sorted(held)
    if not names:
        return Many([Push([word, None, _count(c)])])
    replies = []
    for name in names:
        if name in held:
            held.discard(name)
            drop(c, c.namespace, name)
        replies.append(Push([word, name, _count(c)]))
    return Many(replies)


@connection_command("SUBSCRIBE", -2)
async def _subscribe(c: Connection, args: list[bytes]) -> Any:
    return _join(c, args[1:], pattern=False)


@connection_command("PSUBSCRIBE", -2)
async def _psubscribe(c: Connection, args: list[bytes]) -> Any:
    return _join(c, args[1:], pattern=True)


@connection_command("UNSUBSCRIBE", -1)
async def _unsubscribe(c: Connection, args: list[bytes]) -> Any:
    return _leave(c, args[1:], pattern=False)


@connection_command("PUNSUBSCRIBE", -1)
async def _punsubscribe(c: Connection, args: list[bytes]) -> Any:
    return _leave(c, args[1:], pattern=True)


@connection_command("PUBLISH", 3)
async def _publish(c: Connection, args: list[bytes]) -> Any:
    return c.server.hub.publish(c.namespace, args[1], args[2])


@connection_command("PUBSUB", -2)
async def _pubsub(c: Connection, args: list[bytes]) -> Any:
    sub = args[1].upper()
    hub = c.server.hub
    if sub == b"CHANNELS" and len(args) <= 3:
        return hub.active(c.namespace, args[2] if len(args) == 3 else None)
    if sub == b"NUMSUB":  # a flat array in both protocols, as Redis answers it
        return [x for ch in args[2:] for x in (ch, hub.numsub(c.namespace, ch))]
    if sub == b"NUMPAT" and len(args) == 2:
        return hub.numpat(c.namespace)
    raise err(f"unknown subcommand '{args[1].decode(errors='replace')}'. Try PUBSUB HELP.")
