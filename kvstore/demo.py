"""``kvstore demo``: a narrated tour of a fresh store, one small function per chapter."""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import KVStore, __version__
from .blob import split_url
from .commands_cli import Output, _open
from .errors import ConfigurationError, KVStoreError
from .keys import encode_name


@dataclass
class Tour:
    """What a demo chapter works with: the store, its directory, and a narrator.

    :meth:`do` prints a line of code, runs that very line and prints what came back, so the
    narration cannot drift from what the demo does.
    """

    store: KVStore
    root: Path
    out: Output
    names: dict[str, Any] = field(default_factory=dict)

    def say(self, text: str = "") -> None:
        self.out.write(text.encode() + b"\n")
        self.out.flush()

    def do(self, code: str) -> Any:
        names = {"store": self.store, "json": json, **self.names}
        try:
            result = eval(compile(code, "<demo>", "eval"), names)
        except SyntaxError:  # a statement, such as an assignment: nothing to show
            exec(compile(code, "<demo>", "exec"), names)
            self.names.update((k, v) for k, v in names.items() if k != "__builtins__")
            self.say(f"   {code}")
            return None
        except KVStoreError as exc:
            self.say(f"   {code}\n     raises {type(exc).__name__}: {exc}")
            return exc
        self.say(f"   {code}  ->  {result!r}")
        return result


def _chapter_values(tour: Tour) -> None:
    """Values: set and get (bytes back, like redis-py)"""
    tour.do("store.set('greeting', 'hello, object storage')")
    tour.do("store.get('greeting')")
    tour.do("store.get('nobody')")


def _chapter_expiry(tour: Tour) -> None:
    """Expiry: a value that lives 200 ms"""
    tour.do("store.set('session:42', 'alive', px=200)")
    tour.do("store.get('session:42')")
    time.sleep(0.25)
    tour.say("   ... 250 ms later:")
    tour.do("store.get('session:42')")


def _chapter_nx(tour: Tour) -> None:
    """Conditional create (nx): the first writer wins, atomically"""
    tour.do("store.set('lock:report', 'worker-1', nx=True)")
    tour.do("store.set('lock:report', 'worker-2', nx=True)")
    tour.do("store.get('lock:report')")


def _chapter_mget(tour: Tour) -> None:
    """mget: many keys, one concurrent batch, None where missing"""
    tour.do("store.mget(['greeting', 'session:42', 'lock:report'])")


def _chapter_namespace(tour: Tour) -> None:
    """Namespaces: the same key, kept apart"""
    tour.do("tenant = store.namespace('tenant-a')")
    tour.do("tenant.set('greeting', 'hej')")
    tour.do("(tenant.get('greeting'), store.get('greeting'))")


def _chapter_keys(tour: Tour) -> None:
    """Keys by prefix: one LIST request per 1000 keys"""
    tour.do("store.mset({'user:1': 'ada', 'user:2': 'grace', 'user:3': 'alan'})")
    tour.do("store.keys('user:')")


def _chapter_log(tour: Tour) -> None:
    """Session history: an append log"""
    tour.do(
        """store.append('chat', '{"role": "system", "content": "You book tables."}', """
        """'{"role": "user", "content": "Two at 8?"}')"""
    )
    tour.do("""store.append('chat', '{"role": "assistant", "content": "Booked for 8 pm."}')""")
    tour.do("""store.append('chat', '{"role": "user", "content": "Thanks!"}')""")
    tour.do("store.length('chat')")
    tour.do("[json.loads(message)['role'] for message in store.range('chat')]")
    tour.do("store.range('chat', -2, -1)")
    _say_objects(tour, f"log/{encode_name('chat')}/", "one object per append")


def _chapter_artifacts(tour: Tour) -> None:
    """Artifacts: numbered immutable versions"""
    tour.do("store.artifacts.save('report.md', '# Q3\\nRevenue up.')")
    tour.do(
        "store.artifacts.save('report.md', '# Q3\\nRevenue up 12%.', "
        "metadata={'author': 'agent-7'})"
    )
    tour.do("store.artifacts.load('report.md', version=0).text")
    tour.do("a = store.artifacts.load('report.md')")
    tour.do("(a.version, a.text, a.mime_type, a.metadata)")
    _say_objects(tour, f"art/{encode_name('report.md')}/", "one object per version")


def _chapter_sessions(tour: Tour) -> None:
    """Agent sessions: events, and state in three scopes"""
    tour.do(
        "s = store.sessions.create('bookings', 'ada', 'table-42', "
        "state={'party': 2, 'user:name': 'Ada', 'app:city': 'Lyon', 'temp:draft': '...'})"
    )
    tour.do(
        "store.sessions.append_event('bookings', 'ada', 'table-42', "
        "{'author': 'user', 'text': 'Two at 8?'}, state_delta={'time': '20:00'}, "
        "expect_last=s.last_seq).seq"
    )
    tour.do(
        "store.sessions.append_event('bookings', 'ada', 'table-42', "
        "{'author': 'user', 'text': 'Make it 9'}, expect_last=s.last_seq)  # stale"
    )
    tour.do("store.sessions.get('bookings', 'ada', 'table-42').state")


def _say_objects(tour: Tour, directory: str, what: str) -> None:
    """One line naming the objects below ``directory`` (relative to the demo store)."""
    names = [p.relative_to(tour.root / directory).as_posix() for p in _files(tour.root / directory)]
    tour.say(f"   on disk, {what}: {directory}{', '.join(names)}")


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def _chapter_layout(tour: Tour) -> None:
    """On disk: a value per object (kv/), a directory per log (log/) and artifact (art/)"""
    entries: dict[str, int] = {}  # a value's object, or a log's directory: how many objects
    for path in _files(tour.root):
        parts = path.relative_to(tour.root).parts
        if ".kvstore" in parts:
            continue
        # a log's or an artifact's directory counts as one entry (encoded names end in "~")
        area = next((a for a in ("log", "art") if a in parts[:-1]), None)
        name = "/".join(parts[: parts.index(area) + 2]) + "/" if area else "/".join(parts)
        entries[name] = entries.get(name, 0) + 1
    for name, count in list(entries.items())[:10]:
        tour.say(f"   {name}  ({count} objects)" if name.endswith("/") else f"   {name}")
    if len(entries) > 10:
        tour.say(f"   ... and {len(entries) - 10} more")


def _chapter_corruption(tour: Tour) -> None:
    """Corruption is detected, never returned: flip one byte of an object"""
    tour.do("store.set('fragile', 'precious data')")
    name = f"kv/{encode_name('fragile')}"
    path = tour.root / name
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # the payload's last byte, just before the body checksum
    path.write_bytes(bytes(data))
    tour.say(f"   (flipped one byte of {name})")
    tour.do("store.get('fragile')")
    tour.do("store.delete('fragile')")


def _chapter_stats(tour: Tour) -> None:
    """stats(): what the tour cost in object-store requests"""
    counts = tour.store.stats()
    requests = {k.removeprefix("requests."): v for k, v in counts.items() if "requests." in k}
    tour.say(f"   requests: {counts['requests']} {requests}")
    cache = {k: counts.get(f"cache.{k}", 0) for k in ("hits", "misses")}
    tour.say(f"   cache ({counts['cache']['kind']}): {cache}")


DEMO_CHAPTERS: list[Callable[[Tour], None]] = [
    _chapter_values,
    _chapter_expiry,
    _chapter_nx,
    _chapter_mget,
    _chapter_namespace,
    _chapter_keys,
    _chapter_log,
    _chapter_artifacts,
    _chapter_sessions,
    _chapter_layout,
    _chapter_corruption,
    _chapter_stats,
]
"""The tour, in order. A chapter's docstring is its title; later features add theirs."""


@contextlib.contextmanager
def _demo_directory(url: str | None) -> Iterator[Path]:
    """A fresh temporary directory (removed afterwards), or an empty local one the user named
    (kept, to look at: the demo corrupts one of its own objects, so never a store in use)."""
    if url is None:
        with tempfile.TemporaryDirectory(prefix="kvstore-demo-") as tmp:
            yield Path(tmp)
        return
    protocol, rest = split_url(url)
    root = Path(rest).expanduser()
    if protocol != "file":
        raise ConfigurationError(f"demo --url takes a local directory, not {url!r}")
    if root.exists() and any(root.iterdir()):
        raise ConfigurationError(f"demo --url needs an empty or new directory; {url!r} has files")
    yield root


def _demo(args: argparse.Namespace, out: Output) -> int:
    with _demo_directory(args.url) as root, _open(args, str(root)) as store:
        tour = Tour(store, root, out)
        tour.say(f"kvstore {__version__} demo: a store in {root} (cache: {args.cache})")
        for number, chapter in enumerate(DEMO_CHAPTERS, 1):
            title = (chapter.__doc__ or chapter.__name__).strip()
            tour.say(f"{number}. {title}")
            chapter(tour)
        kept = f"kept in {root}" if args.url else "removed"
    tour.say(f"Done; the demo store is {kept}.")
    return 0


__all__ = ["DEMO_CHAPTERS", "Tour"]
