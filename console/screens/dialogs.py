"""Small modal dialogs: confirm a risky call, add a node, pick an ordering path, quit
with calls running."""
from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 80; height: auto; border: thick $accent; background: $surface; padding: 1 2; }}
{name} .dialog-title {{ text-style: bold; margin-bottom: 1; }}
{name} Input {{ margin-bottom: 1; }}
{name} Horizontal {{ height: auto; align-horizontal: right; }}
{name} Button {{ margin-left: 1; }}
"""


class ConfirmScreen(ModalScreen[bool]):
    """Yes / no, for methods marked high risk."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmScreen")
    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel"), Binding("y", "dismiss(True)", "Yes")]

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self._title, self._body = title, body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="dialog-title")
            yield Static(self._body, markup=False)
            with Horizontal():
                yield Button("Cancel", id="no")
                yield Button("Run it (y)", id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class AddTargetScreen(ModalScreen["tuple[str, str | None, str | None] | None"]):
    """A node's multiaddr and, optionally, the o:// address of its tool and a name for it."""

    DEFAULT_CSS = DIALOG_CSS.format(name="AddTargetScreen")
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Add a node", classes="dialog-title")
            yield Input(placeholder="/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…", id="multiaddr")
            yield Input(placeholder="o://address (optional: when the node does not advertise its tools)",
                        id="address")
            yield Input(placeholder="name (optional: shown instead of the peer id; olane --target NAME)", id="name")
            yield Static("", id="problem")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Add", id="add", variant="primary")

    @on(Input.Submitted)
    @on(Button.Pressed, "#add")
    def _add(self) -> None:
        multiaddr = self.query_one("#multiaddr", Input).value.strip()
        address = self.query_one("#address", Input).value.strip() or None
        name = self.query_one("#name", Input).value.strip() or None
        if "/p2p/" not in multiaddr:
            self.query_one("#problem", Static).update("[red]a multiaddr ending in /p2p/<peer id> is needed[/]")
            return
        if address and not address.startswith("o://"):
            address = "o://" + address.lstrip("/")
        self.dismiss((multiaddr, address, name))

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class PromptScreen(ModalScreen["str | None"]):
    """One line of text (e.g. the JSON path that orders a stream)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="PromptScreen")
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, hint: str, value: str = "") -> None:
        super().__init__()
        self._title, self._hint, self._value = title, hint, value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="dialog-title")
            yield Static(self._hint, markup=False)
            yield Input(value=self._value, id="value")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())


class QuitScreen(ModalScreen["str | None"]):
    """Quit while calls are running? "quit", "always" (and stop asking), or None."""

    DEFAULT_CSS = DIALOG_CSS.format(name="QuitScreen")
    BINDINGS = [Binding("escape,n", "dismiss(None)", "Stay"), Binding("y,q", "dismiss('quit')", "Quit"),
                Binding("a", "dismiss('always')", "Quit, never ask")]

    def __init__(self, running: int, where: str) -> None:
        super().__init__()
        self._calls, self._config = running, where

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Quit with {self._calls} call(s) running?", classes="dialog-title")
            yield Static(f"They are cancelled: each node is told to stop its tool.\n"
                         f"Not asking any more sets \"confirm_quit\": false in {self._config}.", markup=False)
            with Horizontal():
                yield Button("Stay (Esc)", id="stay")
                yield Button("Quit, never ask (a)", id="always")
                yield Button("Quit (q)", id="quit", variant="error")

    def on_mount(self) -> None:
        self.query_one("#stay", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)
