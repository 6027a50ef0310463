"""Running trio code from plain pytest tests, always under a deadline."""
from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable

import trio

from node_runtime import Client, Node, Tool


def run_trio(body: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    """Run `body()` in a fresh trio run; fail the test if it takes over `timeout` s."""

    async def main() -> Any:
        with trio.fail_after(timeout):
            return await body()

    return trio.run(main)


def trio_test(timeout: float = 30.0):
    """Decorator: an `async def test_x(...)` run in trio under a deadline."""

    def wrap(fn):
        @functools.wraps(fn)
        def test(*args, **kwargs):
            return run_trio(lambda: fn(*args, **kwargs), timeout)

        return test

    return wrap


class NodeAndClient:
    """A node serving `tools` on 127.0.0.1 (random port) and a client connected to it."""

    def __init__(self, tools: list[Tool], **node_kwargs: Any) -> None:
        self.node = Node(tools, **node_kwargs)
        self.client = Client()

    async def __aenter__(self) -> "NodeAndClient":
        await self.node.__aenter__()
        try:
            await self.client.__aenter__()
        except BaseException:
            await self.node.__aexit__(None, None, None)
            raise
        self.ma = self.node.listen_addrs[0]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.client.__aexit__(*exc)
        finally:
            await self.node.__aexit__(*exc)
