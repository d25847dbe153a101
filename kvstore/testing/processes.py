"""Run a function in several processes at once: the proof of cross-process atomicity
(conditional create, compare-and-swap) needs real processes, not tasks of one loop."""

from __future__ import annotations

import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any


class ProcessFailure(Exception):
    """A child process raised (its traceback is the message), died, or did not report in
    time. ``index`` is the position of its call in ``calls``."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"process {index}: {message}")
        self.index = index


def _child(
    function: Callable[..., Any],
    args: tuple[Any, ...],
    index: int,
    results: Any,
    barrier: Any,
) -> None:
    try:
        value = function(*args, barrier=barrier) if barrier is not None else function(*args)
        try:
            results.put((index, True, value))
        except Exception as exc:  # an unpicklable result is the test's bug: say so
            results.put((index, False, f"result of {function.__name__} not picklable: {exc}"))
    except BaseException:  # report everything, never hang the parent
        results.put((index, False, traceback.format_exc()))


def run_in_processes(
    function: Callable[..., Any],
    calls: Sequence[tuple[Any, ...]],
    *,
    timeout: float = 120.0,
    barrier: bool = False,
    start_method: str = "spawn",
    return_exceptions: bool = False,
) -> list[Any]:
    """``function(*args)`` for each ``args`` in ``calls``, each in its own process, all
    started at once; their return values in the order of ``calls``.

    ``function`` and its arguments and result must pickle (a module-level function; with
    ``spawn`` - the default, as on macOS and Windows - the child imports its module).
    ``barrier=True`` passes ``barrier=`` (a ``multiprocessing.Barrier`` for all the
    processes) to every call, so they can start a race together, e.g. after connecting.
    ``timeout`` bounds the whole run: processes still running then are killed.

    A process that raised, died or timed out becomes a :class:`ProcessFailure` (holding
    the child's traceback): raised - the first one - once every process finished, or, with
    ``return_exceptions=True``, put in the list in place of its result.
    """
    context: Any = multiprocessing.get_context(start_method)  # typeshed: no .Process
    results = context.Queue()
    gate = context.Barrier(len(calls)) if barrier and calls else None
    processes = [
        context.Process(target=_child, args=(function, tuple(args), i, results, gate))
        for i, args in enumerate(calls)
    ]
    outcomes: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        for process in processes:
            process.start()
        while len(outcomes) < len(processes):
            try:
                index, ok, value = results.get(timeout=0.2)
            except queue.Empty:
                if time.monotonic() > deadline:
                    break
                for i, process in enumerate(processes):  # died without a word (killed)
                    if i not in outcomes and process.exitcode not in (None, 0):
                        outcomes[i] = ProcessFailure(i, f"died with exit code {process.exitcode}")
                continue
            outcomes[index] = value if ok else ProcessFailure(index, value)
    finally:
        for process in processes:
            process.join(timeout=max(0.0, min(30.0, deadline - time.monotonic())))
            if process.is_alive():
                process.kill()
                process.join(5)
        results.close()
    ordered = [
        outcomes.get(i, ProcessFailure(i, f"did not report within {timeout} s"))
        for i in range(len(processes))
    ]
    if not return_exceptions:
        for outcome in ordered:
            if isinstance(outcome, ProcessFailure):
                raise outcome
    return ordered
