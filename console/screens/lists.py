"""The session's call history (Enter re-runs a call) and the app-wide errors log."""
from __future__ import annotations

import json
import time

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from console.core.session import ErrorEntry
from console.core.stream_store import StreamRecord

LIST_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 95%; height: 85%; border: thick $accent; background: $surface; }}
{name} Label {{ padding: 0 1; text-style: bold; }}
{name} DataTable {{ height: 1fr; }}
"""


class HistoryScreen(ModalScreen["StreamRecord | None"]):
    DEFAULT_CSS = LIST_CSS.format(name="HistoryScreen")
    BINDINGS = [Binding("escape,h", "dismiss(None)", "Close"), Binding("enter,r", "rerun", "Re-run")]

    def __init__(self, calls: list[StreamRecord]) -> None:
        super().__init__()
        self._calls = list(reversed(calls))

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Calls this session — Enter re-runs, Esc closes")
            yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("#", "method", "address", "params", "state", "chunks", "seconds", "node")
        for r in self._calls:
            table.add_row(str(r.number), r.method, r.address, json.dumps(r.params)[:40], r.state.value,
                          f"{r.count:,}", f"{r.elapsed():.3f}", r.target[-24:])
        table.focus()

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:  # the table takes Enter itself
        self.action_rerun()

    def action_rerun(self) -> None:
        table = self.query_one(DataTable)
        if self._calls and table.cursor_row is not None:
            self.dismiss(self._calls[table.cursor_row])


class ErrorsScreen(ModalScreen[None]):
    DEFAULT_CSS = LIST_CSS.format(name="ErrorsScreen")
    BINDINGS = [Binding("escape,e", "dismiss", "Close")]

    def __init__(self, errors: list[ErrorEntry]) -> None:
        super().__init__()
        self._errors = list(reversed(errors))

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Errors this session ({len(self._errors)}) — Esc closes")
            yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("time", "where", "code", "message")
        for e in self._errors:
            table.add_row(time.strftime("%H:%M:%S", time.localtime(e.at)), e.where,
                          f"{e.code} {e.name}", e.message)
        table.focus()
