"""The table view: a Line-API ScrollView over a TableModel. Only the visible rows are
drawn (a million rows cost what forty do); the header is the first line of the view
and stays put while the rows scroll. `sync()` is called by the screen's fixed-rate
refresh and takes in new chunks through the model."""
from __future__ import annotations

import asyncio
import time

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.core import collector
from console.core.views.cells import cell_text
from console.core.views.rows import SORT_SLICE, TableModel

GAP = 2  # spaces between columns
SORT_IN_PLACE_ROWS = 50_000  # sorted in one go (well under a frame); more sort in slices
SORT_SLICE_SECONDS = 0.004  # sorting work between two turns of the loop (plus one step's overshoot)


class TableView(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {
        "table-view--header",
        "table-view--header-cursor",
        "table-view--cursor",
        "table-view--gutter",
    }
    DEFAULT_CSS = """
    TableView { height: 1fr; background: $surface; }
    TableView > .table-view--header { color: $text; background: $panel; text-style: bold; }
    TableView > .table-view--header-cursor { background: $accent 50%; text-style: bold; }
    TableView > .table-view--cursor { background: $accent 40%; }
    TableView:focus > .table-view--cursor { background: $accent 70%; }
    TableView > .table-view--gutter { color: $text-muted; }
    """
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "cursor(-20)", "Page up", show=False),
        Binding("pagedown", "cursor(20)", "Page down", show=False),
        Binding("home", "first", "First row", show=False),
        Binding("end", "last", "Last row, follow", show=False),
        Binding("left", "column(-1)", "Column left", show=False),
        Binding("right", "column(1)", "Column right", show=False),
        Binding("S", "sort", "Sort by column", id="table-sort"),
        Binding("enter", "choose", "Show row", show=False),
    ]

    class RowChosen(Message):
        """Enter on a row: its whole record."""

        def __init__(self, table: "TableView", record, row: int, chunk: int | None) -> None:
            super().__init__()
            self.table = table
            self.record = record
            self.row = row  # display position, 0-based
            self.chunk = chunk  # receive index (0-based) of the chunk it came from

    def __init__(self, model: TableModel, *, follow: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.following = follow
        self.cursor: int | None = None  # display row
        self.column = 0
        self._version = -1
        self._styles: dict = {}
        self._styles_key: tuple | None = None
        self._sort_worker = None  # the sort running in slices, if any
        self.sort_in_place_rows = SORT_IN_PLACE_ROWS  # up to this many rows a sort is one step
        self.sort_step_rows = SORT_SLICE
        self.sort_slice_seconds = SORT_SLICE_SECONDS  # work this long, then let the loop run
        self.sort_pause = 0.0  # how long to let it run (tests slow a sort down with it)

    # -- sync -----------------------------------------------------------------------------

    def sync(self) -> None:
        model = self.model
        model.sync()
        if model.version != self._version:
            self._version = model.version
            self._resize()
            self.refresh()
        if self.following:
            self._to_bottom()

    def _content_width(self) -> int:
        model = self.model
        return self._gutter() + sum(w + GAP for w in model.widths)

    def _gutter(self) -> int:
        return len(f"{self.model.row_count:,}") + GAP

    def _resize(self) -> None:
        self.virtual_size = Size(self._content_width(), self.model.row_count + 1)

    def on_resize(self) -> None:
        self._resize()

    def _to_bottom(self) -> None:
        y = max(0, self.model.row_count + 1 - self.scrollable_content_region.height)
        if int(self.scroll_y) != y:
            self.scroll_to(y=y, animate=False, immediate=True)

    @property
    def summary(self) -> str:
        m = self.model
        text = f"{m.row_count:,} rows × {len(m.columns)} columns"
        if m.sorting is not None and m.sorting[0] < len(m.columns):
            col, descending, done = m.sorting
            text += f" · sorting by {m.columns[col]} {'↓' if descending else '↑'}… {done:.0%}"
            return text
        if m.sort_column is not None and m.sort_column < len(m.columns):
            text += f" · sorted by {m.columns[m.sort_column]} {'↓' if m.descending else '↑'}"
            if m.unsorted_below:
                text += f" ({m.unsorted_below:,} newer rows below, unsorted: S sorts again)"
        if m.first_row:
            text += f" · oldest {m.first_row:,} rows dropped with their chunks"
        return text

    # -- drawing -----------------------------------------------------------------------------

    def render_lines(self, crop):
        key = (self.app.theme, self.has_focus)
        if self._styles_key != key:  # component styles cost ~0.1-0.7 ms each: once per theme and focus
            self._styles_key = key
            self._styles = self._compute_styles()
        return super().render_lines(crop)

    def _compute_styles(self) -> dict:
        base = self.rich_style
        component = self.get_component_rich_style
        return {
            "base": base,
            "header": base + component("table-view--header"),
            "header-cursor": base + component("table-view--header") + component("table-view--header-cursor"),
            "cursor": base + component("table-view--cursor"),
            "gutter": base + component("table-view--gutter"),
        }

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        styles = self._styles or {"base": Style(), "header": Style(), "header-cursor": Style(),
                                  "cursor": Style(), "gutter": Style()}
        scroll_x = int(self.scroll_x)
        model = self.model
        gutter = self._gutter()
        if y == 0:
            segments = [Segment("#".rjust(gutter - GAP) + " " * GAP, styles["header"])]
            for col, name in enumerate(model.columns):
                w = model.widths[col]
                label = name
                if model.sort_column == col:
                    label = f"{name} {'↓' if model.descending else '↑'}"
                label = label[:w]
                label = label.rjust(w) if model.numeric(col) else label.ljust(w)
                style = styles["header-cursor"] if col == self.column else styles["header"]
                segments.append(Segment(label, style))
                segments.append(Segment(" " * GAP, styles["header"]))
            return self._finish(segments, scroll_x, width, styles["header"])
        display = int(self.scroll_y) + y - 1
        row = model.row(display)
        if row is None:
            return Strip.blank(width, styles["base"])
        style = styles["cursor"] if display == self.cursor else styles["base"]
        number = model.row_number(display)
        segments = [Segment(f"{(number or 0) + 1:>{gutter - GAP},}" + " " * GAP,
                            style if display == self.cursor else styles["gutter"])]
        for col, value in enumerate(model.cells(row)):
            w = model.widths[col]
            text = cell_text(value)
            if len(text) > w:
                model.widen(col, text)  # drawn wider from the next frame on
                text = text[:w - 1] + "…" if len(text) > w else text
            segments.append(Segment((text.rjust(w) if model.numeric(col) else text.ljust(w)) + " " * GAP, style))
        return self._finish(segments, scroll_x, width, style)

    @staticmethod
    def _finish(segments, scroll_x: int, width: int, style) -> Strip:
        strip = Strip(segments)
        strip = strip.crop(scroll_x, scroll_x + width)
        return strip.extend_cell_length(width, style)

    # -- keys ---------------------------------------------------------------------------------

    def action_cursor(self, step: int) -> None:
        rows = self.model.row_count
        if not rows:
            return
        current = self.cursor if self.cursor is not None else int(self.scroll_y)
        self.cursor = max(0, min(rows - 1, current + step))
        self.following = False
        self._keep_cursor_in_view()

    def _keep_cursor_in_view(self) -> None:
        if self.cursor is None:
            return
        height = max(1, self.scrollable_content_region.height - 1)
        top = int(self.scroll_y)
        if self.cursor < top:
            top = self.cursor
        elif self.cursor >= top + height:
            top = self.cursor - height + 1
        self.scroll_to(y=top, animate=False, immediate=True)
        self.refresh()

    def action_first(self) -> None:
        self.following = False
        self.cursor = 0
        self._keep_cursor_in_view()

    def action_last(self) -> None:
        """The last row; the view then follows new rows."""
        self.cursor = None
        self.following = True
        self._to_bottom()
        self.refresh()

    def action_column(self, step: int) -> None:
        model = self.model
        if not model.columns:
            return
        self.column = max(0, min(len(model.columns) - 1, self.column + step))
        left = self._gutter() + sum(w + GAP for w in model.widths[:self.column])
        right = left + model.widths[self.column] + GAP
        x = int(self.scroll_x)
        width = self.scrollable_content_region.width
        if left < x + self._gutter():
            x = max(0, left - self._gutter())
        elif right > x + width:
            x = right - width
        self.scroll_to(x=x, animate=False, immediate=True)
        self.refresh()

    def action_sort(self) -> None:
        """Sort by the column under the cursor: ascending, descending, then receive order.
        A big table sorts in slices between frames (the header says "sorting…"); the keys
        keep working meanwhile, and S again goes on to the next order."""
        model = self.model
        if not model.columns:
            return
        column, descending = model.sorting[:2] if model.sorting else (model.sort_column, model.descending)
        if column != self.column:
            wanted: tuple = (self.column, False)
        elif not descending:
            wanted = (self.column, True)
        else:
            wanted = (None, False)
        if self._sort_worker is not None:
            self._sort_worker.cancel()
            self._sort_worker = None
        if wanted[0] is None or model.row_count <= self.sort_in_place_rows:
            model.sort(*wanted)
            self._sorted()
        else:
            job = model.sort_steps(*wanted, rows_per_step=self.sort_step_rows)
            self._sort_worker = self.run_worker(self._sort_slices(job), group="table-sort", exclusive=True)
            self._version = -1
            self.refresh()

    async def _sort_slices(self, job) -> None:
        """(a worker on the app's loop) `job`'s steps, yielding to the loop every few ms."""
        try:
            with collector.paused():  # young passes would walk the sort's million-element lists
                started = time.perf_counter()
                for _ in job:
                    if time.perf_counter() - started >= self.sort_slice_seconds:
                        await asyncio.sleep(self.sort_pause)
                        started = time.perf_counter()
            self._sort_worker = None
            self._sorted()
        finally:
            job.close()  # cancelled: the model forgets it was sorting

    def _sorted(self) -> None:
        model = self.model
        self.cursor = 0 if model.row_count else None
        self.following = False
        self.scroll_to(y=0, animate=False, immediate=True)
        self._version = -1
        self.sync()

    def action_choose(self) -> None:
        display = self.cursor if self.cursor is not None else int(self.scroll_y)
        record = self.model.record(display)
        if record is not None:
            self.post_message(self.RowChosen(self, record, display, self.model.chunk_of(display)))

    def _on_click(self, event: events.Click) -> None:
        if event.y == 0:  # the header: sort by that column
            x = int(self.scroll_x) + event.x - self._gutter()
            left = 0
            for col, w in enumerate(self.model.widths):
                if left <= x < left + w + GAP:
                    self.column = col
                    self.action_sort()
                    return
                left += w + GAP
            return
        display = int(self.scroll_y) + event.y - 1
        if 0 <= display < self.model.row_count:
            self.cursor = display
            self.following = False
            self.refresh()

    def _on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.following = False
