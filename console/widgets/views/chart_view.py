"""The chart view: numbers at chosen JSON paths drawn live as bar charts, one band per
path, each with its last / min / max, over time since the call started (or over the
receive index: `i`). Drawn from a ChartModel, redrawn at most 5 times a second and only
when a number came in; the text of a frame costs about a millisecond (no plotting
library: textual-plotext takes 13-20 ms an update)."""
from __future__ import annotations

import math

from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget

from console.core.views.series import ChartModel, Series

BLOCKS = " ▁▂▃▄▅▆▇█"
AXIS = 9  # characters of the value axis on the left
REDRAW_EVERY = 0.2  # seconds
COLOURS = ["#4EBF71", "#5B9BD5", "#E0A040", "#C678DD", "#E06C75", "#56B6C2"]


def figure(value: float | None) -> str:
    if value is None or math.isinf(value) or math.isnan(value):
        return "-"
    if value == int(value) and abs(value) < 1e12:
        return f"{int(value):,}"
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value:.4g}"
    return f"{value:,.2f}" if magnitude >= 10 else f"{value:.3g}"


def short(value: float) -> str:
    """An axis label in at most 8 characters: 10.4M, 950k, 0.25."""
    magnitude = abs(value)
    for limit, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e4, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{unit}"
    return figure(value)[:8]


class ChartView(Widget, can_focus=True):
    DEFAULT_CSS = """
    ChartView { height: 1fr; background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("i", "toggle_axis", "Time ⇄ index", id="chart-axis")]

    def __init__(self, model: ChartModel, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.by_time = True
        self._version = -1
        self._drawn_at = -math.inf
        self._text = Text()
        self._drawn_size = (0, 0)

    def sync(self, now: float) -> None:
        model = self.model
        model.sync()
        size = (self.size.width, self.size.height)
        if (model.version != self._version or size != self._drawn_size) and now - self._drawn_at >= REDRAW_EVERY:
            self._version, self._drawn_size, self._drawn_at = model.version, size, now
            self._text = self.draw(*size)
            self.refresh()

    def action_toggle_axis(self) -> None:
        self.by_time = not self.by_time
        self._version = -1
        self._drawn_at = -math.inf

    def render(self) -> Text:
        if self._drawn_size != (self.size.width, self.size.height):
            self._drawn_size = (self.size.width, self.size.height)
            self._text = self.draw(*self._drawn_size)
        return self._text

    def draw(self, width: int, height: int) -> Text:
        model = self.model
        out = Text(no_wrap=True, overflow="crop")
        series = model.series
        if not series:
            out.append("No paths charted. Press p to pick numeric paths (suggested from the first chunk).",
                       style="dim")
            return out
        bands = max(1, len(series))
        band = max(3, (height - 1) // bands)  # the last line is the x axis
        rows = band - 1
        plot = max(4, width - AXIS)
        for i, s in enumerate(series):
            colour = COLOURS[i % len(COLOURS)]
            self._band(out, s, plot, rows, colour)
        rng = model.x_range(self.by_time)
        if rng is not None:
            lo, hi = rng
            unit = " s" if self.by_time else ""
            left = f"{lo:.1f}{unit}" if self.by_time else f"#{int(lo) + 1:,}"
            right = f"{hi:.1f}{unit}" if self.by_time else f"#{int(hi) + 1:,}"
            label = "time since start" if self.by_time else "receive index"
            middle = f"{label} (i switches)"
            gap = max(1, plot - len(left) - len(right) - len(middle))
            out.append(" " * AXIS + left + " " * (gap // 2) + middle + " " * (gap - gap // 2) + right, style="dim")
        return out

    def _band(self, out: Text, s: Series, plot: int, rows: int, colour: str) -> None:
        out.append("● ", style=colour)
        out.append(s.path, style=f"bold {colour}")
        out.append(f"  last {figure(s.last)}  min {figure(s.low if s.count else None)}  "
                   f"max {figure(s.high if s.count else None)}  ", style="bold")
        note = f"{s.count:,} values"
        if s.missing:
            note += f", {s.missing:,} chunks without a number there"
        out.append(note + "\n", style="dim")
        if rows <= 0:
            return
        values = self.model.buckets(s, plot, self.by_time)
        carried = None  # a column with no point of its own shows the value before it (a step)
        for i, v in enumerate(values):
            if v is None:
                values[i] = carried
            else:
                carried = v
        low = s.low if s.count else 0.0
        high = s.high if s.count else 1.0
        if high <= low:
            high = low + 1.0
        levels = rows * 8
        heights = [None if v is None else max(1, round((v - low) / (high - low) * levels)) for v in values]
        for r in range(rows):  # top row first
            axis = short(high) if r == 0 else short(low) if r == rows - 1 else ""
            out.append(axis[:AXIS - 1].rjust(AXIS - 1) + "┤", style="dim")
            floor = (rows - 1 - r) * 8
            line = []
            for h in heights:
                if h is None:
                    line.append(" ")
                else:
                    line.append(BLOCKS[max(0, min(8, h - floor))])
            out.append("".join(line) + "\n", style=colour)
