"""Pick JSON paths (for the fields or chart view): suggestions from the first chunk to
tick, and a line for paths typed by hand (comma-separated, `a.b.0.c`)."""
from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, SelectionList, Static

from console.screens.dialogs import DIALOG_CSS


class PathsScreen(ModalScreen["list[str] | None"]):
    DEFAULT_CSS = DIALOG_CSS.format(name="PathsScreen") + """
    PathsScreen SelectionList { height: auto; max-height: 16; margin-bottom: 1; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"), Binding("ctrl+s", "done", "Apply")]

    def __init__(self, title: str, suggested: list[str], current: list[str]) -> None:
        super().__init__()
        self._title = title
        self._suggested = list(dict.fromkeys(suggested + current))
        self._current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="dialog-title")
            yield Static("Tick paths from the first chunk (space), or type more below (comma-separated). "
                         "Enter or ctrl+s applies.", markup=False)
            yield SelectionList[str](*[(p, p, p in self._current) for p in self._suggested], id="suggested")
            typed = [p for p in self._current if p not in self._suggested]
            yield Input(value=", ".join(typed), placeholder="more paths, e.g. cpu.percent, rows.0.2", id="typed")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Apply", id="apply", variant="primary")

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()

    def chosen(self) -> list[str]:
        ticked = list(self.query_one(SelectionList).selected)
        typed = [p.strip() for p in self.query_one("#typed", Input).value.split(",") if p.strip()]
        ordered = [p for p in self._suggested if p in ticked]
        return list(dict.fromkeys(ordered + typed))

    @on(Input.Submitted)
    @on(Button.Pressed, "#apply")
    def action_done(self) -> None:
        self.dismiss(self.chosen())

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
