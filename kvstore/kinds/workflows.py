"""Suspended workflows: an agent run parked waiting for a person, an event or a time, with
everything it needs to go on, and resumed exactly once.

``AsyncWorkflows(store)`` (``Workflows`` blocking) keeps each workflow as one value,
``{name}/{workflow_id}``, holding JSON: its ``state`` ("waiting" or "resumed"), the
``context`` to resume with, the ``reason`` it waits, when it was suspended and when it may
resume (``resume_after``). Every change is a compare-and-swap on the value's version
(``set(..., if_version=)``, the object store's conditional write), so:

* ``suspend`` of a workflow already waiting raises ConflictError: a run is never parked
  twice, and two processes suspending the same id cannot both succeed;
* ``resume`` hands the context to exactly one caller, however many processes race for it;
  the others get None. A resumed workflow is kept (state "resumed", with when) for
  ``keep_resumed`` seconds (default 7 days; None: for good), then expires;
* ``waiting()`` lists the workflows waiting, optionally only those due by a time or
  waiting for one reason: one LIST per 1000 workflows and a read of each (cached).

Built on the store's public API only (works through ``kvstore+http://`` too).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..api import AsyncKVStore
from ..errors import ConflictError, CorruptDataError, InvalidValueError
from ..records.model import END_MS, to_ms
from ..sync import KVStore, _blocking, _Face
from . import _json

WEEK = 7 * 24 * 3600
STATES = ("waiting", "resumed")
MAX_KEEP = 2**62 // 1000
"""The longest ``keep_resumed`` (seconds): what a value's expiry can hold."""


@dataclass(frozen=True)
class Workflow:
    """A workflow as stored: ``workflow_id``, ``state`` ("waiting" or "resumed"),
    ``context``, ``reason``, ``suspended_at``, ``resume_after`` (None: whenever) and
    ``resumed_at`` (None while waiting), times in Unix seconds."""

    workflow_id: str
    state: str
    context: Any
    reason: str
    suspended_at: float
    resume_after: float | None = None
    resumed_at: float | None = None

    @property
    def due(self) -> bool:
        """Waiting, and its ``resume_after`` (if any) has passed by this machine's clock."""
        return self.state == "waiting" and (
            self.resume_after is None or self.resume_after <= time.time()
        )


def _id(workflow_id: object) -> str:
    if not isinstance(workflow_id, str) or not workflow_id or len(workflow_id) > 512:
        raise InvalidValueError(f"a workflow id is a str of 1 to 512 chars, not {workflow_id!r}")
    return workflow_id


class AsyncWorkflows:
    """Suspended workflows (see the module docstring)."""

    def __init__(
        self, store: AsyncKVStore, name: str = "workflows", keep_resumed: float | None = WEEK
    ):
        if keep_resumed is not None and (
            isinstance(keep_resumed, bool)
            or not isinstance(keep_resumed, (int, float))
            or not 0 < keep_resumed <= MAX_KEEP
        ):
            raise InvalidValueError(
                f"keep_resumed is seconds > 0 (at most {MAX_KEEP}) or None, not {keep_resumed!r}"
            )
        if not isinstance(name, str) or not name or len(name) > 256:
            raise InvalidValueError(f"the workflows' name is a str of 1 to 256 chars, not {name!r}")
        self.store = store
        self.prefix = f"{name}/"
        self.keep_resumed = keep_resumed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.prefix!r} of {self.store!r}>"

    def _decode(self, workflow_id: str, raw: bytes | str) -> Workflow:
        found = _json.loads(raw, f"workflow {workflow_id!r}")

        def ms(name: str, optional: bool) -> float | None:
            value = found.get(name)
            if value is None and optional:
                return None
            if not _json.is_number(value) or not 0 <= value < END_MS:
                raise CorruptDataError(f"workflow {workflow_id!r} is not one ({name}: {value!r})")
            return float(value) / 1000

        if not isinstance(found, dict) or "context" not in found:
            raise CorruptDataError(f"workflow {workflow_id!r} is not one (no context)")
        if found.get("state") not in STATES or not isinstance(found.get("reason"), str):
            raise CorruptDataError(
                f"workflow {workflow_id!r} is not one (state {found.get('state')!r}, "
                f"reason {found.get('reason')!r})"
            )
        suspended_at = ms("suspended_at", False)
        assert suspended_at is not None
        return Workflow(
            workflow_id,
            found["state"],
            found["context"],
            found["reason"],
            suspended_at,
            ms("resume_after", True),
            ms("resumed_at", True),
        )

    async def suspend(
        self, workflow_id: str, context: Any, *, reason: str, resume_after: Any = None
    ) -> Workflow:
        """Park ``workflow_id`` with ``context`` (JSON-like values and bytes), waiting for
        ``reason``, not to be resumed before ``resume_after`` (Unix seconds or a datetime;
        None: any time). ConflictError if it is already waiting (or another process parked
        it at the same moment). Durable on return."""
        key = self.prefix + _id(workflow_id)
        if not isinstance(reason, str):
            raise InvalidValueError(f"reason is a str, not {reason!r}")
        now = to_ms(time.time())
        after = None if resume_after is None else to_ms(resume_after, "resume_after")
        text = _json.dumps(
            {
                "state": "waiting",
                "context": context,
                "reason": reason,
                "suspended_at": now,
                "resume_after": after,
            }
        )
        with _json.reading(f"workflow {workflow_id!r}"):
            current = await self.store.get_versioned(key)
        if current is not None and self._decode(workflow_id, current.value).state == "waiting":
            raise ConflictError(f"workflow {workflow_id!r} is already waiting")
        if current is None:
            done = await self.store.set(key, text, nx=True)
        else:
            done = await self.store.set(key, text, if_version=current.version)
        if not done:
            raise ConflictError(f"workflow {workflow_id!r} was suspended by another caller")
        return self._decode(workflow_id, text)

    async def resume(self, workflow_id: str, *, only_due: bool = False) -> Workflow | None:
        """Take a waiting workflow: returns it (with its context) to exactly one caller
        and marks it resumed; None if it is not waiting (never suspended, already resumed,
        or resumed by another caller meanwhile) or, with ``only_due``, not due yet."""
        key = self.prefix + _id(workflow_id)
        with _json.reading(f"workflow {workflow_id!r}"):
            current = await self.store.get_versioned(key)
        if current is None:
            return None
        found = self._decode(workflow_id, current.value)
        if found.state != "waiting" or (only_due and not found.due):
            return None
        stored = _json.loads(current.value, f"workflow {workflow_id!r}")
        stored.update(state="resumed", resumed_at=to_ms(time.time()))
        text = _json.dumps(stored)
        done = await self.store.set(key, text, if_version=current.version, ex=self.keep_resumed)
        return self._decode(workflow_id, text) if done else None

    async def get(self, workflow_id: str) -> Workflow | None:
        """The workflow as stored (waiting or resumed), or None."""
        key = self.prefix + _id(workflow_id)
        with _json.reading(f"workflow {workflow_id!r}"):
            raw = await self.store.get(key)
        return None if raw is None else self._decode(workflow_id, raw)

    async def waiting(self, *, reason: str | None = None, due_by: Any = None) -> list[Workflow]:
        """The workflows waiting (for ``reason``, if given; whose ``resume_after`` is at or
        before ``due_by``, if given: Unix seconds or a datetime), oldest suspension first."""
        if reason is not None and not isinstance(reason, str):
            raise InvalidValueError(f"reason is a str, not {reason!r}")
        due = None if due_by is None else to_ms(due_by, "due_by") / 1000
        out = []
        async for page in self.store.key_pages(self.prefix, logs=False):
            raws = await _json.mget(
                self.store, page, lambda k: f"workflow {k[len(self.prefix) :]!r}"
            )
            for key, raw in zip(page, raws, strict=True):
                if raw is None:
                    continue
                found = self._decode(key[len(self.prefix) :], raw)
                if found.state != "waiting" or (reason is not None and found.reason != reason):
                    continue
                if due is not None and found.resume_after is not None and found.resume_after > due:
                    continue
                out.append(found)
        return sorted(out, key=lambda w: (w.suspended_at, w.workflow_id))


class Workflows(_Face[AsyncWorkflows]):
    """Suspended workflows, blocking: ``Workflows(store)``. See :mod:`kvstore.kinds.workflows`."""

    def __init__(self, store: KVStore, name: str = "workflows", keep_resumed: float | None = WEEK):
        super().__init__(AsyncWorkflows(store.aio, name, keep_resumed))

    suspend = _blocking(AsyncWorkflows.suspend)
    resume = _blocking(AsyncWorkflows.resume)
    get = _blocking(AsyncWorkflows.get)
    waiting = _blocking(AsyncWorkflows.waiting)

    def __repr__(self) -> str:
        return repr(self._core).replace("AsyncWorkflows", "Workflows", 1)
