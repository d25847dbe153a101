"""The saver's kvstore keys: built and parsed here, nowhere else (pure, no I/O).

Every name a caller chooses (thread id, checkpoint namespace, channel, task id, run id) is
one ``/``-free *field*: ``%`` becomes ``%25`` and ``/`` becomes ``%2F`` (:func:`field`), so
``/`` separates fields unambiguously and the prefix of one thread (``.../t/a/``) never
matches another's (``a/b`` is ``.../t/a%2Fb/``, ``a%`` is ``.../t/a%25/``). kvstore then
encodes the whole key for the object store (:mod:`kvstore.keys`): any character is safe.

Checkpoint ids are uuid6 strings (what LangGraph makes: time-ordered, lowercase, 36
characters). A checkpoint's key holds the id *inverted* - each hex digit ``d`` replaced by
``f - d`` (:func:`inverted`) - so an ascending listing, the only order S3 and GCS list in,
yields a namespace's checkpoints newest first: the latest is the first key listed.
"""

from __future__ import annotations

import re
from typing import NamedTuple

ROOT = "langgraph/"
THREADS = ROOT + "t/"
RUNS = ROOT + "r/"

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_ESCAPED = re.compile("%(25|2F)")
_INVERT = str.maketrans("0123456789abcdef", "fedcba9876543210")


def field(name: str) -> str:
    """``name`` as one key field: ``%`` and ``/`` escaped (reversible by :func:`unfield`)."""
    if not isinstance(name, str):
        raise TypeError(f"a thread id, namespace, channel or task id is a str, not {name!r}")
    return name.replace("%", "%25").replace("/", "%2F")


def unfield(text: str) -> str:
    return _ESCAPED.sub(lambda m: "/" if m.group(1) == "2F" else "%", text)


def is_checkpoint_id(text: str) -> bool:
    """Is ``text`` a canonical uuid string (the only checkpoint ids this saver stores)?"""
    return _UUID.match(text) is not None


def inverted(checkpoint_id: str) -> str:
    """The id with each hex digit complemented: sorts in the reverse order (an involution)."""
    return checkpoint_id.translate(_INVERT)


def version_field(version: str | int | float) -> str:
    """A channel version as a key field; the type is kept (``i3``, ``f1.5``, ``s...``)."""
    if isinstance(version, bool):
        raise TypeError(f"a channel version is a str, int or float, not {version!r}")
    if isinstance(version, int):
        return f"i{version}"
    if isinstance(version, float):
        return f"f{version!r}"
    if isinstance(version, str):
        return "s" + field(version)
    raise TypeError(f"a channel version is a str, int or float, not {type(version).__name__}")


def parse_version(text: str) -> str | int | float:
    kind, rest = text[:1], text[1:]
    if kind == "i":
        return int(rest)
    if kind == "f":
        return float(rest)
    return unfield(rest)


def thread(thread_id: str) -> str:
    """The prefix of everything a thread holds (checkpoints, writes, blobs, run notes)."""
    return f"{THREADS}{field(thread_id)}/"


def checkpoints(thread_id: str, ns: str | None = None) -> str:
    """The prefix of a thread's checkpoints and writes: all namespaces, or ``ns``'s."""
    base = f"{thread(thread_id)}c/"
    return base if ns is None else f"{base}{field(ns)}/"


def checkpoint(thread_id: str, ns: str, checkpoint_id: str) -> str:
    return f"{checkpoints(thread_id, ns)}{inverted(checkpoint_id)}"


def write(thread_id: str, ns: str, checkpoint_id: str, task_id: str, idx: int) -> str:
    return f"{checkpoint(thread_id, ns, checkpoint_id)}/{field(task_id)}/{idx}"


def blobs(thread_id: str, ns: str | None = None) -> str:
    base = f"{thread(thread_id)}b/"
    return base if ns is None else f"{base}{field(ns)}/"


def blob(thread_id: str, ns: str, channel: str, version_key: str) -> str:
    return f"{blobs(thread_id, ns)}{field(channel)}/{version_key}"


def run_note(thread_id: str, run_id: str) -> str:
    """In the thread: "run ``run_id`` wrote here" (so deleting the thread finds its index)."""
    return f"{thread(thread_id)}r/{field(run_id)}"


def runs(run_id: str) -> str:
    return f"{RUNS}{field(run_id)}/"


def run_index(run_id: str, thread_id: str) -> str:
    """Across threads: "run ``run_id`` wrote in ``thread_id``" (for delete_for_runs)."""
    return f"{runs(run_id)}{field(thread_id)}"


class Listed(NamedTuple):
    """A key listed under :data:`THREADS`, parsed. ``kind``: ``c`` checkpoint, ``w`` write,
    ``b`` blob, ``r`` run note; fields that do not apply are ""."""

    kind: str
    thread_id: str
    ns: str
    checkpoint_id: str
    rest: str  # a write's "task/idx", a blob's "channel/version", a run note's run id


def parse(key: str) -> Listed | None:
    """Parse a key of the saver's thread area; None for anything else (not ours)."""
    if not key.startswith(THREADS):
        return None
    parts = key[len(THREADS) :].split("/")
    if len(parts) < 3:
        return None
    thread_id, kind = unfield(parts[0]), parts[1]
    if kind == "c" and len(parts) in (4, 6):
        inv = parts[3]
        if not is_checkpoint_id(inv):
            return None
        ns = unfield(parts[2])
        if len(parts) == 4:
            return Listed("c", thread_id, ns, inverted(inv), "")
        return Listed("w", thread_id, ns, inverted(inv), f"{parts[4]}/{parts[5]}")
    if kind == "b" and len(parts) == 5:
        return Listed("b", thread_id, unfield(parts[2]), "", f"{parts[3]}/{parts[4]}")
    if kind == "r" and len(parts) == 3:
        return Listed("r", thread_id, "", "", unfield(parts[2]))
    return None


def run_indexed_thread(key: str, run_id: str) -> str | None:
    """The thread id of a key listed under :func:`runs` (``run_id``'s), else None."""
    prefix = runs(run_id)
    if not key.startswith(prefix) or "/" in key[len(prefix) :]:
        return None
    return unfield(key[len(prefix) :])
