"""A one-line progress display for the long ``kvstore`` commands (no dependency).

It redraws one line on stderr in place (``\\r``), at most every ``interval`` seconds:
``export: 120/250 sessions, 41.3/s``. It is on when stderr is a terminal, or when
``--progress`` forces it (``--no-progress`` turns it off); off, it writes nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO


def progress_stream(choice: bool | None, stream: TextIO | None = None) -> TextIO | None:
    """Where progress goes: ``stream`` (default stderr) if ``choice`` is True, or if it is
    None and the stream is a terminal; else None (no progress)."""
    stream = sys.stderr if stream is None else stream
    if choice is None:
        try:
            choice = stream.isatty()
        except (AttributeError, ValueError):
            choice = False
    return stream if choice else None


class Progress:
    """``done`` of ``total`` (when known) things of kind ``what``, and their rate since the
    first of that kind. Thread-safe (a library callback may report from kvstore's loop
    thread); :meth:`close` (or leaving the ``with``) draws the last state and ends the line.
    """

    def __init__(
        self,
        stream: TextIO | None,
        label: str,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.label = label
        self.interval = interval
        self.clock = clock
        self.what = ""
        self.done = 0
        self.total: int | None = None
        self._started = clock()
        self._drawn_at: float | None = None
        self._width = 0
        self._dirty = False
        self._lock = threading.Lock()

    def update(self, done: int, total: int | None = None, what: str = "sessions") -> None:
        """Now ``done`` of ``total``; a new ``what`` starts a new rate."""
        with self._lock:
            if what != self.what:
                self.what, self._started, self._drawn_at = what, self.clock(), None
            self.done, self.total, self._dirty = done, total, True
            now = self.clock()
            if (
                self._drawn_at is None
                or now - self._drawn_at >= self.interval
                or (total is not None and done >= total)
            ):
                self._draw(now)

    def advance(self, count: int = 1, total: int | None = None, what: str = "sessions") -> None:
        """``count`` more done."""
        self.update(self.done + count if what == self.what else count, total, what)

    def close(self) -> None:
        with self._lock:
            if self.stream is not None and self.what:
                if self._dirty:
                    self._draw(self.clock())
                self.stream.write("\n")
                self.stream.flush()
            self.stream = None

    def line(self, now: float) -> str:
        count = f"{self.done}" if self.total is None else f"{self.done}/{self.total}"
        text = f"{self.label}: {count} {self.what}"
        elapsed = now - self._started
        if elapsed > 0 and self.done:
            text += f", {self.done / elapsed:.1f}/s"
        return text

    def _draw(self, now: float) -> None:
        if self.stream is None:
            return
        text = self.line(now)
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)
        self._drawn_at, self._dirty = now, False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Progress", "progress_stream"]
