"""Many streams started at once on one connection (issue 14): each new stream's
first chunk goes out early, ahead of busier streams' data. Timings are never
asserted: what is pinned is the order in which the node does its work."""
from __future__ import annotations

import struct
import types

import trio
import trio.testing

from node_runtime.stream_io import FrameWriter
from trio_helpers import run_trio


class _Wire:
    """A stream that records its writes (no Yamux under it: no window to wait for)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.writes.append(data)
        await trio.lowlevel.checkpoint()


def test_a_streams_first_write_is_its_first_frame_alone_and_later_writes_take_all_that_waits():
    async def body():
        wire = _Wire()
        writer = FrameWriter(wire)
        for data in (b"a", b"bb", b"ccc"):  # queued before the writer first runs
            await writer.send(data)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            await writer.drain()
            for data in (b"d", b"ee"):
                await writer.send(data)
            await writer.drain()
            writer.close()
        return wire.writes, writer.pending_bytes

    writes, pending = run_trio(body, timeout=10)
    assert writes == [b"a", b"bbccc", b"dee"]
    assert pending == 0


def test_a_new_streams_first_data_frame_goes_before_a_busier_streams_later_frames():
    """Fix 10 ranks a data frame by the bytes its stream sent before it: a new
    stream's first frame (however large, up to a Yamux frame) goes before the
    next frame of a stream that has already sent some."""
    from libp2p.stream_muxer.yamux.yamux import TYPE_DATA, YAMUX_HEADER_FORMAT, Yamux

    from node_runtime.libp2p_fixes import fair_yamux_writes

    fair_yamux_writes()

    class Wire:
        is_initiator = True

        def __init__(self) -> None:
            self.frames: list[int] = []
            self.go = trio.Event()

        async def write(self, data: bytes) -> None:
            pos = 0
            while pos < len(data):
                _, kind, _, sid, length = struct.unpack(YAMUX_HEADER_FORMAT, data[pos:pos + 12])
                self.frames.append(sid)
                pos += 12 + length
            if len(self.frames) == 1:
                await self.go.wait()

    def data(sid: int, size: int) -> bytes:
        return struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_DATA, 0, sid, size) + bytes(size)

    async def body():
        wire = Wire()
        conn = Yamux.__new__(Yamux)
        Yamux.__init__(conn, wire, None, True)
        for sid in (1, 3, 5):
            conn.streams[sid] = types.SimpleNamespace()
        conn.streams[3]._olane_sent = 1000  # has sent one small frame
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for frame in (data(1, 100), data(3, 1000), data(5, 65536 - 12)):
                    nursery.start_soon(conn._write_frame, frame)
                    await trio.testing.wait_all_tasks_blocked()
                wire.go.set()
        return wire.frames

    assert run_trio(body) == [1, 5, 3]


def test_a_producer_sees_tasks_waiting_to_run_besides_its_own_woken_writer():
    """server._others_runnable, what a streaming tool's loop asks every SLICE_CHUNKS
    chunks besides "are other requests running": a request just read is not running
    yet (before, a request whose answer fits its stream's write buffer was made whole
    in one step while 100 requests read at once waited one after another). Its own
    writer, woken by its chunks, does not count."""
    from node_runtime.server import _others_runnable

    async def body():
        writer = FrameWriter(_Wire())
        seen = [_others_runnable(writer)]  # nothing else to run
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 0)  # a task waiting to run (a request just read)
            seen.append(_others_runnable(writer))
            writer.woken = True  # ... which could be our writer, woken
            seen.append(_others_runnable(writer))
        return seen

    assert run_trio(body, timeout=10) == [False, True, False]
