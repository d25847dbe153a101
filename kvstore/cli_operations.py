"""The handlers of the operations commands: ``kvstore du``, ``kvstore retention``,
``kvstore maintain``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from . import KVStore
from .cli_progress import Progress, progress_stream
from .commands_cli import Reply

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: int) -> str:
    """``n`` bytes for people: 0 B, 999 B, 1.0 KiB, 12.3 MiB (powers of 1024)."""
    size, unit = float(n), 0
    while size >= 1024 and unit < len(_UNITS) - 1:
        size, unit = size / 1024, unit + 1
    return f"{n} B" if unit == 0 else f"{size:.1f} {_UNITS[unit]}"


def _du(store: KVStore, args: argparse.Namespace) -> Reply:
    """What the store holds (``store.usage``): a table of namespace, kind, items, objects
    and size, then a total per kind and the grand total; ``--json`` the report itself."""
    report = store.usage(args.prefix)
    if args.json:
        return Reply([json.dumps(report, indent=2)])
    header = ("NAMESPACE", "KIND", "ITEMS", "OBJECTS", "BYTES", "SIZE")
    rows: list[tuple[str, ...]] = [header]

    def row(where: str, kind: str, tally: dict[str, Any]) -> tuple[str, ...]:
        items = str(tally["items"]) if "items" in tally else ""
        n = tally["bytes"]
        return (where, kind, items, str(tally["objects"]), str(n), human_bytes(n))

    nested = len(report["namespaces"]) > 1 or any(ns["namespace"] for ns in report["namespaces"])
    if nested:
        for space in report["namespaces"]:
            where = json.dumps(space["namespace"], ensure_ascii=False)[1:-1] or "(this view)"
            rows.extend(row(where, kind, t) for kind, t in space["kinds"].items())
    rows.extend(row("total" if nested else "", kind, t) for kind, t in report["kinds"].items())
    rows.append(row("total", "all", {"objects": report["objects"], "bytes": report["bytes"]}))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    numeric = {2, 3, 4}

    def line(r: tuple[str, ...]) -> str:
        cells = zip(r, widths, strict=True)
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(cells)
        ).rstrip()

    return Reply([line(r) for r in rows])


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration_seconds(text: str) -> float:
    """A duration from the command line: seconds ("3600"), or a number and a unit - s,
    m, h, d, w ("90m", "30d", "1.5h"). ValueError (one error line) otherwise."""
    unit = text[-1:].lower()
    number = text[:-1] if unit in _UNIT_SECONDS else text
    try:
        value = float(number) * _UNIT_SECONDS.get(unit, 1)
    except ValueError:
        raise ValueError(
            f"a duration is seconds or a number with s, m, h, d or w, not {text!r}"
        ) from None
    if not 0 < value < float("inf"):
        raise ValueError(f"a duration is more than 0, not {text!r}")
    return value


def _rule_line(rule: dict[str, Any]) -> str:
    limits = " ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in rule.items()
        if k.startswith("max_")
    )
    return f"{rule['kind']}\t{rule['prefix'] or '(all)'}\t{limits}"


def _retention_ls(store: KVStore, args: argparse.Namespace) -> Reply:
    """The policy, one rule a line (kind, prefix, limits), or JSON."""
    rules = store.retention()
    if args.json:
        return Reply([json.dumps(rules, indent=2)])
    return Reply([_rule_line(r) for r in rules])


def _retention_set(store: KVStore, args: argparse.Namespace) -> Reply:
    max_age = None if args.max_age is None else duration_seconds(args.max_age)
    rules = store.set_retention(
        args.kind,
        args.prefix,
        max_age=max_age,
        max_count=None if args.max_count is None else int(args.max_count),
        max_versions=None if args.max_versions is None else int(args.max_versions),
    )
    return Reply([_rule_line(r) for r in rules])


def _retention_rm(store: KVStore, args: argparse.Namespace) -> Reply:
    """Exit 1 if there was no such rule."""
    removed = store.remove_retention(args.kind, args.prefix)
    return Reply([], status=0 if removed else 1, note=None if removed else "no such rule")


def _maintain(store: KVStore, args: argparse.Namespace) -> Reply:
    """Apply the policies and purge, with a progress line; then a summary (or JSON)."""
    # JSON on the terminal: a progress line would break it up, unless asked for
    choice = False if args.json and args.progress is None else args.progress
    with Progress(progress_stream(choice), "maintain") as bar:

        def report(what: str, done: int, total: int) -> None:
            bar.update(done, total, what)

        found = store.maintain(progress=report, purge_expired=not args.keep_expired)
    if args.json:
        return Reply([json.dumps(found, indent=2)])
    lines = []
    for r in found["rules"]:
        where = "/".join(r["namespace"]) or "(this view)"
        lines.append(f"{where}\t{r['kind']}\t{r['prefix'] or '(all)'}\tremoved {r['removed']}")
    purged, freed = found["purged"], found["freed"]
    lines.append(f"purged: {purged['expired']} expired values, {purged['log_objects']} log objects")
    lines.append(
        f"freed: {freed['objects']} objects, {human_bytes(freed['bytes'])} "
        f"({found['before']['objects']} objects before, {found['after']['objects']} after)"
    )
    return Reply(lines)


def _rekey(store: KVStore, args: argparse.Namespace) -> Reply:
    """Seal every object under the ring's primary key, with a progress line; a summary."""
    with Progress(progress_stream(args.progress), "rekey") as bar:

        def report(what: str, done: int, total: int) -> None:
            bar.update(done, total, what)

        found = store.rekey(seal_plaintext=args.seal_plaintext, progress=report)
    line = (
        f"{found['objects']} objects: {found['rewritten']} sealed again, {found['current']} "
        f"under the primary key already, {found['changed']} changed by a writer meanwhile"
    )
    if found["plaintext"]:
        line += f", {found['plaintext']} plaintext left alone (--seal-plaintext seals them)"
    return Reply([line])


def _keygen(args: argparse.Namespace, out: Any) -> int:
    """A new random key: ``ID:BASE64`` (a $KVSTORE_KEYS entry), or a key file's JSON."""
    from .crypto import KeyRing, encode_key, generate_key

    KeyRing({args.id: generate_key()})  # the id's checks
    key = encode_key(generate_key())
    if args.json:
        out.write(
            json.dumps({"primary": args.id, "keys": {args.id: key}}, indent=2).encode() + b"\n"
        )
    else:
        out.write(f"{args.id}:{key}\n".encode())
    return 0
