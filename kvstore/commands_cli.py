"""What the ``kvstore`` store commands do, and how a command opens its store.

A store command is a small function from (store, arguments) to a :class:`Reply`;
:func:`_store_command` makes it a runner that opens the store from the global options
(:func:`_open`), runs it and writes its reply. The command table, the parser and the
dispatch are in :mod:`kvstore.cli`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import KeyRing, KVStore
from . import open as open_store
from .cache import REDIS_SCHEMES
from .errors import ConfigurationError

PROG = "kvstore"
NIL = b"(nil)"

Output = IO[bytes]


# -- what a store command returns ------------------------------------------------------------


@dataclass
class Reply:
    """What a command prints: ``lines`` on stdout (bytes as they are, str as UTF-8), an
    optional ``note`` on stderr, and the exit status."""

    lines: Iterable[bytes | str] = ()
    status: int = 0
    note: str | None = None


StoreHandler = Callable[[KVStore, argparse.Namespace], Reply]
Runner = Callable[[argparse.Namespace, Output], int]


def _flag(changed: bool) -> Reply:
    """redis-cli's integer reply for a yes/no command; "no" also exits 1."""
    return Reply(["1" if changed else "0"], status=0 if changed else 1)


# -- the store commands ------------------------------------------------------------------------


def _get(store: KVStore, args: argparse.Namespace) -> Reply:
    value = store.get(args.key)
    return Reply(status=1) if value is None else Reply([value])


def _set(store: KVStore, args: argparse.Namespace) -> Reply:
    ok = store.set(
        args.key,
        _read_value(args.value),
        ex=args.ex,
        px=args.px,
        nx=args.nx,
        xx=args.xx,
        keepttl=args.keepttl,
    )
    if ok:
        return Reply(["OK"])
    why = "already exists (--nx)" if args.nx else "does not exist (--xx)"
    return Reply(status=1, note=f"not set: key {args.key!r} {why}")


def _read_value(value: str) -> bytes:
    """``-`` is stdin; anything else is the argument's bytes exactly as the shell gave them."""
    return sys.stdin.buffer.read() if value == "-" else os.fsencode(value)


def _delete(store: KVStore, args: argparse.Namespace) -> Reply:
    return Reply([str(store.delete(*args.keys))])


def _keys(store: KVStore, args: argparse.Namespace) -> Reply:
    return Reply(store.keys(args.prefix))


def _mget(store: KVStore, args: argparse.Namespace) -> Reply:
    return Reply([NIL if value is None else value for value in store.mget(args.keys)])


def _ttl(store: KVStore, args: argparse.Namespace) -> Reply:
    return Reply([str(store.ttl(args.key))])


def _expire(store: KVStore, args: argparse.Namespace) -> Reply:
    return _flag(store.expire(args.key, args.seconds))


def _persist(store: KVStore, args: argparse.Namespace) -> Reply:
    return _flag(store.persist(args.key))


def _purge_expired(store: KVStore, args: argparse.Namespace) -> Reply:
    return Reply([str(store.purge_expired(args.prefix))])


def _purge(store: KVStore, args: argparse.Namespace) -> Reply:
    done = store.purge(args.prefix)
    return Reply([f"{name}: {count}" for name, count in done.items()])


def _append(store: KVStore, args: argparse.Namespace) -> Reply:
    if args.values.count("-") > 1:
        raise ValueError("only one VALUE can be '-' (stdin holds one record)")
    return Reply([str(store.append(args.key, *map(_read_value, args.values)))])


def _range(store: KVStore, args: argparse.Namespace) -> Reply:
    start, end = _index(args.start, "START"), _index(args.end, "END")
    return Reply(store.range(args.key, start, end))


def _length(store: KVStore, args: argparse.Namespace) -> Reply:
    return Reply([str(store.length(args.key))])


def _trim(store: KVStore, args: argparse.Namespace) -> Reply:
    return Reply([str(store.trim(args.key, _index(args.start, "START")))])


def _compact(store: KVStore, args: argparse.Namespace) -> Reply:
    return Reply([str(store.compact(args.key))])


def _fsck(store: KVStore, args: argparse.Namespace) -> Reply:
    """One line per damage found (kind, path, what was seen; what was repaired), then a
    summary; exit 1 while damage is left unrepaired."""
    report = store.fsck(repair=args.repair)
    lines = []
    for item in report["damage"]:
        done = f" -> repaired: {item['repaired']}" if item["repaired"] else ""
        lines.append(f"{item['kind']}\t{item['path']}\t{item['detail']}{done}")
    found = len(report["damage"])
    summary = f"{report['objects']} objects checked, {found} problems found"
    lines.append(summary + (", all repaired or harmless" if report["ok"] and found else ""))
    return Reply(lines, status=0 if report["ok"] else 1)


def _index(value: str, name: str) -> int:
    """A record index from the command line, parsed here rather than by argparse so that a
    bad one is one error line (exit 2), not a usage message. ("-5" reaches us as an index:
    argparse takes a negative number for a positional when no option looks like one.)"""
    try:
        return int(value, 10)
    except ValueError:
        raise ValueError(
            f"{name} must be an integer (negative counts from the end), not {value!r}"
        ) from None


def _version(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise ValueError(f"--version must be a version number (0, 1, ...), not {value!r}")
    return int(value)


def _artifact_save(store: KVStore, args: argparse.Namespace) -> Reply:
    metadata = None
    if args.meta is not None:
        try:
            metadata = json.loads(args.meta)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--meta must be a JSON object: {exc}") from None
    source: Any = sys.stdin.buffer if args.source == "-" else Path(args.source)
    if isinstance(source, Path) and not source.is_file():
        raise ValueError(f"no such file: {args.source!r} (use '-' for stdin)")
    version = store.artifacts.save(args.name, source, mime_type=args.mime, metadata=metadata)
    return Reply([str(version)])


def _artifact_load(args: argparse.Namespace, out: Output) -> int:
    """Stream a version to stdout or to a file (written beside it, then renamed)."""
    with _open(args) as store:
        reader = store.artifacts.open(args.name, _version(args.version))
        if reader is None:
            which = "" if args.version is None else f" version {args.version}"
            print(f"{PROG}: no artifact {args.name!r}{which}", file=sys.stderr)
            return 1
        with reader:
            if args.output is None:
                shutil.copyfileobj(reader, out, _COPY_BUFFER)
                return 0
            target = Path(args.output)
            partial = target.with_name(f".{target.name}.{os.getpid()}.part")
            try:
                with partial.open("wb") as file:
                    shutil.copyfileobj(reader, file, _COPY_BUFFER)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
    print(f"{PROG}: wrote {reader.size} bytes to {target}", file=sys.stderr)
    return 0


_COPY_BUFFER = 1 << 20


def _artifact_info(store: KVStore, args: argparse.Namespace) -> Reply:
    found = store.artifacts.info(args.name, _version(args.version))  # no data read
    if found is None:
        which = "" if args.version is None else f" version {args.version}"
        return Reply(status=1, note=f"no artifact {args.name!r}{which}")
    info = {
        "name": found.name,
        "version": found.version,
        "size": found.size,
        "mime_type": found.mime_type,
        "sha256": found.sha256,
        "created_at": found.created_at.isoformat(),
        "metadata": found.metadata,
    }
    return Reply([json.dumps(info, indent=2, ensure_ascii=False, default=repr)])


def _artifact_versions(store: KVStore, args: argparse.Namespace) -> Reply:
    return Reply(map(str, store.artifacts.versions(args.name)))


def _artifact_list(store: KVStore, args: argparse.Namespace) -> Reply:
    return Reply(store.artifacts.list(args.prefix))


def _artifact_delete(store: KVStore, args: argparse.Namespace) -> Reply:
    return Reply([str(store.artifacts.delete(args.name, _version(args.version)))])


def _stats(store: KVStore, args: argparse.Namespace) -> Reply:
    return Reply([json.dumps({"url": store.url, **store.stats()}, indent=2)])


# -- opening the store from the global options -------------------------------------------------


def _cache(value: str) -> str | None:
    if value == "none":
        return None
    if value == "local" or value.lower().startswith(REDIS_SCHEMES):
        return value
    raise ConfigurationError(
        "--cache must be 'none', 'local' or a redis://, rediss://, unix:// or "
        f"redis+cluster:// URL, not {value!r}"
    )


def _storage_options(items: Sequence[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; a VALUE that parses as JSON is used parsed (false, 3, {...})."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--storage-option takes KEY=VALUE, not {item!r}")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def key_ring(args: argparse.Namespace) -> KeyRing | None:
    """The key ring of an encrypted store: ``--key-file`` (default ``$KVSTORE_KEY_FILE``),
    else ``$KVSTORE_KEYS`` (with ``$KVSTORE_PRIMARY_KEY``); None when neither is set."""
    path = getattr(args, "key_file", None) or os.environ.get("KVSTORE_KEY_FILE")
    if path:
        return KeyRing.from_file(path)
    if os.environ.get("KVSTORE_KEYS"):
        return KeyRing.from_env()
    return None


def open_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """What every command and server passes to ``open`` from the global options."""
    items = [*args.storage_option, *args.late_storage_option]
    return {
        "cache": _cache(args.cache),
        "storage_options": _storage_options(items) or None,
        "encryption": key_ring(args),
    }


def _open(args: argparse.Namespace, url: str | None = None) -> KVStore:
    # url None: kvstore reads $KVSTORE_URL, else DEFAULT_URL
    return open_store(url or args.url, **open_arguments(args))


def _store_command(handler: StoreHandler) -> Runner:
    """A runner that opens the store, runs ``handler`` and writes its reply."""

    def run(args: argparse.Namespace, out: Output) -> int:
        with _open(args) as store:
            reply = handler(store, args)
            for line in reply.lines:
                # surrogateescape: a binary key's bytes (or a rule's prefix of them) as given
                out.write(
                    line if isinstance(line, bytes) else line.encode("utf-8", "surrogateescape")
                )
                out.write(b"\n")
        if reply.note:
            print(f"{PROG}: {reply.note}", file=sys.stderr)
        return reply.status

    return run


__all__ = ["NIL", "PROG", "Output", "Reply", "Runner", "StoreHandler"]
