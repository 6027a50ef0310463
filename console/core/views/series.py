"""Numbers at JSON paths over a stream, for the chart view.

Per path: the (x, value) points where the chunk carried a number there, x being the
time since the call started (s) or the receive index. Points are two `array('d')`
each, never the chunks; past `max_points` every other point is dropped and only every
`stride`-th chunk is taken from then on, so memory stays bounded on an endless stream,
while min / max / last / count always cover every chunk seen. `buckets()` reduces a
path to one value per screen column (slices and builtins: cheap at any length).
"""
from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from console.core.stream_store import value_at_path

from . import Source

MAX_POINTS = 100_000
SCAN_BUDGET = 50_000  # chunks looked at per sync


@dataclass
class Series:
    path: str
    xs_time: array = field(default_factory=lambda: array("d"))
    xs_index: array = field(default_factory=lambda: array("d"))
    ys: array = field(default_factory=lambda: array("d"))
    count: int = 0  # numbers seen at this path (every chunk, kept or not)
    missing: int = 0  # chunks without a number here
    low: float = math.inf
    high: float = -math.inf
    last: float | None = None

    @property
    def kept(self) -> int:
        return len(self.ys)


class ChartModel:
    def __init__(self, source: Source, paths: list[str] | None = None, *, times: Any = None,
                 max_points: int = MAX_POINTS) -> None:
        """`times(index)` gives a chunk's time since the start (s); without it, x is the index."""
        self.source = source
        self.times = times
        self.max_points = max_points
        self.series: list[Series] = []
        self.stride = 1
        self._scanned = 0
        self.version = 0
        for path in paths or []:
            self.add(path)

    @property
    def paths(self) -> list[str]:
        return [s.path for s in self.series]

    def add(self, path: str) -> None:
        """Chart one more path (from the chunks still held)."""
        if path and path not in self.paths:
            self.series.append(Series(path))
            self._rescan()

    def remove(self, path: str) -> None:
        self.series = [s for s in self.series if s.path != path]
        self.version += 1

    def set_paths(self, paths: list[str]) -> None:
        self.series = [Series(p) for p in dict.fromkeys(p for p in paths if p)]
        self._rescan()

    def _rescan(self) -> None:
        for s in self.series:
            s.xs_time, s.xs_index, s.ys = array("d"), array("d"), array("d")
            s.count = s.missing = 0
            s.low, s.high, s.last = math.inf, -math.inf, None
        self.stride = 1
        self._scanned = self.source.first_held
        self.version += 1
        self.sync()

    def sync(self) -> bool:
        source = self.source
        start = max(self._scanned, source.first_held)
        stop = min(source.count, start + SCAN_BUDGET)
        if start >= stop or not self.series:
            self._scanned = max(self._scanned, stop)
            return False
        times = self.times
        stride = self.stride
        for index in range(start, stop):
            data = source.data_at(index)
            keep = index % stride == 0
            at = None
            for s in self.series:
                value = value_at_path(data, s.path)
                t = type(value)
                if t is not int and t is not float:
                    s.missing += 1
                    continue
                value = float(value)
                s.count += 1
                s.last = value
                if value < s.low:
                    s.low = value
                if value > s.high:
                    s.high = value
                if keep:
                    if at is None:
                        at = times(index) if times is not None else float(index)
                    s.xs_time.append(at)
                    s.xs_index.append(float(index))
                    s.ys.append(value)
        self._scanned = stop
        while any(s.kept > self.max_points for s in self.series):
            self._thin()
        self.version += 1
        return True

    def _thin(self) -> None:
        self.stride *= 2
        for s in self.series:
            s.xs_time, s.xs_index, s.ys = s.xs_time[::2], s.xs_index[::2], s.ys[::2]

    def buckets(self, series: Series, width: int, by_time: bool = True) -> list[float | None]:
        """One value per column over the whole range (the mean of the points in it);
        None for a column with no point."""
        if width <= 0 or not series.kept:
            return []
        xs = series.xs_time if by_time else series.xs_index
        ys = series.ys
        lo, hi = xs[0], xs[-1]
        if hi <= lo:
            return [ys[-1]] + [None] * (width - 1) if width > 1 else [ys[-1]]
        span = (hi - lo) / width
        out: list[float | None] = []
        a = 0
        n = len(xs)
        for col in range(width):
            edge = hi + 1 if col == width - 1 else lo + span * (col + 1)
            b = bisect_left(xs, edge, a, n)
            if b > a:
                part = ys[a:b]
                out.append(sum(part) / len(part))
            else:
                out.append(None)
            a = b
        return out

    def x_range(self, by_time: bool = True) -> tuple[float, float] | None:
        ranges = [(s.xs_time if by_time else s.xs_index) for s in self.series if s.kept]
        if not ranges:
            return None
        return min(x[0] for x in ranges), max(x[-1] for x in ranges)
