"""The handlers of the operations commands: ``kvstore du``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from . import KVStore
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
