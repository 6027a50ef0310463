"""The footer: the keys that apply where the operator is, on one line. When they
do not fit, the least important drop out whole (never a key cut mid-word or
drawn over by the palette key); the palette key stays at the right.

One widget rendering one line of text, rebuilt only when the bindings or the
width change: Textual's Footer recomposes a widget per key on every focus or
binding change, which cost the console tens of milliseconds each time."""
from __future__ import annotations

from rich.text import Text
from textual import events
from textual.widget import Widget

GAP = 2  # spaces between two keys


class KeyBar(Widget, can_focus=False):
    COMPONENT_CLASSES = {"key-bar--key", "key-bar--description", "key-bar--more"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom; height: 1; width: 1fr;
        background: $footer-background; color: $footer-foreground;
    }
    KeyBar > .key-bar--key { color: $footer-key-foreground; text-style: bold; }
    KeyBar > .key-bar--description { color: $footer-description-foreground; }
    KeyBar > .key-bar--more { color: $text-muted; }
    """

    def __init__(self, priority: dict[str, int] | None = None, *, palette_key: str | None = "ctrl+p",
                 **kwargs) -> None:
        """`priority`: binding id -> rank (0 first to stay); ids not named rank after all named ones."""
        super().__init__(**kwargs)
        self.priority = dict(priority or {})
        self.palette_key = palette_key
        self.shown: list[str] = []  # actions shown, left to right (for tests and clicks)
        self._ranks: dict[str, int] = {}
        self._spans: list[tuple[int, int, str]] = []  # (start, end, key) for clicks

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen) -> None:
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        self.refresh()

    def _items(self) -> tuple[list[tuple[str, str, str, str]], tuple[str, str, str] | None]:
        """[(action, key, key display, description)] in binding order, and the palette key."""
        items: list[tuple[str, str, str, str]] = []
        self._ranks: dict[str, int] = {}
        seen: set[str] = set()
        palette = None
        app = self.app
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if self.palette_key and key == self.palette_key and app.ENABLE_COMMAND_PALETTE:
                palette = (binding.key, app.get_key_display(binding), binding.description or "palette")
                continue
            if not binding.show or not active.enabled or binding.action in seen:
                continue
            seen.add(binding.action)
            self._ranks[binding.action] = self.priority.get(binding.id or "", len(self.priority))
            items.append((binding.action, binding.key.split(",")[0], app.get_key_display(binding),
                          binding.description))
        return items, palette

    def fit(self, width: int) -> tuple[list[tuple[str, str, str, str]], tuple[str, str, str] | None, int]:
        """The items that fit in `width` (least important dropped first), the palette
        key, and how many were dropped."""
        items, palette = self._items()
        room = width - 1  # a space at the left
        if palette is not None:
            room -= len(palette[1]) + 1 + len(palette[2]) + 3  # " │ key desc"
        ranked = sorted(range(len(items)), key=lambda i: (self._ranks[items[i][0]], i))
        keep: set[int] = set()
        used = 0
        more = len("+99 more") + GAP
        for i in ranked:
            _, _, display, description = items[i]
            need = len(display) + 1 + len(description) + (GAP if keep else 0)
            reserve = more if len(keep) + 1 < len(items) else 0  # room to say some were dropped
            if used + need + reserve > room:
                break  # strictly by priority: nothing less important slips into the gap
            keep.add(i)
            used += need
        kept = [items[i] for i in range(len(items)) if i in keep]
        return kept, palette, len(items) - len(kept)

    def render(self) -> Text:
        width = self.size.width
        kept, palette, dropped = self.fit(width)
        key_style = self.get_component_rich_style("key-bar--key")
        description_style = self.get_component_rich_style("key-bar--description")
        more_style = self.get_component_rich_style("key-bar--more")
        text = Text(" ", no_wrap=True, overflow="crop")
        spans: list[tuple[int, int, str]] = []
        for n, (action, key, display, description) in enumerate(kept):
            if n:
                text.append(" " * GAP)
            start = len(text)
            text.append(display, key_style)
            text.append(" " + description, description_style)
            spans.append((start, len(text), key))
        self.shown = [item[0] for item in kept]
        if dropped:
            text.append(" " * GAP + f"+{dropped} more", more_style)
        if palette is not None:
            key, display, description = palette
            tail = Text.assemble(" │ ", (display, key_style), (" " + description, description_style))
            pad = width - len(text) - len(tail)
            if pad > 0:
                text.append(" " * pad)
            start = len(text) + 3
            text.append_text(tail)
            spans.append((start, len(text), key))
        self._spans = spans
        return text

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._spans:
            if start <= event.x < end:
                self.app.simulate_key(key)
                return
