"""Saved calls (collections), by group: Enter runs one, l loads it into the form,
delete removes its file. Files that could not be read are listed, not skipped."""
from __future__ import annotations

import json

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from console.core.collections import SavedCall

CSS = """
SavedCallsScreen { align: center middle; }
SavedCallsScreen > Vertical { width: 92%; height: 80%; border: thick $accent; background: $surface; }
SavedCallsScreen Label { padding: 0 1; text-style: bold; }
SavedCallsScreen .problems { padding: 0 1; color: $error; height: auto; }
SavedCallsScreen DataTable { height: 1fr; }
"""


class SavedCallsScreen(ModalScreen["tuple[str, SavedCall] | None"]):
    """Dismisses with ("run" | "load" | "delete", call)."""

    DEFAULT_CSS = CSS
    BINDINGS = [
        Binding("escape,c", "dismiss(None)", "Close"),
        Binding("enter,r", "choose('run')", "Run"),
        Binding("l", "choose('load')", "Load into the form"),
        Binding("delete", "choose('delete')", "Delete"),
    ]

    def __init__(self, calls: list[SavedCall], problems: list[str], folder: str) -> None:
        super().__init__()
        self._calls, self._problems, self._folder = calls, problems, folder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Saved calls in {self._folder} — Enter runs · l loads into the form · delete removes · Esc")
            if self._problems:
                yield Static("\n".join(f"✖ {p}" for p in self._problems), classes="problems", markup=False)
            yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("group", "name", "target", "address", "method", "params")
        for c in self._calls:
            table.add_row(c.group, c.short_name, c.target or "(this node)", c.address or "", c.method,
                          json.dumps(c.params, ensure_ascii=False)[:50])
        table.focus()

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_choose("run")

    def action_choose(self, what: str) -> None:
        table = self.query_one(DataTable)
        if self._calls and table.cursor_row is not None:
            self.dismiss((what, self._calls[table.cursor_row]))
