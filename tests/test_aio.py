"""kvstore.aio: the one bounded gather every layer uses."""

from __future__ import annotations

import asyncio
import warnings

import pytest

from kvstore import aio


@pytest.mark.parametrize("limit", [1, 7, 1000])
def test_bounded_keeps_order_and_limit(limit: int) -> None:
    running = peak = 0

    async def job(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (i % 3))
        running -= 1
        return i

    assert asyncio.run(aio.bounded([job(i) for i in range(50)], limit)) == list(range(50))
    assert peak == min(limit, 50)


def test_bounded_settles_every_task_before_raising_the_first_error() -> None:
    finished: list[int] = []

    async def job(i: int) -> int:
        await asyncio.sleep(0.01 if i != 3 else 0)
        if i in (3, 8):
            raise ValueError(i)
        finished.append(i)
        return i

    with pytest.raises(ValueError, match="3"):
        asyncio.run(aio.bounded([job(i) for i in range(20)], 4))
    assert sorted(finished) == [i for i in range(20) if i not in (3, 8)]


def test_cancelled_bounded_leaves_no_unawaited_coroutine() -> None:
    async def main() -> None:
        sleepers = [asyncio.sleep(10) for _ in range(30)]
        task: asyncio.Task[list[None]] = asyncio.create_task(aio.bounded(sleepers, 3))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(main())
