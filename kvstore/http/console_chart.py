"""The console's stats over time: a ring buffer of samples and an inline SVG chart of them
(drawn on the server: no script).

Samples: :class:`Sampler` keeps the last :data:`KEEP` samples (a ``deque`` with a maximum
length: bounded memory, a few hundred bytes each, ~200 KB at most). One is taken when the
application starts, one every :data:`EVERY` seconds by a background task that the
console's lifespan runs (cancelled when the application stops), and one whenever a console
page shows the chart, unless the newest is under :data:`MIN_GAP` seconds old (so reloading
a page cannot push the history out) - but always while there are fewer than two (a line
needs two points). With the defaults the chart covers the last hour or
more. A sample is the store's counters (:meth:`kvstore.AsyncKVStore.stats`: object-store
requests, by kind, and cache hits/misses) and the HTTP requests the service answered - all
cumulative, so the chart's lines only rise; a steeper line is a busier time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .console_html import esc

EVERY = 10.0
"""Seconds between the background samples."""
KEEP = 360
"""Samples kept (one hour at one per 10 s)."""
MIN_GAP = 1.0
"""A page view adds a sample only if the newest is older than this (seconds)."""

SERIES = (
    ("http", "HTTP requests", "#1f6feb"),
    ("store", "store requests", "#d1242f"),
    ("hits", "cache hits", "#2da44e"),
)


@dataclass(frozen=True)
class Sample:
    at: float
    http: int
    store: int
    hits: int
    misses: int
    kinds: dict[str, int] = field(default_factory=dict)


def sample_of(stats: dict[str, Any], http_requests: int, at: float) -> Sample:
    """A sample of the store's counters (``store.stats()``) and of the HTTP requests."""
    kinds = {
        k.removeprefix("requests."): int(v)
        for k, v in stats.items()
        if k.startswith("requests.") and isinstance(v, int)
    }
    return Sample(
        at,
        http_requests,
        int(stats.get("requests", 0)),
        int(stats.get("cache.hits", 0)),
        int(stats.get("cache.misses", 0)),
        kinds,
    )


class Sampler:
    """The last :data:`KEEP` samples, oldest first; ``take()`` reads the counters now."""

    def __init__(self, read: Callable[[], Sample], keep: int = KEEP) -> None:
        self.read = read
        self.samples: deque[Sample] = deque(maxlen=keep)

    def take(self, *, unless_within: float = 0.0) -> Sample:
        """A sample now, kept - or the newest, if under ``unless_within`` seconds old and
        not the only one."""
        newest = self.samples[-1] if self.samples else None
        if len(self.samples) > 1 and newest is not None and time.time() - newest.at < unless_within:
            return newest
        found = self.read()
        self.samples.append(found)
        return found

    async def run(self, every: float = EVERY) -> None:
        """Sample every ``every`` seconds until cancelled."""
        while True:
            await asyncio.sleep(every)
            self.take()

    @contextlib.asynccontextmanager
    async def running(self, every: float = EVERY) -> Any:
        self.take()
        task = asyncio.create_task(self.run(every))
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def hit_ratio(hits: int, misses: int) -> str:
    return "no lookups yet" if hits + misses == 0 else f"{hits / (hits + misses):.1%}"


def chart(samples: list[Sample], width: int = 640, height: int = 220) -> str:
    """An SVG line chart of the cumulative counts of ``samples`` over time, with a legend;
    each point a ``<circle>`` whose ``<title>`` says its time and values."""
    pad_l, pad_r, pad_t, pad_b = 56, 12, 12, 36
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    t0 = samples[0].at if samples else 0.0
    span = max((samples[-1].at - t0) if samples else 0.0, 1e-9)
    top = max([max(s.http, s.store, s.hits) for s in samples] + [1])

    def x(s: Sample) -> float:
        return pad_l + (w * (s.at - t0) / span if len(samples) > 1 else w / 2)

    def y(v: int) -> float:
        return pad_t + h - h * v / top

    parts = [
        f'<svg id="stats-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" role="img" aria-label="requests over time" '
        f'data-samples="{len(samples)}">',
        f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="#fff" stroke="#ccd"/>',
        f'<text x="{pad_l - 6}" y="{pad_t + 4}" text-anchor="end" font-size="11">{top}</text>',
        f'<text x="{pad_l - 6}" y="{pad_t + h}" text-anchor="end" font-size="11">0</text>',
    ]
    if samples:
        minutes = span / 60 if len(samples) > 1 else 0.0
        parts.append(
            f'<text x="{pad_l}" y="{height - 20}" font-size="11">'
            f"{esc(time.strftime('%H:%M:%S', time.gmtime(t0)))} UTC</text>"
            f'<text x="{pad_l + w}" y="{height - 20}" text-anchor="end" font-size="11">'
            f"+{minutes:.1f} min</text>"
        )
    for i, (name, label, color) in enumerate(SERIES):
        points = " ".join(f"{x(s):.1f},{y(getattr(s, name)):.1f}" for s in samples)
        if len(samples) > 1:
            parts.append(
                f'<polyline class="series-{name}" fill="none" stroke="{color}" '
                f'stroke-width="2" points="{points}"/>'
            )
        for s in samples:
            stamp = time.strftime("%H:%M:%S", time.gmtime(s.at))
            parts.append(
                f'<circle class="point-{name}" cx="{x(s):.1f}" cy="{y(getattr(s, name)):.1f}" '
                f'r="2.5" fill="{color}"><title>{esc(f"{stamp} {label}: {getattr(s, name)}")}'
                "</title></circle>"
            )
        lx = pad_l + 8 + i * 150
        parts.append(
            f'<rect x="{lx}" y="{height - 12}" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 14}" y="{height - 3}" font-size="11">{esc(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
