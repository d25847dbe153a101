"""Deterministic test data: chat messages, values and log records (fixed seeds).

Message text is sampled word by word from the empirical word frequencies of real English
prose - the Python documentation that ships with CPython (``pydoc_data.topics``, ~60,000
words, ~3,000 distinct) - with sentence capitalisation, punctuation, numbers and, in
assistant replies, inline code. Independent word sampling has no phrases to repeat, so a
compressor finds less to share than in real conversations; it is a fair, not a flattering,
stand-in. Every message is JSON: ``id`` (random hex, incompressible), ``role``, ``content``
(log-normal length: short user turns, longer assistant replies, some tool results) and
``created_at`` (ISO 8601, increasing with jitter).
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import itertools
import json
import random
import re
from collections.abc import Iterator

SEED = 20240611


@functools.lru_cache(maxsize=1)
def vocabulary() -> tuple[list[str], list[int]]:
    """(words, cumulative weights) from the CPython documentation's prose."""
    import pydoc_data.topics

    text = " ".join(pydoc_data.topics.topics.values())
    words = re.findall(r"[A-Za-z][a-z]+(?:'[a-z]+)?", text)
    counts = collections.Counter(
        w.lower() if w[0].isupper() and w[1:].islower() else w for w in words
    )
    ordered = [w for w, _ in counts.most_common()]
    return ordered, list(itertools.accumulate(counts[w] for w in ordered))


def _count(rng: random.Random, n: int, p: float) -> int:
    """How many of ``n`` items get a feature of probability ``p`` (mean n*p)."""
    return min(n, int(n * p + rng.random()))


def _sentence(rng: random.Random, n_words: int, code: bool) -> str:
    words, weights = vocabulary()
    n = max(1, n_words)
    picked = rng.choices(words, cum_weights=weights, k=n)
    for i in rng.sample(range(n), _count(rng, n, 0.02)):
        picked[i] = str(rng.randint(0, 2000))
    if code:
        for i in rng.sample(range(n), _count(rng, n, 0.04)):
            picked[i] = f"`{picked[i]}()`"
    for i in rng.sample(range(n - 1), _count(rng, n - 1, 0.07)):
        picked[i] += ","
    picked[0] = picked[0][:1].upper() + picked[0][1:]
    return " ".join(picked) + rng.choice(".....?!")


def text(rng: random.Random, n_words: int, code: bool = False) -> str:
    out: list[str] = []
    left = n_words
    while left > 0:
        n = min(left, max(3, int(rng.gauss(16, 6))))
        out.append(_sentence(rng, n, code))
        left -= n
    return " ".join(out)


def messages(n: int, seed: int = SEED, start: dt.datetime | None = None) -> Iterator[dict]:
    """``n`` chat messages of one conversation (user/assistant turns, some tool results)."""
    rng = random.Random(seed)
    when = start or dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.timezone.utc)
    role = "user"
    for _ in range(n):
        if role == "user":
            words = int(rng.lognormvariate(2.8, 0.9)) + 1  # median ~16 words
            content = text(rng, words)
        elif role == "tool":
            words = int(rng.lognormvariate(3.5, 0.8)) + 1
            content = json.dumps(
                {"status": "ok", "rows": rng.randint(0, 500), "summary": text(rng, words)}
            )
        else:
            words = int(rng.lognormvariate(4.3, 0.8)) + 1  # median ~75 words
            content = text(rng, words, code=True)
        when += dt.timedelta(seconds=rng.expovariate(1 / 20))
        yield {
            "id": f"msg_{rng.getrandbits(96):024x}",
            "role": role,
            "content": content,
            "created_at": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        if role == "assistant" and rng.random() < 0.1:
            role = "tool"
        elif role in ("assistant", "tool") and rng.random() < 0.85:
            role = "user" if role == "assistant" else "assistant"
        else:
            role = "assistant" if role == "user" else "user"


def dumps(message: dict) -> bytes:
    """A message as one compact JSON line (without the newline)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def sized_json(size: int, seed: int = SEED) -> bytes:
    """A chat-message JSON document of exactly ``size`` bytes (ASCII)."""
    rng = random.Random(seed)
    message = next(messages(1, seed))
    message["content"] = ""
    overhead = len(dumps(message))
    if size < overhead:
        raise ValueError(f"size must be at least {overhead}")
    body = text(rng, size // 3)
    while len(body) < size - overhead:
        body += " " + text(rng, size // 3)
    message["content"] = body[: size - overhead]
    out = dumps(message)
    assert len(out) == size, (len(out), size)
    return out


def records(n: int, size: int = 200, seed: int = SEED) -> list[bytes]:
    """``n`` log records of exactly ``size`` bytes: chat messages cut to size."""
    rng = random.Random(seed)
    when = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.timezone.utc)
    out: list[bytes] = []
    for i in range(n):
        when += dt.timedelta(seconds=rng.expovariate(1 / 20))
        message = {
            "id": f"msg_{rng.getrandbits(96):024x}",
            "role": "user" if i % 2 == 0 else "assistant",
            "content": "",
            "created_at": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        room = size - len(dumps(message))
        body = text(rng, room // 5)
        while len(body) < room:
            body += " " + text(rng, room // 5)
        message["content"] = body[:room]
        out.append(dumps(message))
    return out
