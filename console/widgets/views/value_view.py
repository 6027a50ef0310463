"""A value shown whole: a table when it is a list of records (sqlite `tables`, files
`list`), else a folding JSON tree. Used for unary results, a chunk, a row."""
from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from console.core.views import ValueSource
from console.core.views.rows import TableModel
from console.core.views.cells import compact
from console.core.views.values import records_of
from console.widgets.views.table_view import TableView
from console.widgets.views.value_tree import ValueTree


class ValueView(Vertical):
    DEFAULT_CSS = """
    ValueView { height: 1fr; }
    ValueView > .value-caption { height: 1; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, value: Any, title: str = "value", *, as_table: bool | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.value = value
        self.title = title
        records = records_of(value) if as_table is not False else None
        self.table_view: TableView | None = None
        self.value_tree: ValueTree | None = None
        if records is not None:
            model = TableModel(ValueSource(value))
            model.sync()
            self.table_view = TableView(model)
        else:
            self.value_tree = ValueTree(value, title)

    def compose(self) -> ComposeResult:
        if self.table_view is not None:
            m = self.table_view.model
            yield Static(f"{self.title}: {m.row_count:,} records × {len(m.columns)} columns{self._beside()}  "
                         "(← → column, S sorts, Enter shows a record, v tree)", classes="value-caption", markup=False)
            yield self.table_view
        else:
            yield Static(f"{self.title}  (← → fold, Enter opens, c copies the value under the cursor)",
                         classes="value-caption", markup=False)
            yield self.value_tree

    def _beside(self) -> str:
        """The scalars next to the records (`total: 3`, `database: sample.db`)."""
        if not isinstance(self.value, dict):
            return ""
        parts = [f"{k}: {compact(v)}" for k, v in self.value.items() if not isinstance(v, (dict, list))]
        return (" · " + " · ".join(parts)) if parts else ""

    def caption(self) -> str:
        return str(self.query_one(".value-caption", Static).render())

    def on_mount(self) -> None:
        if self.table_view is not None:
            self.table_view.sync()

    @property
    def body(self):
        return self.table_view if self.table_view is not None else self.value_tree
