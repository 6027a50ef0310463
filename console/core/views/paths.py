"""JSON paths (`cpu.percent`, `rows.0.2`) as the fields and chart views use them:
suggestions from a chunk's keys, and the numeric ones for charts."""
from __future__ import annotations

from typing import Any

from console.core.stream_store import value_at_path

from .cells import is_number

MAX_SUGGESTIONS = 24
# names that usually carry a figure worth charting, best first
CHART_HINTS = ("percent", "cpu", "mem", "progress", "load", "rate", "persec", "value", "latency", "total")
# names that usually count or stamp rather than measure
NOT_CHARTED = ("sample", "sequence", "offset", "time", "timestamp", "id", "index", "batch", "intervalms",
               "elapsedseconds", "count", "missed")

__all__ = ["value_at_path", "leaf_paths", "suggest_fields", "suggest_chart", "numeric_paths"]


def leaf_paths(data: Any, depth: int = 3, prefix: str = "") -> list[tuple[str, Any]]:
    """(path, value) of the scalar leaves of an object, nested objects followed `depth` deep;
    lists are leaves (charting one element needs its index typed)."""
    out: list[tuple[str, Any]] = []
    if not isinstance(data, dict):
        return out
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and depth > 1:
            out.extend(leaf_paths(value, depth - 1, path + "."))
        else:
            out.append((path, value))
    return out


def suggest_fields(data: Any) -> list[str]:
    """Paths to offer as columns: the top-level keys, then nested scalar leaves."""
    if not isinstance(data, dict):
        return []
    top = [k for k, v in data.items() if not isinstance(v, dict)]
    nested = [p for p, _ in leaf_paths(data) if "." in p]
    return (top + nested)[:MAX_SUGGESTIONS]


def numeric_paths(data: Any) -> list[str]:
    return [p for p, v in leaf_paths(data) if is_number(v) and type(v) is not bool]


def suggest_chart(data: Any, limit: int = 2) -> list[str]:
    """The numeric paths a chart starts with: measured figures first (cpu.percent,
    memory.percent, progress), counters and stamps last."""
    paths = numeric_paths(data)

    def rank(path: str) -> tuple[int, int]:
        name = path.lower()
        leaf = name.rsplit(".", 1)[-1]
        for i, hint in enumerate(CHART_HINTS):
            if hint in leaf or (hint in name and leaf in ("percent", "value")):
                return (0, i)
        if leaf in NOT_CHARTED:
            return (2, 0)
        return (1, 0)

    ranked = sorted(paths, key=lambda p: (rank(p), paths.index(p)))
    good = [p for p in ranked if rank(p)[0] < 2]
    return (good or ranked)[:limit]
