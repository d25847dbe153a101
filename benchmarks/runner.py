"""Run the scenarios, print the table, write ``benchmarks/results.json``."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from .harness import Context, Row, Skip

# One module per scenario, in run order. Each has ID, TITLE, PLANNED (its rows) and
# run(ctx) -> list[Row]; it raises Skip when it cannot run here.
SCENARIOS = {
    "S1": "s1_get",
    "S2": "s2_mget",
    "S3": "s3_cold_mget",
    "S4": "s4_append",
    "S5": "s5_log_range",
    "S6": "s6_bytes",
    "S7": "s7_artifacts",
    "S8": "s8_large_artifact",
    "S9": "s9_redis_outage",
    "S10": "s10_young_log",
    "S11": "s11_seaweedfs",
    "S12": "s12_redis_incr",
    "S13": "s13_sessions",
    "S14": "s14_transports",
    "S15": "s15_gcs_transport",
    "S16": "s16_serve",
    "S17": "s17_adk",
    "S18": "s18_langgraph",
    "S19": "s19_http",
    "S20": "s20_records",
    "S21": "s21_maintain",
    "S22": "s22_encryption",
}

RESULTS = Path(__file__).resolve().parent / "results.json"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def revision() -> str:
    """The git commit measured, with "+dirty" if kvstore/ has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "kvstore")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit or "unknown") + ("+dirty" if dirty else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="kvstore against its baselines and the physical floor.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes, fewer repetitions (a few minutes)"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated scenario ids to run, e.g. S1,S4"
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=20.0,
        help="per-request latency of the object-store model (default 20)",
    )
    parser.add_argument(
        "--no-s3", action="store_true", help="skip the S3 server rows (moto and SeaweedFS)"
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help=f"results file (default {RESULTS})"
    )
    args = parser.parse_args(argv)
    wanted = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    args.scenarios = wanted or list(SCENARIOS)
    return args


def load(scenario: str) -> ModuleType:
    return importlib.import_module(f".{SCENARIOS[scenario]}", __package__)


def run_one(ctx: Context, scenario: str) -> tuple[list[Row], bool]:
    """(rows, crashed). A scenario that raises Skip or crashes still yields its rows."""
    try:
        module = load(scenario)
    except Exception as exc:  # the module itself does not import: one row says so
        traceback.print_exc()
        row = Row(scenario, SCENARIOS[scenario], None, None, "<=", "", "")
        row.error = f"{type(exc).__name__}: {exc}"
        return [row], True
    print(f"[{scenario}] {module.TITLE}", file=sys.stderr, flush=True)
    planned = list(module.PLANNED)
    try:
        rows: list[Row] = module.run(ctx)
        return rows, False
    except Skip as exc:
        return [p.skipped(str(exc)) for p in planned], False
    except Exception as exc:
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
        rows = [p.skipped("") for p in planned]
        for row in rows:
            row.skipped, row.error = None, message
        return rows, True


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def short_requests(requests: Any) -> str:
    if requests is None:
        return ""
    if isinstance(requests, dict):
        parts = []
        for k, v in requests.items():
            if isinstance(v, dict):
                v = ",".join(f"{k2}={v2}" for k2, v2 in v.items())
            parts.append(f"{k}={fmt(v)}")
        return " ".join(parts)
    return str(requests)


def status(row: Row) -> str:
    if row.skipped:
        return "skip"
    if row.error:
        return "ERROR"
    return "yes" if row.ok else "NO"


def table(rows: list[Row]) -> str:
    """A plain-text table: id, value, target, ok, name; requests on a second line."""
    cells = [
        (
            row.id,
            f"{fmt(row.value)} {row.unit}" if row.value is not None else "-",
            f"{row.direction} {fmt(row.target)}" if row.target is not None else "",
            status(row),
            row.name,
        )
        for row in rows
    ]
    head = ("id", "value", "target", "ok", "scenario")
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(4)]
    pad = " " * (sum(widths) + 8)

    def line(c: tuple[str, ...]) -> str:
        return (
            f"{c[0]:<{widths[0]}}  {c[1]:>{widths[1]}}  {c[2]:>{widths[2]}}  "
            f"{c[3]:<{widths[3]}}  {c[4]}"
        )

    lines = [line(head)]
    for row, c in zip(rows, cells, strict=True):
        lines.append(line(c))
        if row.skipped or row.error:
            lines.append(f"{pad}({row.skipped or row.error})")
        elif row.requests:
            lines.append(f"{pad}requests: {short_requests(row.requests)}")
    return "\n".join(lines)


def markdown(rows: list[Row]) -> str:
    """The table as Markdown (for BENCHMARKS.md)."""
    out = [
        "| id | scenario | value | target | ok | object-store requests |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        value = f"{fmt(row.value)} {row.unit}" if row.value is not None else "-"
        target = f"{row.direction} {fmt(row.target)}" if row.target is not None else ""
        note = row.skipped or row.error or short_requests(row.requests)
        out.append(f"| {row.id} | {row.name} | {value} | {target} | {status(row)} | {note} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    mode = "quick" if args.quick else "full"
    print(
        f"kvstore benchmarks ({mode}; object-store latency model {args.latency_ms:g} ms; "
        f"scenarios {','.join(args.scenarios)})",
        flush=True,
    )
    # Import kvstore's modules now, so the code measured is the commit recorded (the tree
    # may change while a long run goes on).
    for module in ("kvstore", "kvstore.cache.redis", "kvstore.logs", "kvstore.artifacts"):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    commit = revision()
    ctx = Context(quick=args.quick, latency_ms=args.latency_ms, s3=not args.no_s3)
    rows: list[Row] = []
    timings: dict[str, float] = {}
    crashed = False
    started = time.perf_counter()
    load_before = os.getloadavg()
    try:
        for scenario in args.scenarios:
            t0 = time.perf_counter()
            got, failed = run_one(ctx, scenario)
            crashed = crashed or failed
            timings[scenario] = round(time.perf_counter() - t0, 1)
            rows.extend(got)
            print(table(got), flush=True)
    finally:
        ctx.close()
    wall = time.perf_counter() - started
    print()
    print(table(rows))
    held = sum(r.ok for r in rows)
    print(f"\n{held}/{len(rows)} targets hold; wall time {wall:.0f} s; results: {args.output}")
    out = {
        "scenarios": [r.to_json() for r in rows],
        "meta": {
            "mode": mode,
            "command": " ".join(
                ["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)]
            ),
            "latency_ms": args.latency_ms,
            "commit": commit,
            "machine": machine(),
            "wall_time_s": round(wall, 1),
            # Other work on the machine: 1-minute load average when the run began and ended.
            "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "scenario_time_s": timings,
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(markdown(rows) + "\n")
    return 1 if crashed else 0
