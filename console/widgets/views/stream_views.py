"""The views of one call, switched with `v`: for a stream the log (the chunk log, JSON in
colour), fields (chosen JSON paths as the log's columns), table (rows out of the
chunks) and chart (numbers at chosen paths over time); for a unary result the table
(when it is a list of records) and the value tree. The choice and the paths are
remembered per method in the console's settings. A stream whose chunks carry rows
opens in the table unless the operator chose otherwise for that method.

The views' models read the call's StreamRecord; only the visible view is synced, by
the pane's fixed-rate refresh."""
from __future__ import annotations

import gc
from typing import Any, Callable

from textual.widget import Widget

from console.core.config import Settings, method_key
from console.core.stream_store import StreamRecord
from console.core.views.paths import suggest_chart, suggest_fields
from console.core.views.rows import TableModel, carries_rows
from console.core.views.series import ChartModel
from console.core.views.values import records_of
from console.widgets.chunk_log import ChunkLog
from console.widgets.views.chart_view import ChartView
from console.widgets.views.table_view import TableView
from console.widgets.views.value_view import ValueView

STREAM_VIEWS = ("log", "fields", "table", "chart")
UNARY_VIEWS = ("table", "tree")
DETECT_CHUNKS = 3  # chunks looked at to decide whether a stream carries rows
DEFAULT_FIELDS = 5  # suggested paths a fields view starts with
FREEZE_EVERY_ROWS = 50_000  # rows taken in between moving what is held out of the collector's way


class StreamViews:
    def __init__(self, record: StreamRecord, log: ChunkLog | None, settings: Settings | None = None,
                 save: Callable[[], None] | None = None) -> None:
        self.record = record
        self.log = log
        self.settings = settings
        self.save = save or (lambda: None)
        self.key = method_key(record.address, record.method)
        remembered = settings.views.get(self.key) if settings is not None else None
        names = STREAM_VIEWS if record.streaming else UNARY_VIEWS
        self.chosen = remembered in names  # the operator picked this method's view before
        self.name = remembered if self.chosen else ("log" if record.streaming else "table")
        self.table: TableView | None = None
        self.chart: ChartView | None = None
        self.value: ValueView | None = None
        self._detected = False
        self._paths_filled = False  # the view's paths were taken from the first chunks
        self._frozen_rows = 0
        if record.streaming:
            self.table = TableView(TableModel(record), classes="call-table")
            self.chart = ChartView(ChartModel(record, self._remembered(settings, "charts"), times=record.time_at),
                                   classes="call-chart")

    def _remembered(self, settings: Settings | None, kind: str) -> list[str]:
        if settings is None:
            return []
        return list(getattr(settings, kind).get(self.key, []))

    # -- widgets ----------------------------------------------------------------------------

    def stream_widgets(self) -> list[Widget]:
        assert self.table is not None and self.chart is not None
        self.table.display = False
        self.chart.display = False
        return [self.table, self.chart]

    @property
    def names(self) -> tuple[str, ...]:
        return STREAM_VIEWS if self.record.streaming else UNARY_VIEWS

    @property
    def focus_target(self) -> Widget | None:
        if self.name == "table" and self.table is not None:
            return self.table
        if self.name == "chart" and self.chart is not None:
            return self.chart
        if self.value is not None:
            return self.value.body
        return self.log

    def show(self, name: str, *, remember: bool = True) -> None:
        """Switch to a view (and remember it for the method when the operator asked)."""
        if name not in self.names:
            return
        self.name = name
        if remember and self.settings is not None:
            self.chosen = True
            if self.settings.remember_view(self.key, name):
                self.save()
        if not self.record.streaming:
            return
        log, table, chart = self.log, self.table, self.chart
        if log is not None:
            log.display = name in ("log", "fields")
            if name == "fields":
                log.set_fields(self.fields_paths())
            else:
                log.set_fields(None)
        table.display = name == "table"
        chart.display = name == "chart"
        if name == "chart" and not chart.model.series:
            chart.model.set_paths(self.suggested_chart())
        chart._version = -1
        table._version = -1

    def cycle(self) -> str:
        names = self.names
        self.show(names[(names.index(self.name) + 1) % len(names)] if self.name in names else names[0])
        return self.name

    # -- paths --------------------------------------------------------------------------------

    def first_data(self) -> Any:
        r = self.record
        return r.data_at(r.first_held) if r.count else None

    def sample(self, n: int = 5) -> list[Any]:
        r = self.record
        return [r.data_at(i) for i in range(r.first_held, min(r.count, r.first_held + n))]

    def suggested_fields(self) -> list[str]:
        return list(dict.fromkeys(p for data in self.sample() for p in suggest_fields(data)))

    def fields_paths(self) -> list[str]:
        paths = self._remembered(self.settings, "fields")
        return paths or self.suggested_fields()[:DEFAULT_FIELDS]

    def suggested_chart(self) -> list[str]:
        for data in self.sample():
            paths = suggest_chart(data)
            if paths:
                return paths
        return []

    def set_paths(self, paths: list[str]) -> None:
        """The paths of the current view (fields or chart), remembered for the method."""
        kind = "fields" if self.name == "fields" else "charts"
        if self.settings is not None:
            getattr(self.settings, kind)[self.key] = list(paths)
            self.save()
        if kind == "fields" and self.log is not None:
            self.log.set_fields(paths or self.suggested_fields()[:DEFAULT_FIELDS])
        elif self.chart is not None:
            self.chart.model.set_paths(paths)
            self.chart._version = -1

    def current_paths(self) -> list[str]:
        if self.name == "fields":
            return list(self.log.fields or []) if self.log is not None else []
        return self.chart.model.paths if self.chart is not None else []

    # -- refresh ------------------------------------------------------------------------------

    def sync(self, now: float) -> None:
        """Bring the visible view up to date (and open in the table when the chunks carry rows)."""
        r = self.record
        if not r.streaming:
            return
        if not self._detected and r.count:
            first = r.first_held
            upto = min(r.count, first + DETECT_CHUNKS)
            if any(carries_rows(r.data_at(i)) for i in range(first, upto)):
                self._detected = True
                if not self.chosen:
                    self.show("table", remember=False)
            elif upto - first >= DETECT_CHUNKS or r.state.ended:
                self._detected = True
        if not self._paths_filled and r.count and self.name in ("fields", "chart"):
            # opened in this view (remembered) before any chunk came: its paths from the first ones
            self._paths_filled = True
            if self.name == "chart" and not self.chart.model.series:
                paths = self._remembered(self.settings, "charts") or self.suggested_chart()
                if paths:
                    self.chart.model.set_paths(paths)
                    self.chart._version = -1
            elif self.name == "fields" and self.log is not None and not self.log.fields:
                paths = self.fields_paths()
                if paths:
                    self.log.set_fields(paths)
        if self.name == "table":
            self.table.sync()
            rows = self.table.model.total
            if rows - self._frozen_rows >= FREEZE_EVERY_ROWS:
                # held rows live as long as the record: keep them out of full collections, which
                # otherwise stall the screen 100-600 ms each over a million rows (as app.py does
                # for what exists at start). Objects still die by reference count.
                self._frozen_rows = rows
                gc.freeze()
        elif self.name == "chart":
            self.chart.sync(now)

    def signature(self) -> tuple:
        """Changes when what the pane's header says about the views changes."""
        table = ((self.table.model.version, self.table.model.sorting) if self.table is not None
                 and self.name == "table" else 0)
        chart = self.chart.model.paths if self.chart is not None and self.name == "chart" else ()
        fields = ((tuple(self.log.fields or ()), self.log.data_x, tuple(self.log._field_widths))
                  if self.log is not None else ())
        return (self.name, table, tuple(chart), fields)

    def header(self) -> str | None:
        """The line above the view, when it is not the log's."""
        if self.name == "table" and self.table is not None:
            return f"table · {self.table.summary} · ←→ column, S sorts, Enter shows a row, v next view"
        if self.name == "chart" and self.chart is not None:
            paths = ", ".join(self.chart.model.paths) or "no paths"
            return f"chart · {paths} · p picks paths, i time ⇄ index, v next view"
        return None

    # -- unary --------------------------------------------------------------------------------

    def unary_value(self, value: Any) -> ValueView:
        """The widget showing a unary result: a table of its records, or its tree."""
        as_table = self.name == "table" and records_of(value) is not None
        self.value = ValueView(value, "result", as_table=as_table, classes="call-value")
        return self.value
