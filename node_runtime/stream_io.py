"""Reading and writing frames on one libp2p stream, around py-libp2p's sharp
edges (shared/LIBP2P-NOTES.md):

- writes are never cancelled midway (a cancelled write under Noise breaks the
  whole connection): each write is shielded, and cancellation happens between
  writes by resetting the stream;
- frames queued while a write is in flight go out together in one write
  (py-libp2p costs ~90 us per write, whatever its size);
- a chunk is written only when the Yamux send window has room, and we wait for
  room ourselves, with no timeout: py-libp2p's own wait gives up after 5 s and
  kills the stream when a consumer pauses;
- the bytes waiting to be written are bounded, so a slow consumer slows the
  producer instead of growing memory.
"""
from __future__ import annotations

import trio

from .errors import ErrorCode, OlaneError

try:  # py-libp2p's end-of-stream exceptions
    from libp2p.network.stream.exceptions import StreamError as _Libp2pStreamError
    from libp2p.stream_muxer.exceptions import MuxedStreamError as _MuxedStreamError

    STREAM_ENDED: tuple[type[BaseException], ...] = (_Libp2pStreamError, _MuxedStreamError, EOFError)
except Exception:  # pragma: no cover
    STREAM_ENDED = (EOFError,)

# py-libp2p has no event for "window opened", so we poll: quickly at first, then
# backing off, so a consumer paused for minutes costs next to no CPU.
WINDOW_POLL_FIRST = 0.001
WINDOW_POLL_MAX = 0.05


class StreamGone(OlaneError):
    """The stream was reset or closed under us."""

    def __init__(self, why: str) -> None:
        super().__init__(ErrorCode.SEND_FAILED, why)


async def write_shielded(stream, data: bytes, timeout: float = 30.0) -> None:
    """Write all of `data`, never cancelled midway, but never for more than
    `timeout` seconds: a peer that reads nothing (hung, or gone without a FIN)
    would otherwise hold the task forever. A write cut short leaves the
    connection's cipher state unusable, so the connection is then aborted."""
    if await shielded_until(trio.current_time() + timeout, stream.write(data), stream):
        raise StreamGone(f"the peer read nothing for {timeout:g} s; connection aborted")


async def reset_quietly(stream, timeout: float = 2.0) -> None:
    """Reset a stream; if that cannot even be sent within `timeout` (the peer
    reads nothing), abort the connection instead."""
    await shielded_until(trio.current_time() + timeout, _quietly(stream.reset()), stream)


async def close_quietly(stream, timeout: float = 2.0) -> None:
    await shielded_until(trio.current_time() + timeout, _quietly(stream.close()), stream)


async def _quietly(operation) -> None:
    try:
        await operation
    except Exception:
        pass


async def shielded_until(deadline: float, operation, stream, track=None) -> bool:
    """Await `operation` (a coroutine on `stream`) shielded from cancellation
    until `deadline`; past it, abort the stream's connection (see
    abort_transport). True when it was cut. `track(scope)` / `track(None)` let a
    caller move the deadline while it runs."""
    with trio.CancelScope(shield=True, deadline=deadline) as scope:
        if track is not None:
            track(scope)
        try:
            await operation
        finally:
            if track is not None:
                track(None)
    if scope.cancelled_caught:
        abort_transport(stream)
        return True
    return False


# where py-libp2p 0.8.1 keeps the TCP socket under a stream (NetStream -> Yamux ->
# secure session -> raw connection -> TrioTCPStream -> trio.SocketStream)
_SOCKET_PATH = ("muxed_conn", "secured_conn", "conn", "conn", "stream", "stream")


def peer_gone(stream) -> bool:
    """Whether the peer reset or closed `stream` (or its connection is gone),
    seen without reading it: py-libp2p's muxer notes it as frames arrive."""
    muxed = getattr(stream, "muxed_stream", None)
    if muxed is None:
        return False
    if getattr(muxed, "reset_received", False) or getattr(muxed, "closed", False) or getattr(muxed, "recv_closed", False):
        return True
    closed = getattr(getattr(muxed, "conn", None), "event_closed", None)
    return bool(closed is not None and closed.is_set())


def abort_transport(stream) -> bool:
    """Close the TCP socket under `stream` at once. Writes blocked on a peer that
    reads nothing hold py-libp2p's connection write lock, so no polite close
    (which must write too) can get through; closing the socket wakes them all
    with an error. The whole connection is gone afterwards."""
    obj = stream
    for name in _SOCKET_PATH:
        obj = getattr(obj, name, None)
        if obj is None:
            return False
    if not isinstance(obj, trio.SocketStream):
        return False
    try:
        obj.socket.close()
    except Exception:
        return False
    return True


class FrameWriter:
    """The one writer of a stream. Producers `send()` encoded frames; `run()`
    writes whatever has accumulated in one write when the window allows.

    A queued entry is bytes, or a deferred frame: an object with `__len__` and
    `build() -> bytes`, built only when the writer takes it (so a producer can
    keep adding to it while it waits, counting what it adds in `pending_bytes`)."""

    def __init__(self, stream, buffer_bytes: int = 256 * 1024, write_timeout: float = 30.0) -> None:
        self._stream = stream
        self._write_timeout = write_timeout
        self._write_scope: trio.CancelScope | None = None  # the write in flight
        self._write_deadline = float("inf")  # lowered by stop_soon()
        self._muxed = getattr(stream, "muxed_stream", None)
        # plain attributes, not properties: the per-chunk loop of a batched stream reads them
        self.buffer_bytes = buffer_bytes
        self._pending: list[bytes] = []
        self.pending_bytes = 0  # bytes queued, not yet taken by run(); grows as deferred frames do
        self._data = trio.lowlevel.ParkingLot()
        self._room = trio.lowlevel.ParkingLot()
        self._drained = trio.lowlevel.ParkingLot()
        self._closed = False
        self._writing = False  # a batch is on its way to the wire
        self.error: BaseException | None = None
        #: a producer woke run() and it has not run since (so it waits in trio's run queue)
        self.woken = False
        self.writes = 0
        self.bytes_written = 0
        #: set (compression.StreamCompressor) once a request on this stream answers compressed
        self.compressor = None

    async def wait_room(self) -> None:
        """Wait while the queue is full; StreamGone once the stream can take nothing more."""
        while self.pending_bytes >= self.buffer_bytes and self.error is None:
            await self._room.park()
        if self.error is not None:
            raise StreamGone(f"stream closed: {self.error}")

    async def wait_taken(self) -> None:
        """Wait until the writer has taken everything queued so far (it may still be
        writing it): a producer that waits here before queueing more sends what
        piled up meanwhile as one batch instead of a frame per wake-up."""
        while self._pending and self.error is None:
            await self._room.park()

    def send_nowait(self, data: bytes) -> bool:
        """Queue one encoded frame if there is room now (no await: the per-chunk
        path); False when the caller must `await send(data)` instead."""
        if self.pending_bytes >= self.buffer_bytes or self.error is not None:
            return False
        self._pending.append(data)
        self.pending_bytes += len(data)
        if len(self._data):
            self._data.unpark_all()
            self.woken = True
        return True

    async def send(self, data: bytes) -> None:
        """Queue one encoded frame. Waits while the queue is full; raises
        StreamGone once the stream can take nothing more."""
        while self.pending_bytes >= self.buffer_bytes and self.error is None:
            await self._room.park()
        if self.error is not None:
            raise StreamGone(f"stream closed: {self.error}")
        self._pending.append(data)
        self.pending_bytes += len(data)
        if len(self._data):
            self._data.unpark_all()
            self.woken = True

    async def drain(self) -> None:
        """Wait until everything queued so far has been written (or failed)."""
        while (self._pending or self._writing) and self.error is None:
            await self._drained.park()

    def close(self) -> None:
        """Let `run()` return once the queue is empty."""
        self._closed = True
        self._data.unpark_all()

    def stop_soon(self, grace: float) -> None:
        """The node is stopping: give a write in flight at most `grace` more
        seconds (it may be blocked on a peer that stopped reading)."""
        self._write_deadline = trio.current_time() + grace
        scope = self._write_scope
        if scope is not None:
            scope.deadline = min(scope.deadline, self._write_deadline)

    async def _write(self, data: bytes) -> None:
        deadline = min(trio.current_time() + self._write_timeout, self._write_deadline)
        if await shielded_until(deadline, self._stream.write(data), self._stream, self._track):
            raise StreamGone("write stalled: the peer reads nothing; connection aborted")

    def _track(self, scope: trio.CancelScope | None) -> None:
        self._write_scope = scope

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._pending.clear()
        self.pending_bytes = 0
        self._room.unpark_all()
        self._drained.unpark_all()
        self._data.unpark_all()

    async def run(self) -> None:
        try:
            while True:
                while not self._pending:
                    self._drained.unpark_all()
                    if self._closed or self.error is not None:
                        return
                    await self._data.park()
                    self.woken = False
                pending = self._pending
                if self.writes or len(pending) == 1:
                    self._pending = []
                    self.pending_bytes = 0
                else:  # the stream's first write: its first frame alone, small, so that it goes
                    # out ahead of busier streams' data (libp2p_fixes fix 10 ranks it first)
                    self._pending = pending[1:]
                    pending = pending[:1]
                    self.pending_bytes = sum([len(x) for x in self._pending])
                if len(pending) == 1 and type(pending[0]) is bytes:
                    batch = pending[0]
                elif self.compressor is None:
                    batch = b"".join([x if type(x) is bytes else x.build() for x in pending])
                else:  # compressed regions for the entries that asked (compression.py)
                    batch = self.compressor.join(pending)
                self._writing = True
                self._room.unpark_all()
                await self._write_when_room(batch)
                self._writing = False
        except (Exception, trio.Cancelled) as exc:
            self.fail(exc if isinstance(exc, Exception) else StreamGone("writer cancelled"))
            if isinstance(exc, trio.Cancelled):
                raise
        finally:
            self._writing = False
            self._drained.unpark_all()

    async def _write_when_room(self, batch: bytes) -> None:
        muxed = self._muxed
        window = getattr(muxed, "send_window", None) if muxed is not None else None
        if window is None:
            await self._write(batch)
            self._count(len(batch))
            return
        view = memoryview(batch)
        offset = 0
        total = len(batch)
        poll = WINDOW_POLL_FIRST
        while offset < total:
            room = muxed.send_window
            if room <= 0:
                if getattr(muxed, "closed", False) or getattr(muxed, "reset_received", False):
                    raise StreamGone("stream reset by peer")
                await trio.sleep(poll)
                poll = min(poll * 2, WINDOW_POLL_MAX)
                continue
            poll = WINDOW_POLL_FIRST
            n = min(room, total - offset)
            piece = batch if (offset == 0 and n == total) else bytes(view[offset : offset + n])
            await self._write(piece)
            self._count(n)
            offset += n

    def _count(self, n: int) -> None:
        self.writes += 1
        self.bytes_written += n
