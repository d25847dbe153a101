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


@connection_command("SUBSCRIBE", -2)
async def _subscribe(c: Connection, args: list[bytes]) -> Any:
    replies = []
    for channel in args[1:]:
        if channel not in c.channels:
            c.channels.add(channel)
            c.server.hub.subscribe(c, c.namespace, channel)
        replies.append(Push([b"subscribe", channel, _count(c)]))
    return Many(replies)


@connection_command("PSUBSCRIBE", -2)
async def _psubscribe(c: Connection, args: list[bytes]) -> Any:
    replies = []
    for pattern in args[1:]:
        if pattern not in c.patterns:
            c.patterns.add(pattern)
            c.server.hub.psubscribe(c, c.namespace, pattern)
        replies.append(Push([b"psubscribe", pattern, _count(c)]))
    return Many(replies)


@connection_command("UNSUBSCRIBE", -1)
async def _unsubscribe(c: Connection, args: list[bytes]) -> Any:
    channels = args[1:] or sorted(c.channels)
    if not channels:
        return Many([Push([b"unsubscribe", None, _count(c)])])
    replies = []
    for channel in channels:
        if channel in c.channels:
            c.channels.discard(channel)
            c.server.hub.unsubscribe(c, c.namespace, channel)
        replies.append(Push([b"unsubscribe", channel, _count(c)]))
    return Many(replies)


@connection_command("PUNSUBSCRIBE", -1)
async def _punsubscribe(c: Connection, args: list[bytes]) -> Any:
    patterns = args[1:] or sorted(c.patterns)
    if not patterns:
        return Many([Push([b"punsubscribe", None, _count(c)])])
    replies = []
    for pattern in patterns:
        if pattern in c.patterns:
            c.patterns.discard(pattern)
            c.server.hub.punsubscribe(c, c.namespace, pattern)
        replies.append(Push([b"punsubscribe", pattern, _count(c)]))
    return Many(replies)


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
