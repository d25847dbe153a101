"""Request counters and latencies of the HTTP service, for ``/metrics`` (Prometheus's text
format, written here: no client library needed) and ``/stats``."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Latency histogram bounds, seconds."""
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"))
"""Methods counted by name; any other is counted as OTHER (a client chooses the method)."""


class Metrics:
    """Per (method, route, status): a count; per (method, route): a latency histogram."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[tuple[str, str], list[float]] = {}  # buckets, count, sum

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request; ``route`` is its route's template (or "unmatched"), so the
        labels stay a bounded set whatever paths and methods clients send."""
        if method not in METHODS:
            method = "OTHER"
        self.requests[(method, route, status)] += 1
        histogram = self.latency.setdefault((method, route), [0.0] * (len(BUCKETS) + 2))
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                histogram[i] += 1.0
        histogram[-2] += 1.0  # count (+Inf)
        histogram[-1] += seconds  # sum

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": [
                {"method": m, "route": r, "status": s, "count": n}
                for (m, r, s), n in sorted(self.requests.items())
            ]
        }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(metrics: Metrics, store_stats: dict[str, Any]) -> str:
    """The service's and the store's counters in Prometheus's text exposition format."""
    lines = [
        "# HELP kvstore_http_requests_total HTTP requests answered, by route and status.",
        "# TYPE kvstore_http_requests_total counter",
    ]
    for (method, route, status), count in sorted(metrics.requests.items()):
        labels = f'method="{method}",route="{_label(route)}",status="{status}"'
        lines.append(f"kvstore_http_requests_total{{{labels}}} {count}")
    lines += [
        "# HELP kvstore_http_request_seconds HTTP request latency.",
        "# TYPE kvstore_http_request_seconds histogram",
    ]
    for (method, route), hist in sorted(metrics.latency.items()):
        labels = f'method="{method}",route="{_label(route)}"'
        for bound, seen in zip(BUCKETS, hist, strict=False):
            lines.append(f'kvstore_http_request_seconds_bucket{{{labels},le="{bound}"}} {seen:g}')
        lines.append(f'kvstore_http_request_seconds_bucket{{{labels},le="+Inf"}} {hist[-2]:g}')
        lines.append(f"kvstore_http_request_seconds_count{{{labels}}} {hist[-2]:g}")
        lines.append(f"kvstore_http_request_seconds_sum{{{labels}}} {hist[-1]:.6f}")
    requests = {k: v for k, v in _flat(store_stats) if k.startswith("requests.")}
    lines += [
        "# HELP kvstore_store_requests_total Object-store requests, by kind.",
        "# TYPE kvstore_store_requests_total counter",
    ]
    for name, value in sorted(requests.items()):
        kind = _label(name.removeprefix("requests."))
        lines.append(f'kvstore_store_requests_total{{kind="{kind}"}} {value}')
    others = {k: v for k, v in _flat(store_stats) if not k.startswith("requests.")}
    for name, value in sorted(others.items()):
        metric = "kvstore_store_" + "".join(c if c.isalnum() else "_" for c in name)
        lines += [f"# TYPE {metric} gauge", f"{metric} {value}"]
    return "\n".join(lines) + "\n"


def _flat(stats: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    """Numeric leaves of the store's stats, dotted names."""
    out: list[tuple[str, float]] = []
    for key, value in stats.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(_flat(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((name, value))
    return out
