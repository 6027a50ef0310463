"""A chunk or a row seen whole, over the console: a folding JSON tree (or a table of
records). Esc closes."""
from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer

from console.widgets.views.table_view import TableView
from console.widgets.views.value_view import ValueView


class ValueScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    ValueScreen { align: center middle; }
    ValueScreen > Vertical { width: 94%; height: 92%; border: thick $accent; background: $surface; }
    """
    BINDINGS = [Binding("escape,q", "dismiss(None)", "Close")]

    def __init__(self, value: Any, title: str) -> None:
        super().__init__()
        self.value = value
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical():
            yield ValueView(self.value, self.title_text)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(ValueView).body.focus()

    @on(TableView.RowChosen)
    def _row(self, event: TableView.RowChosen) -> None:
        event.stop()
        self.app.push_screen(ValueScreen(event.record, f"{self.title_text} › row {event.row + 1}"))
