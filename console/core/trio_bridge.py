"""Trio in guest mode on the asyncio loop Textual runs (shared/CONSOLE-DESIGN.md):
one thread, no locks. All libp2p work happens in trio tasks started here; the
UI side reaches them through `submit()` (fire and forget) and `call()` (await
the result from asyncio).

Start it in exactly one place and always `await stop()` before the app exits:
a guest run left behind breaks every later trio run in that thread.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import trio


class TrioBridge:
    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._done: asyncio.Future | None = None
        self._ready: asyncio.Future | None = None
        self.crashed: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._nursery is not None and self._done is not None and not self._done.done()

    async def start(self, main: Callable[[trio.Nursery], Awaitable[Any]] | None = None) -> None:
        """Start the guest run; return once trio is up. `main(nursery)` runs
        first inside it (e.g. starting the embedded node)."""
        if self._done is not None:
            raise RuntimeError("the trio guest run is already started")
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._ready = loop.create_future()

        async def trio_main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if not self._ready.done():
                    self._ready.set_result(None)
                if main is not None:
                    await main(nursery)
                await trio.sleep_forever()

        def done(outcome) -> None:
            self._nursery = None
            try:
                outcome.unwrap()
            except BaseException as exc:  # trio.Cancelled at stop() is the normal end
                if not _only_cancelled(exc):
                    self.crashed = exc
            if not self._ready.done():
                self._ready.set_exception(self.crashed or RuntimeError("trio ended before it started"))
            if not self._done.done():
                self._done.set_result(None)

        trio.lowlevel.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon,
            done_callback=done,
            host_uses_signal_set_wakeup_fd=True,
        )
        await self._ready

    def submit(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run `fn(*args)` as a trio task; its errors are its own business."""
        if self._token is None or self._nursery is None:
            raise RuntimeError("trio is not running")
        nursery = self._nursery
        self._token.run_sync_soon(lambda: nursery.start_soon(_guarded, fn, args))

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run `fn(*args)` in trio and await its result (or exception) from asyncio."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        async def run() -> None:
            try:
                result = await fn(*args)
            except BaseException as exc:
                if not future.done():
                    future.set_exception(_unwrap(exc) if isinstance(exc, Exception) else
                                         asyncio.CancelledError())
                if not isinstance(exc, Exception):
                    raise
            else:
                if not future.done():
                    future.set_result(result)

        self.submit(run)
        return await future

    async def stop(self) -> None:
        """Cancel everything on the trio side and wait for the guest run to end."""
        if self._done is None:
            return
        if self._token is not None and self._nursery is not None and not self._done.done():
            nursery = self._nursery
            try:
                self._token.run_sync_soon(nursery.cancel_scope.cancel)
            except trio.RunFinishedError:
                pass
        await asyncio.shield(self._done)


async def _guarded(fn: Callable[..., Awaitable[Any]], args: tuple) -> None:
    try:
        await fn(*args)
    except Exception:  # a task's failure must not take the whole trio world down
        import logging

        logging.getLogger("olane.console").exception("trio task failed")


def _unwrap(exc: BaseException) -> BaseException:
    """Trio's strict exception groups -> the one error inside, for display."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancelled(e) for e in exc.exceptions)
    return False
