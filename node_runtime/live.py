"""Live streams: streaming requests seen from outside the one stream they
answer on (docs/protocol-extensions.md, "Live streams").

- `ActiveStream`: the record every streaming request leaves in the node's
  registry while it runs (what `list_streams` answers). Cheap: the plain path
  only bumps its chunk count and looks at its tap list per chunk.
- `Sink`: one reader of a stream's chunks, a bounded queue. Lossless sinks
  (the caller of a resumable stream, the joiners of a shared one) slow the
  producer when full; lossy ones (taps) drop instead and count what they lost.
- `Producer`: runs a resumable or shared stream's generator in a node-wide
  task, apart from any caller's stream, with a replay ring of its newest
  chunks; with no reader left it suspends (resumable, for the grace) or stops
  (shared).
"""
from __future__ import annotations

import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson
import trio

from .errors import ErrorCode, OlaneError
from .limits import Limits
from .tools import StreamEnd

if TYPE_CHECKING:
    from .messages import IncomingRequest

#: request params that are the envelope's, not the tool's (left out of list_streams)
_PRIVATE_PARAMS = ("_connectionId", "_requestMethod", "_isStreaming")

#: a tap asks its stream for a checkpoint at most this often (seconds): each lets the stream's
#: own writer flush its batch too, so more often would cost the stream its batching
YIELD_SECONDS = 0.001
#: a tap whose writer waited this long on its reader is slow: it drops rather than asks
SLOW_TAP_SECONDS = 0.5

# what a sink's queue ends with
FINAL = "final"
ERROR = "error"


def new_stream_id() -> str:
    return "s-" + secrets.token_hex(8)


class Sink:
    """One reader of a stream: a bounded queue of (sequence, item, dropped).
    `dropped` on an entry counts the chunks this sink lost right before it."""

    __slots__ = ("queue", "capacity", "lossy", "kind", "peer_id", "offset", "announce", "pending_dropped",
                 "dropped_total", "end", "detached", "record", "blocked", "blocked_since", "_wake", "_room")

    def __init__(self, record: "ActiveStream", capacity: int, *, lossy: bool, kind: str, peer_id: str | None,
                 offset: int = 0) -> None:
        self.record = record
        self.queue: deque = deque()
        self.capacity = capacity
        self.lossy = lossy
        self.kind = kind  # "caller", "resume", "join", "tap"
        self.peer_id = peer_id
        self.offset = offset  # a late joiner of a shared stream counts its chunks from 1
        self.announce = True  # the first chunk frame names the stream
        self.pending_dropped = 0  # lost since the last chunk queued
        self.dropped_total = 0
        self.end: tuple[str, Any, int] | None = None  # (FINAL | ERROR, data or OlaneError, chunks of the stream)
        self.detached = False
        self.blocked = False  # its writer waits on its reader (see ActiveStream.fan_out)
        self.blocked_since = 0.0
        self._wake = trio.lowlevel.ParkingLot()
        self._room = trio.lowlevel.ParkingLot()

    def offer(self, sequence: int, item: Any) -> bool:
        """Queue a chunk. False when full and lossless (wait_room, then offer again)."""
        queue = self.queue
        if len(queue) >= self.capacity:
            if self.lossy:
                self.pending_dropped += 1
                self.dropped_total += 1
                return True
            return False
        queue.append((sequence, item, self.pending_dropped))
        self.pending_dropped = 0
        if len(self._wake):
            self._wake.unpark_all()
        return True

    def preload(self, entries) -> None:
        """Chunks replayed from the ring, queued whatever the capacity (bounded by the ring)."""
        self.queue.extend((seq, item, 0) for seq, item, _ in entries)

    async def wait_room(self) -> None:
        while len(self.queue) >= self.capacity and not self.detached and self.end is None:
            await self._room.park()

    def finish(self, kind: str, value: Any, chunks: int) -> None:
        if self.end is None:
            self.end = (kind, value, chunks)
        self._wake.unpark_all()

    def detach(self) -> None:
        """The reader is gone (its stream ended, or another resume took over)."""
        self.detached = True
        self._wake.unpark_all()
        self._room.unpark_all()

    async def take(self) -> list:
        """Everything queued (waits for at least one chunk, the end, or a detach)."""
        while not self.queue and self.end is None and not self.detached:
            await self._wake.park()
        items = list(self.queue)
        self.queue.clear()
        if len(self._room):
            self._room.unpark_all()
        return items


class ActiveStream:
    """A streaming request running on this node."""

    __slots__ = ("stream_id", "request_id", "address", "method", "params", "peer_id", "started", "_t0", "chunks",
                 "taps", "producer", "resumable", "share", "_yielded")

    def __init__(self, req: "IncomingRequest", peer_id: str | None, address: str) -> None:
        self.stream_id = new_stream_id()
        self.request_id = req.id
        self.address = address
        self.method = req.method
        self.params = req.params  # filtered and truncated only when listed
        self.peer_id = peer_id
        self.started = time.time()
        self._t0 = time.monotonic()
        self.chunks = 0
        self.taps: list[Sink] = []  # the plain path tests this list's truth per chunk
        self.producer: "Producer | None" = None
        self.resumable = False
        self.share: str | None = None
        self._yielded = 0.0  # trio time of the last checkpoint asked for taps

    def fan_out(self, sequence: int, item: Any) -> bool:
        """Offer a chunk to every tap. True when a tap that is not held up by its
        reader is half full: the producer should let it run (a checkpoint), as
        it otherwise may not until its own writer is full (at most every
        YIELD_SECONDS). A tap whose writer has waited on its reader for
        over SLOW_TAP_SECONDS never asks: it drops instead of slowing the stream."""
        ask = False
        for tap in self.taps:
            tap.offer(sequence, item)
            if len(tap.queue) * 2 >= tap.capacity:
                ask = True
        if not ask:
            return False
        now = trio.current_time()
        if now - self._yielded < YIELD_SECONDS:
            return False
        if all(t.blocked and now - t.blocked_since > SLOW_TAP_SECONDS for t in self.taps
               if len(t.queue) * 2 >= t.capacity):
            return False  # only taps whose readers are behind: they drop
        self._yielded = now
        return True

    def end_taps(self, kind: str, value: Any) -> None:
        for tap in self.taps:
            tap.finish(kind, value, self.chunks)

    def describe(self, max_chars: int) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        params = {k: v for k, v in self.params.items() if k not in _PRIVATE_PARAMS}
        try:
            text = orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError:
            text = str(params)
        if len(text) > max_chars:
            text = text[:max_chars - 1] + "…"
        out: dict[str, Any] = {
            "streamId": self.stream_id, "address": self.address, "method": self.method, "params": text,
            "callerPeerId": self.peer_id, "started": round(self.started, 3), "chunks": self.chunks,
            "chunksPerSecond": round(self.chunks / elapsed, 1), "taps": len(self.taps),
            "resumable": self.resumable,
        }
        producer = self.producer
        if producer is not None:
            out["readers"] = len(producer.sinks)
            out["suspended"] = producer.suspended or (producer.over and not producer.delivered)
            if self.share is not None:
                out["share"] = self.share
        return out


_NO_FINAL = object()


def _size_of(item: Any) -> int:
    """Bytes a chunk holds in the replay ring, as its JSON (an estimate for bytes)."""
    if type(item) is bytes:
        return len(item)
    try:
        return len(orjson.dumps(item, option=orjson.OPT_PASSTHROUGH_DATACLASS))
    except TypeError:
        return 1024


class Producer:
    """Runs one resumable or shared stream's generator apart from its callers."""

    def __init__(self, record: ActiveStream, agen, limits: Limits, on_done) -> None:
        self.record = record
        self.agen = agen
        self.limits = limits
        self.on_done = on_done  # called once the stream is over (the registry forgets it)
        self.ring: deque = deque()  # (sequence, item, size), the newest chunks
        self.ring_bytes = 0
        self.sinks: list[Sink] = []  # lossless readers
        self.sequence = 0
        self.suspended = False
        self.over = False
        self.stopped = False
        self.delivered = False  # a reader got the final frame (a resumable stream is then forgotten)
        self.kept = False  # ended with its caller away: kept for a resume (StreamRegistry._settle)
        #: how it ended: (FINAL, data) or (ERROR, OlaneError)
        self.outcome: tuple[str, Any] = (ERROR, OlaneError(ErrorCode.NOT_FOUND, "the stream stopped: no reader is left"))
        self._attached = trio.lowlevel.ParkingLot()
        self._scope = trio.CancelScope()

    # -- readers -------------------------------------------------------------------

    def attach(self, sink: Sink, after: int | None = None) -> None:
        """Add a lossless reader; with `after`, first replay the ring's chunks past it
        (4010 when the ring no longer holds `after + 1`)."""
        if after is not None:
            oldest = self.ring[0][0] if self.ring else self.sequence + 1
            if after < oldest - 1:
                raise OlaneError(ErrorCode.INVALID_STATE,
                                 f"chunks after {after} are no longer held: the oldest still held is {oldest}",
                                 {"oldestSequence": oldest, "after": after})
            if after > self.sequence:
                raise OlaneError(ErrorCode.INVALID_STATE,
                                 f"the stream has sent {self.sequence} chunks; cannot resume after {after}",
                                 {"sequence": self.sequence, "after": after})
            sink.preload(e for e in self.ring if e[0] > after)
        if self.over:  # ended while its caller was away: the rest from the ring, then the end
            sink.finish(*self.outcome, self.sequence)
            return
        self.sinks.append(sink)
        self._attached.unpark_all()

    def detach(self, sink: Sink) -> None:
        sink.detach()
        if sink in self.sinks:
            self.sinks.remove(sink)
            if not self.sinks and not self.record.resumable:
                self._scope.cancel()  # the last joiner left a shared stream: stop it now

    def stop(self) -> None:
        """End the stream now (its caller gave up on it: `stop_stream`)."""
        self.stopped = True
        self._scope.cancel()

    def oldest(self) -> int:
        return self.ring[0][0] if self.ring else self.sequence + 1

    # -- running -------------------------------------------------------------------

    async def run(self) -> None:
        record = self.record
        limits = self.limits
        keep_chunks = limits.resume_buffer_chunks
        keep_bytes = limits.resume_buffer_bytes
        ring = self.ring
        deltas: list[str] = []
        final: Any = _NO_FINAL
        ended = False
        outcome = self.outcome
        try:
            with self._scope:
                async for item in self.agen:
                    if type(item) is StreamEnd:
                        final, ended = item.data, True
                        break
                    self.sequence = seq = self.sequence + 1
                    record.chunks = seq
                    if type(item) is dict and type(item.get("delta")) is str:
                        deltas.append(item["delta"])
                    size = _size_of(item)
                    ring.append((seq, item, size))
                    self.ring_bytes += size
                    while len(ring) > keep_chunks or (self.ring_bytes > keep_bytes and len(ring) > 1):
                        self.ring_bytes -= ring.popleft()[2]
                    for sink in list(self.sinks):
                        while not sink.offer(seq, item) and not sink.detached:
                            await sink.wait_room()
                    if record.taps and record.fan_out(seq, item):
                        await trio.sleep(0)
                    if not self.sinks and not await self._wait_for_reader():
                        break
                else:
                    ended = True
            if ended:
                # what a TypeScript streaming tool ends with, as on the plain path
                outcome = (FINAL, {"message": "".join(deltas)} if final is _NO_FINAL else final)
            elif self.stopped:
                outcome = (ERROR, OlaneError(ErrorCode.UNKNOWN, "cancelled by the caller"))
            elif self.record.resumable and not self.sinks:
                outcome = (ERROR, OlaneError(ErrorCode.NOT_FOUND, f"stream {record.stream_id} expired: not resumed "
                                                                  f"within {limits.resume_grace:g} s"))
        except OlaneError as exc:
            outcome = (ERROR, exc)
        except Exception as exc:  # the tool's own failure, as the plain path reports it
            outcome = (ERROR, OlaneError(ErrorCode.UNKNOWN, str(exc) or type(exc).__name__,
                                         f"{type(exc).__name__}: {exc}"))
        finally:  # (also when the node stops: its readers still get an end)
            self.over = True
            self.outcome = outcome
            with trio.CancelScope(shield=True):
                with trio.move_on_after(5):
                    await self.agen.aclose()  # the tool's `finally` runs now
            for sink in self.sinks:
                sink.finish(*outcome, self.sequence)
            record.end_taps(*outcome)
            self.on_done(self)

    async def _wait_for_reader(self) -> bool:
        """No reader: a resumable stream waits (generator suspended) for a resume
        within the grace; a shared one is over."""
        if not self.record.resumable:
            return False
        self.suspended = True
        with trio.move_on_after(self.limits.resume_grace):
            while not self.sinks:
                await self._attached.park()
        self.suspended = False
        return bool(self.sinks)
