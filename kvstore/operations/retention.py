"""Retention policies: rules kept in the bucket, applied by ``store.maintain()``.

A store view's policy is a list of rules, stored as one value of the view's settings area
(``{base}meta/kv/retention~``, JSON; :meth:`kvstore.layout.Layout.meta`), so every process
that opens the store sees the same policy. ``set_retention`` and ``remove_retention`` change
it by compare-and-swap: two processes changing it at once both land, one after the other.
Each namespace has its own policy; ``maintain`` on a view applies its policy and those of
the namespaces inside it.

A rule acts on the keys (or names) that start with its ``prefix``:

=========  =================================================================================
kind       what ``maintain`` does
=========  =================================================================================
values     ``max_age``: deletes the values not written for ``max_age`` seconds
logs       ``max_age``: drops every record of a log not appended to for that long;
           ``max_count``: keeps a log's last ``max_count`` records
artifacts  ``max_versions``: keeps each artifact's newest N versions; ``max_age``: deletes
           the versions saved longer ago - never an artifact's newest
records    ``max_age``: drops the partitions of the collections (by name prefix) that
           ended more than ``max_age`` ago; ``max_count``: drops whole partitions, oldest
           first, while the newer ones hold at least ``max_count`` records
=========  =================================================================================

Ages are by the object store's clock (dated listings: S3 ``LastModified`` against the
answer's ``Date``; docs/architecture.md, "Time") - no client's clock takes part - except
for records, whose timestamps are their writers' own (compared with the store's "now").
A Redis list counts as written when its records were (pushes and pops write its log, not
its head): a values rule removes a list only once both are idle, and its records with it.

**Safe with writers running at once, and with other maintainers.** Nothing a rule keeps
is ever removed by a race: a value is deleted only by a conditional delete on the version
that was read, after a second dated listing, made after the read, showed it unchanged
since the first found it old (a value written meanwhile survives); an idle log's records
are dropped only below the end the rule saw (a record appended since survives);
``max_count`` trims as ``trim`` does (what is appended during it is kept); versions and
partitions are dropped by the models' own deletes. Each action is idempotent, so two
maintainers at once, or one run again after a crash, do no harm and finish the work.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import msgpack

from .. import aio, codec
from ..artifacts import AsyncArtifacts
from ..artifacts.versions import Versions
from ..blob.base import AmbiguousWriteError, Blob
from ..context import StoreContext
from ..errors import (
    ConfigurationError,
    CorruptDataError,
    UnsupportedOperationError,
)
from ..keys import encode_prefix
from ..layout import LIST_LOG_KEY, Layout, parse_version_leaf
from ..logs import Logs, incarnations
from ..records import AsyncRecords, record_collections
from ..records.model import partition_end
from ..values import Values

POLICY_KEY = "retention"
KINDS = {
    "values": ("max_age",),
    "logs": ("max_age", "max_count"),
    "artifacts": ("max_age", "max_versions"),
    "records": ("max_age", "max_count"),
}
"""The kinds a rule may name, and the limits each takes."""
MAX_RULES = 1000


@dataclass(frozen=True)
class Rule:
    """One rule: ``kind`` (values, logs, artifacts, records), ``prefix``, and its limits
    (``max_age`` in seconds; ``max_count`` records; ``max_versions``)."""

    kind: str
    prefix: str = ""
    max_age: float | None = None
    max_count: int | None = None
    max_versions: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def make_rule(
    kind: object,
    prefix: object = "",
    max_age: object = None,
    max_count: object = None,
    max_versions: object = None,
) -> Rule:
    """A checked rule; ConfigurationError naming what is wrong."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigurationError(f"a rule's kind is one of {', '.join(KINDS)}, not {kind!r}")
    if not isinstance(prefix, str):
        raise ConfigurationError(f"a rule's prefix is a str, not {prefix!r}")
    encode_prefix(prefix)  # one a key can start with (InvalidKeyError: a ConfigurationError)
    limits = {"max_age": max_age, "max_count": max_count, "max_versions": max_versions}
    given = {name for name, value in limits.items() if value is not None}
    if not given:
        raise ConfigurationError(f"a {kind} rule needs one of {', '.join(KINDS[kind])}")
    wrong = given - set(KINDS[kind])
    if wrong:
        raise ConfigurationError(
            f"a {kind} rule takes {', '.join(KINDS[kind])}, not {', '.join(sorted(wrong))}"
        )
    if max_age is not None and (
        isinstance(max_age, bool)
        or not isinstance(max_age, (int, float))
        or not 0 < max_age < math.inf
        or not _finite_float(max_age)
    ):
        raise ConfigurationError(f"max_age is seconds > 0, not {max_age!r}")
    for name in ("max_count", "max_versions"):
        value = limits[name]
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ConfigurationError(f"{name} is an int >= 1, not {value!r}")
    return Rule(
        kind,
        prefix,
        None if max_age is None else float(max_age),
        max_count,  # type: ignore[arg-type]
        max_versions,  # type: ignore[arg-type]
    )


def _finite_float(number: float) -> bool:
    """Whether ``number`` is a finite float once converted (an int past 1e308 is not)."""
    try:
        return math.isfinite(float(number))
    except OverflowError:
        return False


# -- the stored policy ---------------------------------------------------------------------------


def _settings(ctx: StoreContext) -> Values:
    return Values(StoreContext(ctx.resources, ctx.layout.meta()))


def _decode(raw: bytes, ctx: StoreContext) -> list[Rule]:
    import json

    where = ctx.where(ctx.layout.meta().value(POLICY_KEY))
    try:
        rows = json.loads(raw)
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ValueError("not a list of rules")
        return [make_rule(**row) for row in rows]
    except (ValueError, TypeError, RecursionError) as exc:
        raise CorruptDataError(f"the retention policy is not one ({exc})", path=where) from None


async def policy(ctx: StoreContext) -> list[Rule]:
    """The view's rules, as stored ([] if none): one GET (the cache's, if fresh)."""
    values = _settings(ctx)
    (found,) = await values.load(values.plan([POLICY_KEY]))
    return [] if found is None else _decode(found[0], ctx)


async def _change(ctx: StoreContext, edit: Any) -> list[Rule]:
    """Apply ``edit(rules) -> rules`` to the stored policy by compare-and-swap, again on
    conflict; returns the policy written."""
    import json

    values = _settings(ctx)
    while True:
        found = await values.get_versioned(POLICY_KEY)
        rules = [] if found is None else _decode(found[0], ctx)
        changed: list[Rule] = edit(rules)
        if len(changed) > MAX_RULES:
            raise ConfigurationError(f"a policy has at most {MAX_RULES} rules")
        text = json.dumps([r.to_dict() for r in changed]).encode()
        if found is None:
            done = await values.set(POLICY_KEY, text, nx=True)
        else:
            done = await values.set(POLICY_KEY, text, if_version=found[1])
        if done:
            return changed


async def set_rule(ctx: StoreContext, rule: Rule) -> list[Rule]:
    """Add ``rule``, replacing the rule of the same kind and prefix if there is one."""

    def edit(rules: list[Rule]) -> list[Rule]:
        kept = [r for r in rules if (r.kind, r.prefix) != (rule.kind, rule.prefix)]
        return sorted([*kept, rule], key=lambda r: (r.kind, r.prefix))

    return await _change(ctx, edit)


async def remove_rule(ctx: StoreContext, kind: str, prefix: str) -> bool:
    """Remove the rule of ``kind`` and ``prefix``; False if there was none."""
    removed = False

    def edit(rules: list[Rule]) -> list[Rule]:
        nonlocal removed
        kept = [r for r in rules if (r.kind, r.prefix) != (kind, prefix)]
        removed = len(kept) < len(rules)
        return kept

    await _change(ctx, edit)
    return removed


# -- applying a rule -----------------------------------------------------------------------------


async def apply(ctx: StoreContext, rule: Rule) -> int:
    """Apply one rule to the view of ``ctx``; returns what it removed: values, logs
    emptied or trimmed, artifact versions, record partitions."""
    if rule.kind == "values":
        return await _values(ctx, rule)
    if rule.kind == "logs":
        return await _logs(ctx, rule)
    if rule.kind == "artifacts":
        return await _artifacts(ctx, rule)
    return await _records(ctx, rule)


def _max_age_ms(rule: Rule) -> int:
    assert rule.max_age is not None
    return math.ceil(rule.max_age * 1000)


async def _dated(ctx: StoreContext, prefix: str) -> dict[str, int]:
    """Path -> age in ms by the object store's clock."""
    if not ctx.blob.dated_listing:
        raise UnsupportedOperationError(
            f"{ctx.blob.url} cannot date its objects: age rules need a store that can"
        )
    return (await ctx.blob.list_dated(prefix)).ages()


async def _values(ctx: StoreContext, rule: Rule) -> int:
    """Delete the values not written for ``max_age``. Candidates come from a dated
    listing (names kvstore does not write are left alone); each is read (its version: a
    ranged GET of its first bytes); a second dated listing, made after the reads, must show
    it with the date the first showed (not written since); then it is deleted on the
    version read only (a conditional DELETE). A write after the first listing changes the
    date the second sees, one after the second changes the version: either way the value
    written meanwhile survives.

    A Redis list is a head (a value) and a log of records that pushes and pops write
    without rewriting the head: it counts as written when its log was, so a list's head
    goes only when its log is idle too - checked before the head is deleted and again
    after (a push that raced the delete puts the head back) - and then its log is dropped
    as DEL drops it. Costs a GET and a DELETE per value removed, and two dated LISTs per
    1000 values under the prefix (and one per old list)."""
    if not ctx.blob.dated_listing:
        raise UnsupportedOperationError(
            f"{ctx.blob.url} cannot date its objects: age rules need a store that can"
        )
    blob, layout, limit = ctx.blob, ctx.layout, _max_age_ms(rule)
    prefix = layout.value_prefix(rule.prefix)
    first = await blob.list_dated(prefix)
    dated = dict(zip(first.paths, first.modified, strict=True))
    old = [p for p, age in first.ages().items() if age > limit and _is_value(layout, p)]
    if not old:
        return 0
    heads = await aio.bounded([blob.get_head(p, _head_size(p)) for p in old], ctx.concurrency)
    second = await blob.list_dated(prefix)
    still = dict(zip(second.paths, second.modified, strict=True))
    doomed = [
        (path, head)
        for path, head in zip(old, heads, strict=True)
        if head is not None and still.get(path) == dated[path]
    ]
    found = [(path, _list_log(ctx, path, head)) for path, head in doomed]
    lists = {path: log for path, log in found if log is not None}
    if lists:  # a list pushed to or popped from within the limit was written: kept
        idle = await aio.bounded(
            [_idle(ctx, log.base, limit) for log in lists.values()], ctx.concurrency
        )
        busy = {path for path, quiet in zip(lists, idle, strict=True) if not quiet}
        doomed = [(path, head) for path, head in doomed if path not in busy]

    async def run() -> list[bool]:
        return await aio.bounded(
            [_delete_value(ctx, path, head, lists.get(path), limit) for path, head in doomed],
            ctx.concurrency,
        )

    paths = [path for path, _ in doomed]
    return sum(await ctx.commit(paths, run)) if doomed else 0


_LIST_HEAD_ROOM = 1536
"""Bytes beyond its path's length that a list's head always fits in (the 32-byte header,
the metadata naming its path and type, the incarnation and a key of at most 1024 bytes,
the checksums: about 1100): a longer object is no list head, and a shorter one is read
whole by the same ranged GET that reads a value's version."""


def _head_size(path: str) -> int:
    return len(path.encode()) + _LIST_HEAD_ROOM


def _is_value(layout: Layout, path: str) -> bool:
    """Whether a path of the value area is one kvstore writes (not a foreign object)."""
    try:
        layout.value_key(path)
    except ValueError:
        return False
    return True


def _list_log(ctx: StoreContext, path: str, head: Blob) -> Layout | None:
    """The layout holding a list's records if ``head`` (the first bytes of the value at
    ``path``) is a whole, readable list head (commands/lists.py: ``[incarnation, key]``);
    None for any other value."""
    if len(head.data) >= _head_size(path):
        return None
    try:
        env = codec.decode(head.data, path=ctx.where(path), bound=path)
        if codec.kind_of(env) != codec.LIST:
            return None
        incarnation, origin = msgpack.unpackb(env.payload, raw=False)
        key = bytes(origin).decode("utf-8", "surrogateescape")
        return ctx.layout.list_log(key, str(incarnation))
    except Exception:  # damaged: a value like any other (old: it goes)
        return None


async def _idle(ctx: StoreContext, prefix: str, limit: int) -> bool:
    """Whether every object below ``prefix`` is older than ``limit`` ms (store's clock)."""
    ages = (await ctx.blob.list_dated(prefix)).ages()
    return all(age > limit for age in ages.values())


async def _delete_value(
    ctx: StoreContext, path: str, head: Blob, list_log: Layout | None, limit: int
) -> bool:
    """Delete the value on the version read; a list's head only if its log is still idle
    after (else the head is put back, for a push that read it before it went), and then
    the list's records, as DEL removes them."""
    if not await ctx.blob.delete_if_match(path, head.tag):
        return False
    if list_log is None:
        return True
    if not await _idle(ctx, list_log.base, limit):
        with contextlib.suppress(AmbiguousWriteError):  # ours, or a new list's head
            await ctx.blob.put_if_absent(path, head.data)
        return False
    await Logs(StoreContext(ctx.resources, list_log)).delete(LIST_LOG_KEY)
    await incarnations.mark_gone(ctx, list_log)  # swept with the rest once old
    return True


def _by_log(ctx: StoreContext, paths: Iterable[str]) -> dict[str, list[str]]:
    """Log key -> its object paths, of a listing of the log area."""
    layout, found = ctx.layout, dict[str, list[str]]()
    for path in paths:
        split = layout.split_log_path(path)
        if split is None:
            continue
        try:
            found.setdefault(layout.key_of(split[0]), []).append(path)
        except ValueError:
            continue  # not a log kvstore writes (fsck reports it)
    return found


async def _logs(ctx: StoreContext, rule: Rule) -> int:
    """``max_count``: trim each log to its last records; ``max_age``: for each log whose
    objects are all older than the limit, its end read first, then its dates, and the
    records below that end dropped - an append racing the rule is above it and stays."""
    logs, prefix = Logs(ctx), ctx.layout.log_prefix(rule.prefix)
    touched = 0
    if rule.max_age is not None:
        limit = _max_age_ms(rule)
        ages = await _dated(ctx, prefix)
        idle = [k for k, ps in _by_log(ctx, ages).items() if min(ages[p] for p in ps) > limit]

        async def drop(key: str) -> int:
            _first, end = await logs.bounds(key)
            directory = ctx.layout.log_dir(key)
            still = await _dated(ctx, directory)
            if not still or min(still.values()) <= limit:
                return 0  # written since the listing
            return await logs.drop_before(key, end)

        dropped = await aio.bounded([drop(k) for k in idle], ctx.concurrency)
        touched += sum(1 for n in dropped if n > 0)
    if rule.max_count is not None:
        keys = sorted(_by_log(ctx, [p async for page in ctx.blob.list_pages(prefix) for p in page]))
        before = await aio.bounded([logs.length(k) for k in keys], ctx.concurrency)
        over = [k for k, n in zip(keys, before, strict=True) if n > rule.max_count]
        await aio.bounded([logs.trim(k, -rule.max_count) for k in over], ctx.concurrency)
        touched += len(over)
    return touched


async def _artifacts(ctx: StoreContext, rule: Rule) -> int:
    """From one dated listing of the artifacts' manifests: each artifact's live versions,
    newest first; those past ``max_versions``, and those older than ``max_age`` but the
    newest, deleted (``AsyncArtifacts.delete``: a tombstone, the data with ``purge``).
    Where the listing dooms a version, the versions kept in its stead are read first
    (their info: a ranged GET each): a tombstone whose ``.deleted`` marker is not written
    yet (a delete half done, or running now) is no version to keep, so it neither counts
    towards ``max_versions`` nor stands as the newest."""
    layout = ctx.layout
    ages = await _dated(ctx, layout.artifact_prefix(rule.prefix))
    reader = Versions(ctx)
    versions: dict[str, dict[int, int]] = {}
    deleted: set[tuple[str, int]] = set()
    for path, age in ages.items():
        encoded, leaf = layout.split_artifact_path(path)
        parsed = parse_version_leaf(leaf)
        if parsed is None:
            continue
        try:
            name = layout.key_of(encoded)
            reader.dir(name)  # a name an artifact can have
        except ValueError:  # not kvstore's (InvalidKeyError, a ConfigurationError, too)
            continue
        version, is_marker = parsed
        if is_marker:
            deleted.add((name, version))
        else:
            versions.setdefault(name, {})[version] = age

    async def past_limits(name: str, found: dict[int, int]) -> list[tuple[str, int]]:
        live = sorted((v for v in found if (name, v) not in deleted), reverse=True)
        if not any(_doomed(rule, i, found[v]) for i, v in enumerate(live)):
            return []  # the listing alone says nothing goes
        key, directory = reader.dir(name)
        kept, doomed = 0, list[tuple[str, int]]()
        for version in live:
            if _doomed(rule, kept, found[version]):
                doomed.append((name, version))
            elif await _alive(reader, key, directory, version):
                kept += 1
        return doomed

    picked = await aio.bounded(
        [past_limits(name, found) for name, found in versions.items()], ctx.concurrency
    )
    doomed = [item for items in picked for item in items]
    artifacts = AsyncArtifacts(ctx)
    done = await aio.bounded(
        [artifacts.delete(name, version) for name, version in doomed], ctx.concurrency
    )
    return sum(1 for d in done if d)


def _doomed(rule: Rule, kept: int, age: int) -> bool:
    """Whether an artifact's version of this ``age`` goes, ``kept`` newer ones being kept."""
    too_many = rule.max_versions is not None and kept >= rule.max_versions
    return too_many or (rule.max_age is not None and kept > 0 and age > _max_age_ms(rule))


async def _alive(reader: Versions, key: str, directory: str, version: int) -> bool:
    """Whether a listed version is one to keep: readable, not a tombstone (a damaged one
    is left alone, not counted)."""
    try:
        return await reader.info(key, directory, version) is not None
    except CorruptDataError:
        return False


async def _records(ctx: StoreContext, rule: Rule) -> int:
    """Each collection named with the prefix: ``max_age``: ``drop_before(now - max_age)``;
    ``max_count``: whole partitions dropped, oldest first, while the newer ones still hold
    at least ``max_count`` records (so at least that many are kept: a partition goes whole
    or not at all). Returns the partitions dropped.

    The records' times are their writers', but "now" is the object store's (a dated
    listing of the view's settings, where the policy is: one LIST), so a maintainer whose
    clock runs ahead cannot drop young partitions (nor one running behind keep old ones);
    a store that cannot date its objects leaves it to this process's clock."""
    names = [n for n in await record_collections(ctx) if n.startswith(rule.prefix)]
    cut = None if rule.max_age is None else (await _store_now(ctx) - _max_age_ms(rule)) / 1000
    dropped = 0
    for name in names:
        span = await _span_of(ctx, name)
        if span is None:
            continue
        records = AsyncRecords(ctx, name, span)
        if cut is not None and cut > 0:
            dropped += await records.drop_before(cut)
        if rule.max_count is not None:
            dropped += await _keep_newest(records, span, rule.max_count, ctx.concurrency)
    return dropped


async def _keep_newest(records: AsyncRecords, span: str, count: int, concurrency: int) -> int:
    """Drop a collection's oldest partitions while the newer ones hold ``count`` records."""
    parts = await records.partitions()  # holding records, oldest first
    logs = Logs(records.ctx)
    sizes = await aio.bounded([logs.length(p) for p in parts], concurrency)
    kept, first_kept = 0, len(parts)
    while first_kept > 0 and kept < count:
        first_kept -= 1
        kept += sizes[first_kept]
    if first_kept == 0:
        return 0
    end = partition_end(parts[first_kept - 1], span)  # the last dropped partition's end
    return await records.drop_before(end / 1000)


async def _store_now(ctx: StoreContext) -> int:
    """The object store's time (ms), from a dated listing of the view's settings (which
    hold the policy the rule came from); this process's clock where the store cannot say
    (no dated listing, or nothing there and no ``Date`` in the answer)."""
    if not ctx.blob.dated_listing:
        return ctx.clock()
    return (await ctx.blob.list_dated(ctx.layout.meta().base)).now or ctx.clock()


async def _span_of(ctx: StoreContext, name: str) -> str | None:
    """The partition span a collection was created with (its ``span`` value)."""
    inner = Values(StoreContext(ctx.resources, ctx.layout.records(name)))
    (found,) = await inner.load(inner.plan(["span"]))
    return None if found is None else found[0].decode("utf-8", "replace")
