"""Evaluations: datasets of examples, runs over them, and the scores each run gives.

``AsyncEvals(store)`` (``Evals`` blocking), under the name ``evals``:

* a **dataset** is a versioned artifact, ``{name}/datasets/{dataset}``: its examples (a list
  of JSON-like values) compressed, each save a new version, old versions readable
  (:mod:`kvstore.artifacts`: immutable, checked by sha256 on read);
* a **run** is a value, ``{name}/runs/{run_id}``, made once by a conditional create (two
  processes starting the same run id: one wins, the other gets ConflictError), naming the
  dataset version it evaluates;
* its **scores** are a log, ``{name}/scores/{run_id}``: each ``score`` one appended record
  (durable and atomic on return; any number of scorers in any number of processes lose
  and double nothing), read back whole by ``scores`` and ``summary`` (one LIST and a GET
  per chunk).

Built on the store's public API only (works through ``kvstore+http://`` too).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..api import AsyncKVStore
from ..errors import ConflictError, CorruptDataError, InvalidValueError, NotFoundError
from ..sync import KVStore, _blocking, _Face
from . import _json


@dataclass(frozen=True)
class Run:
    """One evaluation run: ``run_id``, the ``dataset`` and its ``version`` it evaluates,
    when it ``started`` (Unix seconds) and the caller's ``metadata``."""

    run_id: str
    dataset: str
    version: int
    started: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    """One score: the ``example`` it is for (its id or index), the ``metric``, its
    ``value``, optional ``details``, and when it was given (Unix seconds)."""

    example: str | int
    metric: str
    value: float
    details: Any = None
    at: float = 0.0


def _version(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 256:
        raise InvalidValueError(f"{what} is a str of 1 to 256 chars, not {value!r}")
    return value


class AsyncEvals:
    """Datasets, runs and scores (see the module docstring)."""

    def __init__(self, store: AsyncKVStore, name: str = "evals"):
        self.store = store
        self.name = _name("the evals' name", name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} of {self.store!r}>"

    def _dataset(self, dataset: str) -> str:
        return f"{self.name}/datasets/{_name('a dataset name', dataset)}"

    def _run(self, run_id: str) -> str:
        return f"{self.name}/runs/{_name('a run id', run_id)}"

    def _scores(self, run_id: str) -> str:
        return f"{self.name}/scores/{_name('a run id', run_id)}"

    # -- datasets ------------------------------------------------------------------------------

    async def save_dataset(self, dataset: str, examples: Iterable[Any]) -> int:
        """Store ``examples`` (JSON-like values and bytes) as the dataset's next version;
        returns the version (0, 1, 2 ...)."""
        if isinstance(examples, (str, bytes, dict)) or not isinstance(examples, Iterable):
            raise InvalidValueError("examples are a list of JSON-like values")
        rows = list(examples)
        text = _json.dumps(rows).encode()
        return await self.store.artifacts.save(
            self._dataset(dataset),
            text,
            mime_type="application/json",
            metadata={"examples": len(rows)},
        )

    async def dataset(self, dataset: str, version: int | None = None) -> list[Any] | None:
        """The dataset's examples (its latest version, or ``version``); None if none."""
        found = await self.store.artifacts.load(self._dataset(dataset), version)
        if found is None:
            return None
        rows = _json.loads(found.data, f"dataset {dataset!r}")
        if not isinstance(rows, list):
            raise CorruptDataError(f"dataset {dataset!r} holds no list of examples")
        return rows

    # -- runs ----------------------------------------------------------------------------------

    async def start_run(
        self,
        dataset: str,
        *,
        run_id: str | None = None,
        version: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Run:
        """Start a run over ``dataset`` (its latest version, or ``version``): NotFoundError
        if there is no such dataset version, ConflictError if ``run_id`` is taken
        (default: a new random id)."""
        if version is not None and not _version(version):
            raise InvalidValueError(f"a dataset version is an int >= 0, not {version!r}")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidValueError(f"a run's metadata is a dict, not {metadata!r}")
        run_id = secrets.token_hex(8) if run_id is None else _name("a run id", run_id)
        versions = await self.store.artifacts.versions(self._dataset(dataset))
        chosen = version if version is not None else (versions[-1] if versions else None)
        if chosen is None or chosen not in versions:
            raise NotFoundError(
                f"no dataset {dataset!r}" + (f" version {version}" if version is not None else "")
            )
        run = Run(run_id, dataset, chosen, round(time.time(), 6), metadata or {})
        text = _json.dumps(
            {
                "dataset": run.dataset,
                "version": run.version,
                "started": run.started,
                "metadata": run.metadata,
            }
        )
        if not await self.store.set(self._run(run.run_id), text, nx=True):
            raise ConflictError(f"run {run.run_id!r} exists already")
        return self._decode_run(run.run_id, text)

    async def run(self, run_id: str) -> Run | None:
        """The run, or None."""
        key = self._run(run_id)
        with _json.reading(f"run {run_id!r}"):
            raw = await self.store.get(key)
        return None if raw is None else self._decode_run(run_id, raw)

    def _decode_run(self, run_id: str, raw: bytes | str) -> Run:
        found = _json.loads(raw, f"run {run_id!r}")
        if (
            not isinstance(found, dict)
            or not isinstance(found.get("dataset"), str)
            or not _version(found.get("version"))
            or not _json.is_number(found.get("started"))
            or not isinstance(found.get("metadata"), dict)
        ):
            raise CorruptDataError(f"run {run_id!r} is not one: {found!r:.200}")
        return Run(
            run_id, found["dataset"], found["version"], float(found["started"]), found["metadata"]
        )

    async def runs(self, dataset: str | None = None) -> list[Run]:
        """Every run (of ``dataset``, if given), oldest first: one LIST per 1000 runs and a
        read of each."""
        prefix = f"{self.name}/runs/"
        out = []
        async for page in self.store.key_pages(prefix, logs=False):
            raws = await _json.mget(self.store, page, lambda k: f"run {k[len(prefix) :]!r}")
            for key, raw in zip(page, raws, strict=True):
                if raw is not None:
                    run = self._decode_run(key[len(prefix) :], raw)
                    if dataset is None or run.dataset == dataset:
                        out.append(run)
        return sorted(out, key=lambda r: (r.started, r.run_id))

    # -- scores --------------------------------------------------------------------------------

    async def score(
        self, run_id: str, example: str | int, metric: str, value: float, *, details: Any = None
    ) -> Score:
        """Record one score of the run (NotFoundError if the run was never started).
        Durable and atomic on return."""
        (found,) = await self.score_many(run_id, [(example, metric, value, details)])
        return found

    async def score_many(self, run_id: str, scores: Iterable[tuple[Any, ...]]) -> list[Score]:
        """Record scores, each ``(example, metric, value)`` or ``(example, metric, value,
        details)``: one append for all of them (all or none)."""
        if isinstance(scores, (str, bytes, dict)) or not isinstance(scores, Iterable):
            raise InvalidValueError("score_many takes a list of (example, metric, value, details)")
        key = self._run(run_id)
        with _json.reading(f"run {run_id!r}"):
            missing = await self.store.get(key) is None
        if missing:
            raise NotFoundError(f"no run {run_id!r}: start_run first")
        now = round(time.time(), 3)
        rows = []
        for item in scores:
            if not isinstance(item, (tuple, list)) or not 3 <= len(item) <= 4:
                raise InvalidValueError("a score is (example, metric, value, details)")
            example, metric, value, details = (*item, None)[:4]
            if isinstance(example, bool) or not isinstance(example, (str, int)):
                raise InvalidValueError(
                    f"an example is its id (str) or index (int), not {example!r}"
                )
            if not _json.is_number(value):
                raise InvalidValueError(f"a score's value is a finite number, not {value!r}")
            rows.append(Score(example, _name("a metric", metric), float(value), details, now))
        if not rows:
            return []
        texts = [_json.dumps([s.example, s.metric, s.value, s.details, s.at]) for s in rows]
        await self.store.append(self._scores(run_id), *texts)
        return rows

    async def scores(self, run_id: str, *, metric: str | None = None) -> list[Score]:
        """The run's scores in the order they were recorded (of one ``metric``, if given)."""
        out = []
        key = self._scores(run_id)
        with _json.reading(f"a score of run {run_id!r}"):
            raws = await self.store.range(key)
        for raw in raws:
            found = _json.loads(raw, f"a score of run {run_id!r}")
            if (
                not isinstance(found, list)
                or len(found) != 5
                or isinstance(found[0], bool)
                or not isinstance(found[0], (str, int))
                or not isinstance(found[1], str)
                or not _json.is_number(found[2])
                or not _json.is_number(found[4])
            ):
                raise CorruptDataError(f"a score of run {run_id!r} is not one: {found!r:.200}")
            score = Score(found[0], found[1], float(found[2]), found[3], float(found[4]))
            if metric is None or score.metric == metric:
                out.append(score)
        return out

    async def summary(self, run_id: str) -> dict[str, dict[str, float]]:
        """Per metric: ``count``, ``mean``, ``min``, ``max`` of the run's scores."""
        by_metric: dict[str, list[float]] = {}
        for score in await self.scores(run_id):
            by_metric.setdefault(score.metric, []).append(score.value)
        return {
            metric: {
                "count": len(values),
                "mean": math.fsum(values) / len(values),
                "min": min(values),
                "max": max(values),
            }
            for metric, values in sorted(by_metric.items())
        }


class Evals(_Face[AsyncEvals]):
    """Datasets, runs and scores, blocking: ``Evals(store)``. See :mod:`kvstore.kinds.evals`."""

    def __init__(self, store: KVStore, name: str = "evals"):
        super().__init__(AsyncEvals(store.aio, name))

    save_dataset = _blocking(AsyncEvals.save_dataset)
    dataset = _blocking(AsyncEvals.dataset)
    start_run = _blocking(AsyncEvals.start_run)
    run = _blocking(AsyncEvals.run)
    runs = _blocking(AsyncEvals.runs)
    score = _blocking(AsyncEvals.score)
    score_many = _blocking(AsyncEvals.score_many)
    scores = _blocking(AsyncEvals.scores)
    summary = _blocking(AsyncEvals.summary)

    def __repr__(self) -> str:
        return repr(self._core).replace("AsyncEvals", "Evals", 1)
