"""`g` / `:`: jump to a node, a tool or a method by typing part of its name
(fuzzy, as the command palette matches), then Enter."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.fuzzy import FuzzySearch
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

SHOWN = 200  # candidates listed at most


@dataclass(frozen=True)
class Place:
    """Somewhere to jump: what the list shows, what kind, and the tree's data for it."""

    text: str
    kind: str  # node / tool / method
    data: Any


class JumpScreen(ModalScreen["Place | None"]):
    DEFAULT_CSS = """
    JumpScreen { align: center top; }
    JumpScreen > Vertical { width: 90; max-width: 95%; height: auto; max-height: 80%; margin-top: 2;
                            border: thick $accent; background: $surface; padding: 0 1; }
    JumpScreen .dialog-title { text-style: bold; }
    JumpScreen Input { margin: 0; }
    JumpScreen OptionList { height: auto; max-height: 20; border: none; padding: 0; }
    JumpScreen .jump-count { color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("down", "move(1)", "Next", show=False),
        Binding("up", "move(-1)", "Previous", show=False),
        Binding("pagedown", "move(10)", "Next page", show=False),
        Binding("pageup", "move(-10)", "Previous page", show=False),
    ]

    def __init__(self, places: Callable[[], list[Place]]) -> None:
        """`places` is asked again at each keystroke: nodes still being listed join in."""
        super().__init__()
        self._source = places
        self.places: list[Place] = []
        self.matches: list[Place] = []
        self._search = FuzzySearch()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Jump to a node, tool or method", classes="dialog-title")
            yield Input(placeholder="type part of a name, e.g. stream_items, sqlite query, embedded", id="query")
            yield Label("", classes="jump-count")
            yield OptionList(id="places")

    def on_mount(self) -> None:
        self._show("")
        self.query_one(Input).focus()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self._show(event.value)

    def ranked(self, query: str) -> list[tuple[float, Place, tuple[int, ...]]]:
        """Places matching `query`, best first (all of them, in order, when it is empty)."""
        query = query.strip()
        if not query:
            return [(1.0, p, ()) for p in self.places]
        found = []
        for n, place in enumerate(self.places):
            score, offsets = self._search.match(query, place.text)
            if score > 0:
                found.append((score, n, place, tuple(offsets)))
        found.sort(key=lambda f: (-f[0], f[1]))
        return [(score, place, offsets) for score, _, place, offsets in found]

    def _show(self, query: str) -> None:
        self.places = self._source()
        ranked = self.ranked(query)
        self.matches = [place for _, place, _ in ranked]
        options = self.query_one(OptionList)
        options.clear_options()
        match_style = "bold underline $accent"
        prompts = []
        for _, place, offsets in ranked[:SHOWN]:
            content = Content(place.text)
            for offset in offsets:
                content = content.stylize(match_style, offset, offset + 1)
            prompts.append(Option(Content.assemble((f"{place.kind:<7}", "dim"), content)))
        options.add_options(prompts)
        if prompts:
            options.highlighted = 0
        more = f" (first {SHOWN})" if len(ranked) > SHOWN else ""
        self.query_one(".jump-count", Label).update(
            f"{len(ranked)} of {len(self.places)}{more} · ↑↓ choose · Enter jumps · Esc closes")

    def action_move(self, step: int) -> None:
        options = self.query_one(OptionList)
        if options.option_count:
            at = options.highlighted or 0
            options.highlighted = max(0, min(options.option_count - 1, at + step))

    @on(Input.Submitted)
    def _submitted(self) -> None:
        options = self.query_one(OptionList)
        at = options.highlighted
        self.dismiss(self.matches[at] if at is not None and at < len(self.matches) else None)

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.matches[event.option_index])
