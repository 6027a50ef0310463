"""The app-wide errors log (the call history is console/screens/history.py)."""
from __future__ import annotations

import time

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from console.core.session import ErrorEntry

LIST_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 95%; height: 85%; border: thick $accent; background: $surface; }}
{name} Label {{ padding: 0 1; text-style: bold; }}
{name} DataTable {{ height: 1fr; }}
"""


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
