"""Narrow fixes of py-libp2p 0.8.1 behaviour, applied to one host's swarm.

This is the one module that touches py-libp2p's private parts; each fix says
why, and tests/test_connections.py pins both the behaviour it corrects (so a
py-libp2p that changes it fails a test and the fix can go) and the fix.

1. Inbound connection slots are never given back (LIBP2P-NOTES.md 9).
   `Swarm._handle_inbound_connection` takes a slot of `_inbound_limiter`
   (max_connections - min_connections = 250 by default) and releases it when
   `_do_handle_inbound_connection` returns, but that only returns when the
   whole swarm stops (`await self.manager.wait_finished()`, "intentional
   barrier"). Each closed connection keeps its slot and its handler task, so
   the 251st caller is refused until restart. The fix runs the original
   handler but ends it as soon as the connection it upgraded has closed.
2. Peers not allowed (an allowlist of peer ids) are refused at connection
   time: `Swarm.add_conn` is where an upgraded connection, its peer id now
   proven by Noise, is registered; a refused one is closed before any stream.
3. A relay's streams to the next hop park up to 16 MiB each: Yamux doubles a
   stream's receive window (`YamuxStream._apply_autotune_epoch`, up to
   `MAX_WINDOW_SIZE`) whenever its reader kept up for a few round trips, and a
   relay reads fast until its own caller slows down; then the far node fills
   the grown window, in the relay's memory. 100 slow relayed streams took a
   relay from 93 to 417 MiB. The window grows during the stream's protocol
   negotiation already (2 MiB when `host.new_stream` returns), so the cap goes
   on at creation: streams opened inside `capped_windows(limit)` (a context
   variable read by a wrapped `Yamux.open_stream`) keep their window at most
   `limit` bytes (the relay's `Limits.relay_window_bytes`).
"""
from __future__ import annotations

import contextvars
import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import trio

log = logging.getLogger("olane.libp2p")

#: the upgraded connection of the inbound handler running in this task (fix 1)
_inbound: contextvars.ContextVar["_Upgraded"] = contextvars.ContextVar("olane_inbound_connection")


class _Upgraded:
    def __init__(self) -> None:
        self.conn: Any = None
        self.ready = trio.Event()


class PeerNotAllowed(Exception):
    """An inbound connection from a peer id the node does not admit."""


def release_inbound_slots_on_close(swarm) -> None:
    """Fix 1: an inbound connection's handler (and its limiter slot) ends when
    that connection closes, not when the swarm stops."""
    original_handle = swarm._do_handle_inbound_connection
    original_upgrade = swarm.upgrade_inbound_raw_conn

    async def upgrade(raw_conn, maddr):
        muxed = await original_upgrade(raw_conn, maddr)
        upgraded = _inbound.get(None)
        if upgraded is not None:
            upgraded.conn = muxed
            upgraded.ready.set()
        return muxed

    async def handle(read_write_closer, maddr, failure_event) -> None:
        upgraded = _Upgraded()
        token = _inbound.set(upgraded)  # child tasks inherit it: upgrade() finds it
        try:
            async with trio.open_nursery() as nursery:
                async def run_original() -> None:
                    try:
                        await original_handle(read_write_closer, maddr, failure_event)
                    finally:
                        nursery.cancel_scope.cancel()

                nursery.start_soon(run_original)
                await upgraded.ready.wait()
                await wait_closed(upgraded.conn)
                nursery.cancel_scope.cancel()  # the original only waits for the swarm to stop
        finally:
            _inbound.reset(token)

    swarm._do_handle_inbound_connection = handle
    swarm.upgrade_inbound_raw_conn = upgrade


async def wait_closed(muxed_conn) -> None:
    """Until a muxed connection is closed or shutting down (Yamux sets
    `event_shutting_down` on close and when its read loop ends)."""
    event = getattr(muxed_conn, "event_shutting_down", None)
    if isinstance(event, trio.Event):
        await event.wait()
        return
    while not getattr(muxed_conn, "is_closed", True):  # other muxers: poll
        await trio.sleep(1)


def admit_only(swarm, allowed: Callable[[str], bool]) -> None:
    """Fix 2: close inbound connections from peers `allowed(peer_id)` refuses,
    before they are registered (so before any stream is accepted)."""
    original_add = swarm.add_conn

    async def add_conn(muxed_conn, direction: str = "unknown"):
        peer = muxed_conn.peer_id.to_string()
        if direction == "inbound" and not allowed(peer):
            log.info("refused a connection from %s: not on the allowlist", peer)
            try:
                await muxed_conn.close()
            except Exception:
                pass
            raise PeerNotAllowed(f"peer {peer} is not allowed")
        return await original_add(muxed_conn, direction)

    swarm.add_conn = add_conn


def inbound_slots_in_use(swarm) -> int:
    """How many inbound limiter slots are taken (for tests and soak figures)."""
    return int(swarm._inbound_limiter.borrowed_tokens)


#: the window cap for Yamux streams opened in this context (fix 3)
_window_cap: contextvars.ContextVar["int | None"] = contextvars.ContextVar("olane_window_cap", default=None)


@contextmanager
def capped_windows(limit: int) -> Iterator[None]:
    """Fix 3: Yamux streams opened inside this block keep their receive window at most `limit`."""
    _wrap_yamux_open_stream()
    token = _window_cap.set(limit)
    try:
        yield
    finally:
        _window_cap.reset(token)


def _wrap_yamux_open_stream() -> None:
    from libp2p.stream_muxer.yamux.yamux import Yamux

    if getattr(Yamux.open_stream, "_olane_capped", False):
        return
    original = Yamux.open_stream

    async def open_stream(self):
        stream = await original(self)
        limit = _window_cap.get()
        if limit is not None:
            cap_receive_window(stream, limit)
        return stream

    open_stream._olane_capped = True
    Yamux.open_stream = open_stream


def cap_receive_window(stream, limit: int) -> bool:
    """Fix 3: the Yamux receive window of `stream` (a NetStream or a YamuxStream) stays
    at most `limit` bytes from now on. False when the stream is not one this fix knows."""
    muxed = getattr(stream, "muxed_stream", stream)
    original = getattr(muxed, "_apply_autotune_epoch", None)
    if original is None or not hasattr(muxed, "target_recv_window"):
        return False
    muxed.target_recv_window = min(muxed.target_recv_window, limit)

    def capped(buffered: int) -> int:
        if muxed.target_recv_window * 2 > limit:  # doubling would pass the cap: stay
            muxed.epoch_start = trio.current_time()
            return 0
        return original(buffered)

    muxed._apply_autotune_epoch = capped
    return True
