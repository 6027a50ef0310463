"""Driving the real console (embedded node, real libp2p) with Pilot, under deadlines."""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any, Callable

from console.app import OlaneConsole
from console.core.session import ConsoleSession, Target
from console.widgets.method_panel import MethodPanel
from console.widgets.node_tree import MethodRef, NodeTree

SIZE = (140, 44)


async def wait_for(pilot, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


@asynccontextmanager
async def running_console(*, timeout: float = 60.0, size=SIZE, wait_connected: bool = True, **kwargs):
    """The console app with its embedded node (or the given targets), connected; or the
    given `app`, as built elsewhere (e.g. by build_console)."""
    app = kwargs.pop("app", None)
    if app is None:
        kwargs.setdefault("session", ConsoleSession(embedded=kwargs.pop("embedded", True),
                                                    seed=kwargs.pop("seed", None)))
        app = OlaneConsole(**kwargs)
    async with asyncio.timeout(timeout):
        async with app.run_test(size=size) as pilot:
            if wait_connected:
                await wait_for(pilot, lambda: app.session.targets and all(
                    t.state != "connecting" for t in app.session.targets), what="discovery")
                await pilot.pause(0.1)
            yield app, pilot


def tree_line(app: OlaneConsole, address: str, method: str) -> int:
    tree = app.query_one(NodeTree)
    for line in range(tree.last_line + 1):
        node = tree.get_node_at_line(line)
        data = node.data if node is not None else None
        if isinstance(data, MethodRef) and data.address == address and data.method.name == method:
            return line
    # built-ins are collapsed at first: open every group and look again
    for node in list(tree.root.children):
        node.expand_all()
    for line in range(tree.last_line + 1):
        node = tree.get_node_at_line(line)
        data = node.data if node is not None else None
        if isinstance(data, MethodRef) and data.address == address and data.method.name == method:
            return line
    raise AssertionError(f"{address} {method} not in the tree")


async def select_method(app: OlaneConsole, pilot, address: str, method: str) -> MethodPanel:
    """Move the tree cursor to the method and press Enter, as an operator would."""
    tree = app.query_one(NodeTree)
    tree.focus()
    await pilot.pause()
    line = tree_line(app, address, method)
    await pilot.pause()
    tree.cursor_line = line
    await pilot.press("enter")
    panel = app.query_one(MethodPanel)
    await wait_for(pilot, lambda: panel.method is not None and panel.method.name == method, what="method panel")
    await pilot.pause()
    return panel


async def set_field(pilot, panel: MethodPanel, name: str, text: str) -> None:
    widget = panel._fields[name]["widget"]
    widget.focus()
    widget.value = ""
    await pilot.press(*list(text))


def embedded_target(app: OlaneConsole) -> Target:
    return next(t for t in app.session.targets if t.embedded)


def start_call(app: OlaneConsole, address: str, method: str, params: dict, target: Target | None = None):
    """Start `method` of the tool at `address` on `target` (the embedded node by default),
    as the method panel's run does; returns its stream record."""
    target = target or embedded_target(app)
    return app.start_call(target, address, target.tool(address).methods[method], params)


def visible_lines(widget) -> list[str]:
    """The widget's lines as they are on screen."""
    return [strip.text for strip in widget.render_lines(widget.region.reset_offset)]


def visible_text(widget) -> str:
    return "\n".join(visible_lines(widget))


async def active_requests(app: OlaneConsole, target: Target, address: str = "o://demo") -> int:
    metrics = await app.bridge.call(app.session.node_metrics, target, address)
    return metrics["activeRequests"]
