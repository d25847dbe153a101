"""What the saver's objects hold, and the checks on what callers pass (pure, no I/O).

Each object is one kvstore value whose payload is a small msgpack structure around the
saver's ``serde`` output (``serde.dumps_typed``: a type tag and bytes). kvstore's envelope
compresses payloads with zstd where that pays and checksums them; nothing here compresses
again.

* checkpoint: ``{"v": 1, "c": [type, bytes], "m": [type, bytes], "p": parent id | None,
  "h": {channel: version field}, "r": run id | None}`` - the checkpoint without its
  ``channel_values``, the metadata, the parent, and which channels have a value stored
  (``h``: the blob of each, by version); ``r`` lets delete_for_runs skip the metadata.
* blob: ``[type, bytes]`` - one channel's value at one version.
* write: ``[task_id, channel, type, bytes, task_path]`` - its index is in its key.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

import msgpack
from langchain_core.runnables import RunnableConfig

from . import keys

FORMAT = 1


class Where(NamedTuple):
    """What a config addresses: a thread, a checkpoint namespace, perhaps a checkpoint."""

    thread_id: str
    ns: str
    checkpoint_id: str | None


def thread_id_of(value: Any, what: str = "thread_id") -> str:
    """A thread id as stored: a str; an int or a UUID is taken as its str() (as LangGraph's
    SQL savers do)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, uuid.UUID)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"{what} must be a str (or an int or UUID), not {type(value).__name__}")


def where(config: Any, *, need_thread: bool = True) -> Where:
    """Parse a RunnableConfig: ``config["configurable"]`` with ``thread_id`` (required),
    ``checkpoint_ns`` (default "") and ``checkpoint_id`` (optional)."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a RunnableConfig (a dict), not {type(config).__name__}")
    configurable = config.get("configurable")
    if not isinstance(configurable, Mapping):
        raise ValueError(
            "config has no 'configurable' dict: pass "
            "{'configurable': {'thread_id': ...}} (LangGraph's RunnableConfig)"
        )
    if configurable.get("thread_id") is None:
        if need_thread:
            raise ValueError(
                "config['configurable'] has no 'thread_id': a checkpointer needs one "
                "(graph.invoke(..., {'configurable': {'thread_id': 'my-thread'}}))"
            )
        thread_id = ""
    else:
        thread_id = thread_id_of(configurable["thread_id"])
    ns = configurable.get("checkpoint_ns") or ""
    if not isinstance(ns, str):
        raise TypeError(f"checkpoint_ns must be a str, not {type(ns).__name__}")
    checkpoint_id = configurable.get("checkpoint_id") or None
    if checkpoint_id is not None and not isinstance(checkpoint_id, str):
        raise TypeError(f"checkpoint_id must be a str, not {type(checkpoint_id).__name__}")
    return Where(thread_id, ns, checkpoint_id)


def config_of(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def check_checkpoint_id(checkpoint_id: Any) -> str:
    if not isinstance(checkpoint_id, str) or not keys.is_checkpoint_id(checkpoint_id):
        raise ValueError(
            f"checkpoint['id'] must be a uuid string as LangGraph makes them "
            f"(uuid6, lowercase), not {checkpoint_id!r}"
        )
    return checkpoint_id


def typed(pair: Any) -> tuple[str, bytes]:
    type_, data = pair
    return str(type_), bytes(data)


class Stored(NamedTuple):
    """A checkpoint object, decoded down to the serde level."""

    checkpoint: tuple[str, bytes]
    metadata: tuple[str, bytes]
    parent_id: str | None
    has: dict[str, str]  # channel -> version field of its stored value
    run_id: str | None


def pack_checkpoint(stored: Stored) -> bytes:
    packed: bytes = msgpack.packb(
        {
            "v": FORMAT,
            "c": list(stored.checkpoint),
            "m": list(stored.metadata),
            "p": stored.parent_id,
            "h": stored.has,
            "r": stored.run_id,
        },
        use_bin_type=True,
    )
    return packed


def unpack_checkpoint(data: bytes, key: str) -> Stored:
    try:
        obj = msgpack.unpackb(data, raw=False)
        if not isinstance(obj, dict) or obj.get("v") != FORMAT:
            raise ValueError("not a checkpoint record of format 1")
        return Stored(typed(obj["c"]), typed(obj["m"]), obj["p"], dict(obj["h"]), obj.get("r"))
    except Exception as exc:  # damage or a foreign value: say which key
        raise ValueError(f"{key!r} does not hold a LangGraph checkpoint record: {exc}") from exc


def pack_blob(value: tuple[str, bytes]) -> bytes:
    packed: bytes = msgpack.packb(list(value), use_bin_type=True)
    return packed


def unpack_blob(data: bytes) -> tuple[str, bytes]:
    return typed(msgpack.unpackb(data, raw=False))


class Write(NamedTuple):
    task_id: str
    channel: str
    value: tuple[str, bytes]
    task_path: str
    idx: int


def pack_write(write: Write) -> bytes:
    packed: bytes = msgpack.packb(
        [write.task_id, write.channel, write.value[0], write.value[1], write.task_path],
        use_bin_type=True,
    )
    return packed


def unpack_write(data: bytes, idx: int) -> Write:
    task_id, channel, type_, value, task_path = msgpack.unpackb(data, raw=False)
    return Write(task_id, channel, (type_, bytes(value)), task_path, idx)


def write_order(write: Write) -> tuple[str, str, int]:
    """LangGraph's ``writes_sort_key``: (task_path, task_id, idx)."""
    return (write.task_path, write.task_id, write.idx)
