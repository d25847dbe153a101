"""Sorted sets: ZADD (NX/XX/GT/LT/CH/INCR), ZREM, ZSCORE, ZMSCORE, ZINCRBY, ZCARD, ZCOUNT,
ZLEXCOUNT, ZRANGE (BYSCORE/BYLEX/REV/LIMIT/WITHSCORES), ZRANGEBYSCORE, ZREVRANGEBYSCORE,
ZREVRANGE, ZRANGEBYLEX, ZREVRANGEBYLEX, ZRANK/ZREVRANK (WITHSCORE), ZREMRANGEBYSCORE,
ZREMRANGEBYRANK, ZREMRANGEBYLEX, ZPOPMIN, ZPOPMAX, ZSCAN.

A sorted set is one value object, its members ordered by (score, member)
(:mod:`.collections`); each write is a compare-and-swap of it (atomic across processes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import codec
from ..values import DELETE, Change
from .collections import dump_zset, load_zset, ordered
from .core import Live, Op, command, expect, key_of
from .reply import SYNTAX, Reply, err, fmt_double, parse_float, parse_int
from .scanning import scan_items

if TYPE_CHECKING:
    from . import Commands

ZSET = codec.ZSET
NOT_FLOAT_RANGE = "min or max is not a float"
NOT_LEX_RANGE = "min or max not valid string range item"


def zset_of(current: Live) -> dict[bytes, float]:
    if not expect(current, ZSET):
        return {}
    assert current is not None
    return load_zset(current[0])


def _written(current: Live, scores: dict[bytes, float]) -> Change:
    if not scores:
        return DELETE if current is not None else None
    return dump_zset(scores), (current[1] if current is not None else 0), ZSET


def _with_scores(items: list[list[Any]], withscores: bool) -> list[Reply]:
    out: list[Reply] = []
    for member, score in items:
        out.append(member)
        if withscores:
            out.append(fmt_double(score))
    return out


# -- bounds -------------------------------------------------------------------------------


def score_bound(raw: bytes) -> tuple[float, bool]:
    """(value, exclusive) of a score bound: ``1.5``, ``(1.5``, ``-inf``, ``+inf``."""
    exclusive = raw.startswith(b"(")
    value = parse_float(raw[1:] if exclusive else raw, NOT_FLOAT_RANGE)
    return value, exclusive


def in_score_range(score: float, lo: tuple[float, bool], hi: tuple[float, bool]) -> bool:
    above = score > lo[0] if lo[1] else score >= lo[0]
    below = score < hi[0] if hi[1] else score <= hi[0]
    return above and below


LexBound = tuple[bytes | None, bool, int]  # (value, exclusive, -1 for '-' / +1 for '+')


def lex_bound(raw: bytes) -> LexBound:
    if raw == b"-":
        return None, False, -1
    if raw == b"+":
        return None, False, 1
    if raw[:1] == b"[":
        return raw[1:], False, 0
    if raw[:1] == b"(":
        return raw[1:], True, 0
    raise err(NOT_LEX_RANGE)


def in_lex_range(member: bytes, lo: LexBound, hi: LexBound) -> bool:
    def above() -> bool:
        if lo[2]:
            return lo[2] < 0
        assert lo[0] is not None
        return member > lo[0] if lo[1] else member >= lo[0]

    def below() -> bool:
        if hi[2]:
            return hi[2] > 0
        assert hi[0] is not None
        return member < hi[0] if hi[1] else member <= hi[0]

    return above() and below()


def _rank_window(start: int, stop: int, n: int) -> tuple[int, int] | None:
    lo = max(0, n + start) if start < 0 else start
    hi = n + stop if stop < 0 else min(stop, n - 1)
    if lo > hi or lo >= n:
        return None
    return lo, hi


# -- writes -------------------------------------------------------------------------------


@command("ZADD", -4, write=True)
def zadd(core: Commands, args: list[bytes]) -> Op:
    flags: set[bytes] = set()
    i = 1
    while i < len(args) and args[i].upper() in (b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"):
        flags.add(args[i].upper())
        i += 1
    rest = args[i:]
    if not rest or len(rest) % 2:
        raise err(SYNTAX)
    nx, xx, gt, lt, ch, incr = (f in flags for f in (b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"))
    if nx and xx:
        raise err("XX and NX options at the same time are not compatible")
    if (gt and lt) or (nx and (gt or lt)):
        raise err("GT, LT, and/or NX options at the same time are not compatible")
    if incr and len(rest) != 2:
        raise err("INCR option supports a single increment-element pair")
    pairs = [(rest[j + 1], parse_float(rest[j])) for j in range(0, len(rest), 2)]

    def change(current: Live) -> tuple[Reply, Change]:
        scores = zset_of(current)
        added = changed = 0
        result: Reply = None
        for member, score in pairs:
            old = scores.get(member)
            if (nx and old is not None) or (xx and old is None):
                continue
            new = score + old if incr and old is not None else score
            if math.isnan(new):
                raise err("resulting score is not a number (NaN)")
            if old is not None and ((gt and new <= old) or (lt and new >= old)):
                continue
            if old is None:
                added += 1
            elif new != old:
                changed += 1
            scores[member] = new
            result = fmt_double(new)
        if incr:
            return result, (_written(current, scores) if added or changed else None)
        count = added + changed if ch else added
        return count, (_written(current, scores) if added or changed else None)

    return Op(key_of(args[0]), change=change)


@command("ZINCRBY", 4, write=True)
def zincrby(core: Commands, args: list[bytes]) -> Op:
    by, member = parse_float(args[1]), args[2]

    def change(current: Live) -> tuple[Reply, Change]:
        scores = zset_of(current)
        new = scores.get(member, 0.0) + by
        if math.isnan(new):
            raise err("resulting score is not a number (NaN)")
        scores[member] = new
        return fmt_double(new), _written(current, scores)

    return Op(key_of(args[0]), change=change)


@command("ZREM", -3, write=True)
def zrem(core: Commands, args: list[bytes]) -> Op:
    gone = set(args[1:])

    def change(current: Live) -> tuple[Reply, Change]:
        scores = zset_of(current)
        removed = [m for m in gone if m in scores]
        if not removed:
            return 0, None
        for m in removed:
            del scores[m]
        return len(removed), _written(current, scores)

    return Op(key_of(args[0]), change=change)


def _remove_where(
    core: Commands, key: bytes, doomed: Callable[[list[list[Any]]], list[bytes]]
) -> Op:
    def change(current: Live) -> tuple[Reply, Change]:
        scores = zset_of(current)
        gone = doomed(ordered(scores))
        if not gone:
            return 0, None
        for m in gone:
            del scores[m]
        return len(gone), _written(current, scores)

    return Op(key_of(key), change=change)


@command("ZREMRANGEBYSCORE", 4, write=True)
def zremrangebyscore(core: Commands, args: list[bytes]) -> Op:
    lo, hi = score_bound(args[1]), score_bound(args[2])
    return _remove_where(
        core, args[0], lambda items: [m for m, s in items if in_score_range(s, lo, hi)]
    )


@command("ZREMRANGEBYLEX", 4, write=True)
def zremrangebylex(core: Commands, args: list[bytes]) -> Op:
    lo, hi = lex_bound(args[1]), lex_bound(args[2])
    return _remove_where(
        core, args[0], lambda items: [m for m, _ in items if in_lex_range(m, lo, hi)]
    )


@command("ZREMRANGEBYRANK", 4, write=True)
def zremrangebyrank(core: Commands, args: list[bytes]) -> Op:
    start, stop = parse_int(args[1]), parse_int(args[2])

    def doomed(items: list[list[Any]]) -> list[bytes]:
        window = _rank_window(start, stop, len(items))
        return [] if window is None else [m for m, _ in items[window[0] : window[1] + 1]]

    return _remove_where(core, args[0], doomed)


def _pop(name: str, highest: bool) -> None:
    @command(name, -2, write=True)
    def pop(core: Commands, args: list[bytes]) -> Op:
        if len(args) > 2:
            raise err(SYNTAX)
        count = 1
        if len(args) == 2:
            count = parse_int(args[1], "value is out of range, must be positive")
            if count < 0:
                raise err("value is out of range, must be positive")

        def change(current: Live) -> tuple[Reply, Change]:
            if count == 0:
                return [], None  # as Redis: before the key is even looked at
            scores = zset_of(current)
            items = ordered(scores)
            if highest:
                items.reverse()
            taken = items[:count]
            if not taken:
                return [], None
            for m, _ in taken:
                del scores[m]
            return _with_scores(taken, True), _written(current, scores)

        return Op(key_of(args[0]), change=change)


_pop("ZPOPMIN", False)
_pop("ZPOPMAX", True)


# -- reads --------------------------------------------------------------------------------


@command("ZSCORE", 3)
def zscore(core: Commands, args: list[bytes]) -> Op:
    member = args[1]

    def read(current: Live) -> Reply:
        score = zset_of(current).get(member)
        return None if score is None else fmt_double(score)

    return Op(key_of(args[0]), read=read)


@command("ZMSCORE", -3)
def zmscore(core: Commands, args: list[bytes]) -> Op:
    members = args[1:]

    def read(current: Live) -> Reply:
        scores = zset_of(current)
        return [None if m not in scores else fmt_double(scores[m]) for m in members]

    return Op(key_of(args[0]), read=read)


@command("ZCARD", 2)
def zcard(core: Commands, args: list[bytes]) -> Op:
    return Op(key_of(args[0]), read=lambda current: len(zset_of(current)))


@command("ZCOUNT", 4)
def zcount(core: Commands, args: list[bytes]) -> Op:
    lo, hi = score_bound(args[1]), score_bound(args[2])
    return Op(
        key_of(args[0]),
        read=lambda c: sum(in_score_range(s, lo, hi) for s in zset_of(c).values()),
    )


@command("ZLEXCOUNT", 4)
def zlexcount(core: Commands, args: list[bytes]) -> Op:
    lo, hi = lex_bound(args[1]), lex_bound(args[2])
    return Op(key_of(args[0]), read=lambda c: sum(in_lex_range(m, lo, hi) for m in zset_of(c)))


def _rank(name: str, reverse: bool) -> None:
    @command(name, -3)
    def rank(core: Commands, args: list[bytes]) -> Op:
        member = args[1]
        if len(args) > 3 or (len(args) == 3 and args[2].upper() != b"WITHSCORE"):
            raise err(SYNTAX)
        withscore = len(args) == 3

        def read(current: Live) -> Reply:
            items = ordered(zset_of(current))
            if reverse:
                items.reverse()
            for i, (m, s) in enumerate(items):
                if m == member:
                    return [i, fmt_double(s)] if withscore else i
            return None

        return Op(key_of(args[0]), read=read)


_rank("ZRANK", False)
_rank("ZREVRANK", True)


def _select(
    items: list[list[Any]],
    by: str,
    lo_raw: bytes,
    hi_raw: bytes,
    rev: bool,
    limit: tuple[int, int] | None,
) -> list[list[Any]]:
    """The members ZRANGE selects (ranks, scores or lex), in reply order."""
    if by == "rank":
        start, stop = parse_int(lo_raw), parse_int(hi_raw)
        if rev:
            items = items[::-1]
        window = _rank_window(start, stop, len(items))
        return [] if window is None else items[window[0] : window[1] + 1]
    if rev:
        lo_raw, hi_raw = hi_raw, lo_raw
        items = items[::-1]
    if by == "score":
        lo, hi = score_bound(lo_raw), score_bound(hi_raw)
        chosen = [it for it in items if in_score_range(it[1], lo, hi)]
    else:
        lb, hb = lex_bound(lo_raw), lex_bound(hi_raw)
        chosen = [it for it in items if in_lex_range(it[0], lb, hb)]
    if limit is not None:
        offset, count = limit
        if offset < 0:
            return []
        chosen = chosen[offset:] if count < 0 else chosen[offset : offset + count]
    return chosen


def _range_op(
    core: Commands,
    key: bytes,
    lo: bytes,
    hi: bytes,
    by: str,
    rev: bool,
    limit: tuple[int, int] | None,
    withscores: bool,
) -> Op:
    if by == "rank":
        parse_int(lo), parse_int(hi)
    elif by == "score":
        score_bound(lo), score_bound(hi)
    else:
        lex_bound(lo), lex_bound(hi)

    def read(current: Live) -> Reply:
        scores = zset_of(current)  # LIMIT n -1 with ranks is ignored, as in Redis 6.2 and 7
        return _with_scores(_select(ordered(scores), by, lo, hi, rev, limit), withscores)

    return Op(key_of(key), read=read)


def _options(args: list[bytes], allowed: set[bytes]) -> tuple[set[bytes], tuple[int, int] | None]:
    flags: set[bytes] = set()
    limit = None
    i = 0
    while i < len(args):
        opt = args[i].upper()
        if opt == b"LIMIT" and b"LIMIT" in allowed and i + 2 < len(args):
            limit = (parse_int(args[i + 1]), parse_int(args[i + 2]))
            i += 3
            continue
        if opt not in allowed or opt == b"LIMIT":
            raise err(SYNTAX)
        flags.add(opt)
        i += 1
    return flags, limit


@command("ZRANGE", -4)
def zrange(core: Commands, args: list[bytes]) -> Op:
    flags, limit = _options(args[3:], {b"BYSCORE", b"BYLEX", b"REV", b"LIMIT", b"WITHSCORES"})
    by = "score" if b"BYSCORE" in flags else "lex" if b"BYLEX" in flags else "rank"
    if b"BYSCORE" in flags and b"BYLEX" in flags:
        raise err(SYNTAX)
    if limit is not None and by == "rank" and limit[1] != -1:  # Redis checks the count only
        raise err(
            "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        )
    if by == "lex" and b"WITHSCORES" in flags:
        raise err("syntax error, WITHSCORES not supported in combination with BYLEX")
    return _range_op(
        core, args[0], args[1], args[2], by, b"REV" in flags, limit, b"WITHSCORES" in flags
    )


@command("ZREVRANGE", -4)
def zrevrange(core: Commands, args: list[bytes]) -> Op:
    flags, _ = _options(args[3:], {b"WITHSCORES"})
    return _range_op(core, args[0], args[1], args[2], "rank", True, None, b"WITHSCORES" in flags)


def _by(name: str, by: str, rev: bool) -> None:
    @command(name, -4)
    def ranged(core: Commands, args: list[bytes]) -> Op:
        allowed = {b"LIMIT"} | ({b"WITHSCORES"} if by == "score" else set())
        flags, limit = _options(args[3:], allowed)
        return _range_op(core, args[0], args[1], args[2], by, rev, limit, b"WITHSCORES" in flags)


_by("ZRANGEBYSCORE", "score", False)
_by("ZREVRANGEBYSCORE", "score", True)
_by("ZRANGEBYLEX", "lex", False)
_by("ZREVRANGEBYLEX", "lex", True)


@command("ZSCAN", -3)
def zscan(core: Commands, args: list[bytes]) -> Op:
    return scan_items(
        core,
        args,
        lambda current: [(m, [m, fmt_double(s)]) for m, s in ordered(zset_of(current))],
    )
