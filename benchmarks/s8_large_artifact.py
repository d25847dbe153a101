"""S8: a 1 GiB artifact streamed in (``save`` of a file object) and out (``open`` + reads).

Runs in a child process of its own (``python -m benchmarks.s8_large_artifact SIZE DIR``) so
that its memory is measured alone: the child resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``) once kvstore is imported and the store opened, then reports
the peak (``VmHWM``) above that baseline after the save and after the read. The store is
a local directory (an in-memory store would hold the artifact itself in RAM). The data is
incompressible (random, like model weights or media), produced chunk by chunk.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .harness import ROOT, Context, Planned, Row, log
from .s7_artifacts import require_artifacts

ID = "S8"
TITLE = "1 GiB artifact streamed in and out: peak RSS growth"
MIB = 1 << 20
PLANNED = [
    Planned(
        "S8",
        "1 GiB artifact save (file object) + streamed read: peak RSS growth",
        200,
        "<=",
        "MiB",
        "the process's RSS before the save",
    ),
]


class RandomStream:
    """``size`` pseudo-random bytes, produced as read (a file object with ``read(n)``)."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.sha = hashlib.sha256()
        self.rng = random.Random(8)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.left
        data = self.rng.randbytes(min(n, self.left))
        self.left -= len(data)
        self.sha.update(data)
        return data

    def readable(self) -> bool:
        return True


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(size: int, directory: str) -> dict[str, Any]:
    import kvstore

    with kvstore.open(directory, cache=None) as store:
        store.artifacts.versions("warm-up")  # import and start everything first
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        base = _status("VmRSS")
        source = RandomStream(size)
        started = time.perf_counter()
        version = store.artifacts.save("big.bin", source)
        save_s = time.perf_counter() - started
        peak_save = _status("VmHWM") - base
        reader = store.artifacts.open("big.bin", version)
        assert reader is not None
        sha = hashlib.sha256()
        started = time.perf_counter()
        read = 0
        with reader:
            while True:
                chunk = reader.read(MIB)
                if not chunk:
                    break
                sha.update(chunk)
                read += len(chunk)
        load_s = time.perf_counter() - started
        peak = _status("VmHWM") - base
        stats = store.stats()
    assert read == size and sha.hexdigest() == source.sha.hexdigest()
    return {
        "peak_growth_mib": peak / MIB,
        "peak_growth_save_mib": peak_save / MIB,
        "save_mib_s": size / MIB / save_s,
        "load_mib_s": size / MIB / load_s,
        "requests": {k[9:]: v for k, v in stats.items() if k.startswith("requests.")},
    }


def run(ctx: Context) -> list[Row]:
    require_artifacts()
    size = ctx.size(256, 1024) * MIB
    directory = ctx.tmp / "s8"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.s8_large_artifact", str(size), str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"S8 child failed: {proc.stderr.strip()[-2000:]}")
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    log(f"S8: {m}")
    name = PLANNED[0].name
    if size != 1024 * MIB:
        name = name.replace("1 GiB", f"{size // MIB} MiB") + " (quick)"
    return [
        PLANNED[0].row(
            m["peak_growth_mib"],
            name=name,
            requests=m["requests"],
            details={k: v for k, v in m.items() if k != "requests"},
        )
    ]


if __name__ == "__main__":
    result = child(int(sys.argv[1]), sys.argv[2])
    print(json.dumps(result))
