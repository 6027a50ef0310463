"""A recording replayed in a tab: a bar with the replay's position, speed and keys,
over the same CallView a live call gets (chunk log, findings, rates, the end),
fed from a Replayer at the console's refresh rate."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from console.core.replay import Replayer
from console.widgets.call_view import CallView

SEEK_FRACTION = 0.1


class ReplayPane(Vertical):
    DEFAULT_CSS = """
    ReplayPane { height: 1fr; }
    ReplayPane .replay-bar { height: 1; padding: 0 1; background: $secondary 30%; }
    """
    BINDINGS = [
        Binding("space", "toggle", "Pause/play", id="replay-toggle"),
        Binding("plus,equals_sign", "faster", "Faster", id="replay-faster"),
        Binding("minus", "slower", "Slower", id="replay-slower"),
        Binding("left_square_bracket", "seek(-1)", "Back 10%", id="replay-back"),
        Binding("right_square_bracket", "seek(1)", "On 10%", id="replay-on"),
        Binding("0", "restart", "Restart", id="replay-restart", show=False),
        Binding("9", "to_end", "To the end", id="replay-end", show=False),
    ]

    def __init__(self, replayer: Replayer, **kwargs) -> None:
        super().__init__(**kwargs)
        self.replayer = replayer
        self.view = CallView(replayer.record)
        self._generation = replayer.generation
        self._bar_text = ""
        self._swapping = False
        self.on_new_view = None  # called with the new CallView after a seek backwards

    def compose(self) -> ComposeResult:
        yield Static(self._bar(), classes="replay-bar", markup=False)
        yield self.view

    def _bar(self) -> str:
        r = self.replayer
        path = r.recording.path
        return f"▷ replay of {path.name if path else 'a recording'} · {r.status()} · space pause  +/- speed  [ ] seek"

    def tick(self) -> None:
        """Feed the record what is due; show a new record after a seek backwards."""
        r = self.replayer
        r.tick()
        if r.generation != self._generation and not self._swapping and self.is_mounted:
            self._swapping = True
            self.call_later(self._swap_view)
        if self.is_mounted:
            text = self._bar()
            if text != self._bar_text:
                self._bar_text = text
                self.query_one(".replay-bar", Static).update(text, layout=False)

    async def _swap_view(self) -> None:
        """Show the replayer's new record (after a seek backwards) in a new CallView."""
        try:
            while self._generation != self.replayer.generation:
                self._generation = self.replayer.generation
                old = self.view
                had_focus = self.app.focused is not None and old in self.app.focused.ancestors_with_self
                old.display = False  # out of the next frame at once; removed below
                await old.remove()
                self.view = CallView(self.replayer.record)
                await self.mount(self.view)
                if self.on_new_view is not None:
                    self.on_new_view(self.view)
                if had_focus and self.view.log is not None:
                    self.view.log.focus()
        finally:
            self._swapping = False

    def action_toggle(self) -> None:
        self.replayer.toggle()
        self.tick()

    def action_faster(self) -> None:
        self.replayer.faster()
        self.tick()

    def action_slower(self) -> None:
        self.replayer.slower()
        self.tick()

    def action_seek(self, direction: int) -> None:
        r = self.replayer
        r.seek_by(direction * max(r.duration * SEEK_FRACTION, 1.0))
        self.tick()

    def action_restart(self) -> None:
        self.replayer.seek(0)
        self.replayer.play()
        self.tick()

    def action_to_end(self) -> None:
        self.replayer.to_end()
        self.tick()
