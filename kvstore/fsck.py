"""fsck: find damage in a store, and with ``repair``, make the rest usable again.

It reads every object of a store view (and of the namespaces inside it), straight from the
object store (never the cache), and reports:

* ``missing`` - records of a log that no chunk or segment holds (a lost object);
* ``corrupt`` - an object that fails its checksum or format;
* ``misplaced`` - an intact object bound to another path (copied or moved onto this one);
* ``mismatch`` - a log object holding another number of records than its position says,
  an artifact whose parts or raw object do not match its manifest (size, CRC-32, sha256);
* ``orphan`` - parts or a raw object of an artifact that no manifest names (a save that
  crashed before its claim, or one running now), the log of a list no key holds, the
  events of a session incarnation no head names (a session deleted while a settle or an
  append raced it): reported, never deleted;
* ``foreign`` - an object whose name kvstore never writes.

``repair`` marks the records of a log that are missing, corrupt or misplaced as *lost*
(``lost/{first}-{end}`` in the log's directory): the log can then be read around them,
appended to, trimmed and compacted; a read that includes them raises CorruptDataError
naming them - never silently. Values and artifacts are left as they are (a damaged value
or version reads as an error; ``delete`` removes it). Every repair is in the report.

Cost: one LIST page per 1000 objects and one GET per object (all data is read and
verified), a bounded number at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack

from . import aio, codec
from .artifacts.manifest import Manifest
from .blob.base import AmbiguousWriteError
from .context import StoreContext
from .errors import CorruptDataError
from .layout import Layout, Lost, lost_name, parse_log_name, parse_version_leaf
from .logs.model import Replan, cover, shortfall
from .sessions.model import Head, decode_state


@dataclass
class Damage:
    """One thing found wrong: its kind, the object (or log range) and what was seen."""

    kind: str
    path: str
    detail: str
    repaired: str = ""


@dataclass
class Report:
    """What :func:`fsck` checked and found."""

    objects: int = 0
    damage: list[Damage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing left to repair (damage that was repaired still counts as found)."""
        return all(d.repaired or d.kind == "orphan" for d in self.damage)

    def found(self, kind: str, path: str, detail: str) -> Damage:
        item = Damage(kind, path, detail)
        self.damage.append(item)
        return item

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "objects": self.objects,
            "damage": [asdict(d) for d in self.damage],
        }


async def fsck(ctx: StoreContext, repair: bool = False) -> Report:
    """Check the store view of ``ctx`` and every namespace inside it."""
    report = Report()
    await _check_view(ctx, repair, report)
    return report


async def _check_view(ctx: StoreContext, repair: bool, report: Report) -> None:
    heads = await _check_values(ctx, report)
    await _check_logs(ctx, repair, report)
    await _check_lists(ctx, repair, report, heads)
    await _check_artifacts(ctx, report)
    await _check_sessions(ctx, repair, report)
    await _check_records(ctx, repair, report)
    await _check_values(StoreContext(ctx.resources, ctx.layout.meta()), report)  # settings
    for name in await _namespaces(ctx, report):
        await _check_view(ctx.namespace(name), repair, report)


async def _list(ctx: StoreContext, prefix: str) -> list[str]:
    return [path async for page in ctx.blob.list_pages(prefix) for path in page]


async def _namespaces(ctx: StoreContext, report: Report) -> list[str]:
    area = ctx.layout.base + "ns/"
    names: set[str] = set()
    for path in await _list(ctx, area):
        encoded, sep, _ = path[len(area) :].partition("~/")
        try:
            if sep:
                names.add(ctx.layout.key_of(encoded + "~"))
        except ValueError:
            report.found("foreign", path, "not a namespace kvstore writes")
    return sorted(names)


async def _verify(
    ctx: StoreContext, path: str, report: Report
) -> tuple[codec.Envelope | None, Damage | None]:
    """The object, decoded and checked against its binding; or None and what was wrong
    (gone, corrupt, misplaced), which is reported."""
    report.objects += 1
    try:
        # inside the try: an encrypted store opens the object in the read, and a damaged
        # seal is damage to report like a bad envelope
        found = await ctx.blob.get(path)
        if found is None:
            return None, report.found("missing", path, "listed, then gone (deleted meanwhile?)")
        return codec.decode(found.data, path=path, bound=path), None
    except CorruptDataError as exc:
        kind = "misplaced" if "misplaced" in str(exc) else "corrupt"
        return None, report.found(kind, path, str(exc))


async def _check_values(ctx: StoreContext, report: Report) -> set[tuple[str, str]]:
    """Verify every value; returns the lists their heads name: (origin key, incarnation),
    or ("", "") for a head that cannot be read (then no list log is called an orphan)."""
    paths = []
    for path in await _list(ctx, ctx.layout.value_area):
        try:
            ctx.layout.value_key(path)
            paths.append(path)
        except ValueError:
            report.found("foreign", path, "not a value kvstore writes")
    checked = await aio.bounded([_verify(ctx, p, report) for p in paths], ctx.concurrency)
    heads: set[tuple[str, str]] = set()
    for env, _damage in checked:
        if env is None or env.meta.get(codec.KIND_FIELD) != codec.KIND_NAMES[codec.LIST]:
            continue
        try:
            incarnation, origin = msgpack.unpackb(env.payload, raw=False)
            heads.add((bytes(origin).decode("utf-8", "surrogateescape"), str(incarnation)))
        except Exception:
            heads.add(("", ""))
    return heads


# -- logs ---------------------------------------------------------------------------------


async def _check_logs(ctx: StoreContext, repair: bool, report: Report) -> None:
    by_log: dict[str, list[str]] = {}
    for path in await _list(ctx, ctx.layout.log_area):
        split = ctx.layout.split_log_path(path)
        if split is None or parse_log_name(split[1]) is None:
            report.found("foreign", path, "not a log object kvstore writes")
            continue
        directory = path[: len(path) - len(split[1])]
        by_log.setdefault(directory, []).append(split[1])
    for directory, names in sorted(by_log.items()):
        await _check_log(ctx, directory, names, repair, report)


async def _check_log(
    ctx: StoreContext, directory: str, names: list[str], repair: bool, report: Report
) -> None:
    lost: list[tuple[int, int, Damage]] = []
    report.objects += sum(1 for n in names if isinstance(parse_log_name(n), Lost))
    # Records no object holds: each gap, in order (a repair fills it so the walk goes on).
    names = list(names)
    while True:
        try:
            _mark, pieces = cover(names)
            break
        except Replan as gap:
            item = report.found(
                "missing", f"{directory}[{gap.start}, {gap.end})", "no object holds these records"
            )
            lost.append((gap.start, gap.end, item))
            names.append(lost_name(gap.start, gap.end))
    # Every object the walk reads: verified, and its record count checked.
    readable = [p for p in pieces if not p.lost]
    checked = await aio.bounded([_verify(ctx, directory + p.name, report) for p in readable], 16)
    for piece, (env, damage) in zip(readable, checked, strict=True):
        if env is None:
            if piece.end is not None and damage is not None:
                lost.append((piece.start, piece.end, damage))
            continue
        short = shortfall([piece], [env])
        if short is not None:  # the chunk's successor is missing from the listing
            item = report.found(
                "missing", f"{directory}[{short[0]}, {short[1]})", "no object holds these records"
            )
            lost.append((short[0], short[1], item))
        elif piece.end is not None and env.count != piece.count:
            report.found(
                "mismatch",
                directory + piece.name,
                f"holds {env.count} records where the log's order says {piece.count}",
            )
    if repair and lost:
        for start, end, item in lost:
            path = directory + lost_name(start, end)
            data = codec.encode(b"", meta={"t": ctx.clock(), "why": item.kind}, bind=path)
            with contextlib.suppress(AmbiguousWriteError):  # landed or not: fsck again sees
                await ctx.blob.put_if_absent(path, data)
            item.repaired = f"records [{start}, {end}) marked lost: {lost_name(start, end)}"
        await ctx.invalidate([ctx.layout.log_plan_key(directory)])


async def _check_lists(
    ctx: StoreContext, repair: bool, report: Report, heads: set[tuple[str, str]]
) -> None:
    """The logs that hold the Redis face's lists (``{base}list/{enc}/{inc}/``): each
    incarnation's log is checked (and repaired) like any log; one that no list head names
    is reported as an orphan (never deleted)."""
    incarnations: set[tuple[str, str]] = set()
    gone: set[tuple[str, str]] = set()  # deleted by DEL: swept by purge once old
    for path in await _list(ctx, ctx.layout.list_area):
        found = ctx.layout.list_logs(path)
        if found is None:
            report.found("foreign", path, "not a list object kvstore writes")
        else:
            incarnations.add(found)
            if path == Layout.gone_marker(ctx.layout.list_log(*found)):
                gone.add(found)
    for key, incarnation in sorted(incarnations):
        inner = StoreContext(ctx.resources, ctx.layout.list_log(key, incarnation))
        await _check_logs(inner, repair, report)
        if (key, incarnation) not in heads | gone and ("", "") not in heads:
            report.found(
                "orphan",
                inner.layout.base,
                "records of a list no key holds now (SET, RENAME or expiry replaced its "
                "head, or a push raced its DEL): reported, never deleted",
            )


async def _check_records(ctx: StoreContext, repair: bool, report: Report) -> None:
    """Each collection of records (``{base}rec/{enc}/``): its span value and its
    partitions' logs checked (and repaired) like any value and log."""
    names: set[str] = set()
    for path in await _list(ctx, ctx.layout.records_area):
        name = ctx.layout.split_records_path(path)
        if name is None:
            report.found("foreign", path, "not a records object kvstore writes")
        else:
            names.add(name)
    for name in sorted(names):
        inner = StoreContext(ctx.resources, ctx.layout.records(name))
        await _check_values(inner, report)
        await _check_logs(inner, repair, report)


# -- sessions -------------------------------------------------------------------------------


async def _check_sessions(ctx: StoreContext, repair: bool, report: Report) -> None:
    """Heads and scope states verified and parsed; each incarnation's events checked (and
    repaired) like any log; events no head names reported as orphans."""
    layout = ctx.layout
    states: list[str] = []
    heads: list[tuple[str, tuple[str, ...]]] = []
    incarnations: set[tuple[str, ...]] = set()
    for path in await _list(ctx, layout.session_area):
        found = layout.parse_session_object(path)
        if found is None:
            report.found("foreign", path, "not a session object kvstore writes")
        elif found[0] == "events":
            incarnations.add(found[1:])
        elif found[0] == "head":
            heads.append((path, found[1:]))
        else:
            states.append(path)
    named: set[tuple[str, ...]] = set()
    unreadable = False
    checked = await aio.bounded(
        [_verify(ctx, p, report) for p in [*states, *(p for p, _ in heads)]], ctx.concurrency
    )
    for path, (env, _damage) in zip([*states, *(p for p, _ in heads)], checked, strict=True):
        if env is None:
            unreadable = unreadable or path not in states
            continue
        try:
            if path in states:
                decode_state(env.payload, path)
            else:
                head = Head.from_bytes(env.payload, path)
                named.add((head.app, head.user, head.id, head.incarnation))
        except CorruptDataError as exc:
            report.found("corrupt", path, str(exc))
            unreadable = unreadable or path not in states
    for app, user, session_id, incarnation in sorted(incarnations):
        events = layout.session_events(app, user, session_id, incarnation)
        await _check_logs(StoreContext(ctx.resources, events), repair, report)
        if (app, user, session_id, incarnation) not in named and not unreadable:
            report.found(
                "orphan",
                events.base,
                "events of a session incarnation no head names (deleted while an append "
                "or a settle raced the delete): never read; reported, never deleted",
            )


# -- artifacts ------------------------------------------------------------------------------


async def _check_artifacts(ctx: StoreContext, report: Report) -> None:
    layout = ctx.layout
    uploads: set[str] = set()
    versions: list[str] = []
    for path in await _list(ctx, layout.artifact_area):
        _encoded, leaf = layout.split_artifact_path(path)
        found = parse_version_leaf(leaf)
        if found is None:
            report.found("foreign", path, "not an artifact object kvstore writes")
        elif not found[1]:
            versions.append(path)
        else:
            report.objects += 1  # a deleted-version marker
    checks = [_check_version(ctx, path, uploads, report) for path in versions]
    await aio.bounded(checks, 16)
    for path in await _list(ctx, layout.upload_area):  # (named ones were counted when read)
        found_upload = layout.split_upload_path(path)
        if found_upload is None:
            report.found("foreign", path, "not an artifact object kvstore writes")
        elif found_upload[0] not in uploads:
            report.found(
                "orphan", path, "a part or raw object no manifest names (a failed or running save)"
            )


async def _check_version(ctx: StoreContext, path: str, uploads: set[str], report: Report) -> None:
    env, _ = await _verify(ctx, path, report)
    if env is None:
        return
    try:
        manifest = Manifest.parse(env, path, path)
    except CorruptDataError as exc:
        report.found("corrupt", path, str(exc))
        return
    if manifest is None:  # a deleted version
        return
    uploads.add(manifest.upload)
    directory = path.rsplit("/", 1)[0] + "/"
    if manifest.raw is not None:
        await _check_raw(ctx, path, ctx.layout.raw(directory, manifest.upload), manifest, report)
        return
    digest = hashlib.sha256(manifest.inline)
    if manifest.parts is not None:
        for index, size in enumerate(manifest.parts):  # one at a time: bounded memory
            part = ctx.layout.part(directory, manifest.upload, index)
            found, _ = await _verify(ctx, part, report)
            if found is None:
                return
            if len(found.payload) != size:
                detail = f"{len(found.payload)} bytes, the manifest says {size}"
                report.found("mismatch", part, detail)
                return
            digest.update(found.payload)
    if digest.hexdigest() != manifest.sha256:
        report.found("mismatch", path, "the data does not match the manifest's sha256")


async def _check_raw(
    ctx: StoreContext, path: str, raw: str, manifest: Manifest, report: Report
) -> None:
    """A raw version's object (``raw``) against its manifest (``path``): there, its size,
    CRC-32 and sha256."""
    assert manifest.raw is not None
    report.objects += 1
    found = await ctx.blob.get(raw)
    if found is None:
        report.found("missing", raw, "the raw object its manifest names is missing")
        return
    data = found.data
    if len(data) != manifest.raw.size:
        detail = f"{len(data)} bytes, the manifest says {manifest.raw.size}"
        report.found("mismatch", raw, detail)
    elif zlib.crc32(data) != manifest.raw.crc:
        report.found("mismatch", raw, "the data does not match the manifest's CRC-32")
    elif hashlib.sha256(data).hexdigest() != manifest.sha256:
        report.found("mismatch", path, "the data does not match the manifest's sha256")
