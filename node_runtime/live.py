"""Live streams: streaming requests seen from outside the one stream they
answer on (docs/protocol-extensions.md, "Live streams").

- `ActiveStream`: the record every streaming request leaves in the node's
  registry while it runs (what `list_streams` answers). Cheap: the plain path
  only bumps its chunk count and looks at its tap list per chunk.
- `Sink`: one lossless reader of a stream's chunks (the caller of a resumable
  stream, the joiners of a shared one), a bounded queue that slows the
  producer when full.
- `Tap`: one lossy reader (a tap). Taps do not have queues of their own: the
  stream appends each chunk once to its tap log, with its data encoded once
  per codec the taps read, and each tap reads the log from its cursor, so a
  tap costs the stream almost nothing per chunk. A tap's share of the log is
  bounded as a queue would be (`Limits.tap_queue_chunks`): chunks past it are
  lost to that tap, and counted.
- `Producer`: runs a resumable or shared stream's generator in a node-wide
  task, apart from any caller's stream, with a replay ring of its newest
  chunks; with no reader left it suspends (resumable, for the grace) or stops
  (shared). It encodes each chunk's data once, in its caller's codec: that
  encoding is the chunk's size in the ring and what its readers in that codec
  (the caller, joiners, taps) send.
"""
from __future__ import annotations

import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson
import trio

from . import codec as codecs
from .errors import ErrorCode, OlaneError
from .limits import Limits
from .tools import StreamEnd

if TYPE_CHECKING:
    from .messages import IncomingRequest

#: request params that are the envelope's, not the tool's (left out of list_streams)
ENVELOPE_PARAMS = ("_connectionId", "_requestMethod", "_isStreaming")

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
    """One reader of a stream: a bounded queue of (sequence, item, dropped, data).
    `dropped` on an entry counts the chunks this sink lost right before it; `data`
    is the item encoded in the producer's codec, or None (replayed from the ring,
    or not encodable: the reader encodes it itself)."""

    __slots__ = ("queue", "capacity", "kind", "peer_id", "offset", "announce", "pending_dropped",
                 "dropped_total", "end", "detached", "record", "blocked", "blocked_since", "_wake", "_room")

    def __init__(self, record: "ActiveStream", capacity: int, *, kind: str, peer_id: str | None,
                 offset: int = 0) -> None:
        self.record = record
        self.queue: deque = deque()
        self.capacity = capacity
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

    def offer(self, sequence: int, item: Any, data: bytes | None = None) -> bool:
        """Queue a chunk. False when full (wait_room, then offer again): a sink is
        lossless; taps, which may lose chunks, are `Tap`s."""
        queue = self.queue
        if len(queue) >= self.capacity:
            return False
        queue.append((sequence, item, self.pending_dropped, data))
        self.pending_dropped = 0
        if len(self._wake):
            self._wake.unpark_all()
        return True

    def preload(self, entries) -> None:
        """Chunks replayed from the ring, queued whatever the capacity (bounded by the ring)."""
        self.queue.extend((seq, item, 0, None) for seq, item, _ in entries)

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


class Tap:
    """A lossy reader of a stream: reads the stream's tap log (ActiveStream.fan_out)
    from `cursor`, the next sequence it has not seen. It behaves as a bounded queue
    drained whole by each take: of the chunks that came since its last take it gets
    the first `capacity` (minus what `held` holds) and loses the rest, and the next
    chunk it gets says how many it lost (`_dropped`)."""

    __slots__ = ("record", "capacity", "peer_id", "cursor", "held", "codec", "announce", "pending_dropped",
                 "dropped_total", "end", "detached", "blocked", "blocked_since")

    kind = "tap"
    lossy = True
    offset = 0

    def __init__(self, record: "ActiveStream", capacity: int, peer_id: str | None) -> None:
        self.record = record
        self.capacity = capacity
        self.peer_id = peer_id
        self.cursor = record.chunks + 1
        #: (sequence, item, dropped, data | None) taken out of the log already: the ring's chunks of a
        #: tap from "buffer", or a slow tap's share kept when the log moved on (ActiveStream._trim)
        self.held: list = []
        self.codec: str | None = None  # what its frames are encoded in (set by its writer)
        self.announce = True
        self.pending_dropped = 0  # lost right before the next chunk it reads from the log
        self.dropped_total = 0
        self.end: tuple[str, Any, int] | None = None
        self.detached = False
        self.blocked = False  # its writer waits on its reader (see ActiveStream.fan_out)
        self.blocked_since = 0.0

    def lag(self, latest: int) -> int:
        """Chunks waiting for it (as a queue's length)."""
        return max(0, min(latest - self.cursor + 1, self.capacity - len(self.held))) + len(self.held)

    def preload(self, entries) -> None:
        """Chunks replayed from the ring (tap from "buffer")."""
        self.held.extend((seq, item, 0, None) for seq, item, _ in entries)

    def finish(self, kind: str, value: Any, chunks: int) -> None:
        if self.end is None:
            self.end = (kind, value, chunks)
        self.record.wake_taps()

    def detach(self) -> None:
        self.detached = True
        self.record.wake_taps()

    def read_log(self) -> tuple[int, list, "list | None", int]:
        """What it gets from the log now: (first sequence, items, their data in its
        codec or None, dropped before the first); it loses what does not fit."""
        record = self.record
        items = record.log_items
        latest = record.log_first + len(items) - 1
        available = latest - self.cursor + 1
        if available <= 0:
            return self.cursor, [], None, 0
        room = max(0, self.capacity - len(self.held))
        n = min(available, room)
        start = self.cursor - record.log_first
        first, dropped = self.cursor, self.pending_dropped
        self.cursor = latest + 1
        lost = available - n
        self.dropped_total += lost
        if n == 0:
            self.pending_dropped += lost
            return first, [], None, 0
        self.pending_dropped = lost
        column = record.log_data.get(self.codec) if self.codec is not None else None
        return (first, items[start:start + n], column[start:start + n] if column is not None else None, dropped)

    async def take(self) -> tuple[list, int, list, "list | None", int]:
        """(held entries, then from the log: first sequence, items, data or None,
        dropped before the first); all empty at the end (or when detached)."""
        record = self.record
        while (not self.held and self.end is None and not self.detached
               and record.log_first + len(record.log_items) <= self.cursor):
            await record.tap_wake.park()
        if self.detached:
            return [], self.cursor, [], None, 0
        first, items, data, dropped = self.read_log()  # (what fits beside `held`)
        held, self.held = self.held, []
        return held, first, items, data, dropped


class ActiveStream:
    """A streaming request running on this node."""

    __slots__ = ("stream_id", "request_id", "address", "method", "params", "peer_id", "started", "_t0", "chunks",
                 "taps", "producer", "resumable", "share", "_yielded", "log_first", "log_items", "log_data",
                 "log_limit", "log_keep", "tap_wake", "_encoders")

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
        self.taps: list[Tap] = []  # the plain path tests this list's truth per chunk
        self.producer: "Producer | None" = None
        self.resumable = False
        self.share: str | None = None
        self._yielded = 0.0  # trio time of the last checkpoint asked for taps
        # the tap log: the chunks from the least advanced tap's cursor on, while it has taps
        self.log_first = 1  # sequence of log_items[0]
        self.log_items: list = []
        self.log_data: dict[str, list] = {}  # codec -> each chunk's data encoded once (None: not encodable)
        self.log_limit = 0  # trimmed past this many chunks (twice a tap's capacity)
        self.log_keep = 0  # ... keeping at least this many newest (a plain stream's buffer for taps)
        self.tap_wake = trio.lowlevel.ParkingLot()  # taps waiting for chunks
        self._encoders: dict[str, Any] = {}

    def add_tap(self, tap: Tap, keep: int = 0) -> None:
        """`keep`: the log keeps at least this many newest chunks (for taps from "buffer")."""
        self.taps.append(tap)
        self.log_keep = max(self.log_keep, keep)
        self.log_limit = max(self.log_limit, 2 * tap.capacity, 2 * self.log_keep)

    def buffered_from(self, most: int) -> int:
        """The first sequence of the newest `most` chunks the log still holds."""
        if not self.log_items:
            return self.chunks + 1
        latest = self.log_first + len(self.log_items) - 1
        return max(self.log_first, latest + 1 - most)

    def remove_tap(self, tap: Tap) -> None:
        if tap in self.taps:
            self.taps.remove(tap)
        if not self.taps:
            self.log_items, self.log_data, self.log_keep = [], {}, 0
        elif tap.codec is not None and all(t.codec != tap.codec for t in self.taps):
            self.log_data.pop(tap.codec, None)

    def read_in(self, tap: Tap, codec: str) -> None:
        """`tap` is written in `codec`: the log encodes its chunks so from now on
        (those already in it are encoded by the tap when it reads them)."""
        tap.codec = codec
        if codec not in self.log_data and tap in self.taps:
            self.log_data[codec] = [None] * len(self.log_items)
            self._encoders[codec] = codecs.fast_encoder(codec)

    def wake_taps(self) -> None:
        if len(self.tap_wake):
            self.tap_wake.unpark_all()

    def fan_out(self, sequence: int, item: Any, codec: str | None = None, data: bytes | None = None) -> bool:
        """Append a chunk to the tap log, its data encoded once per codec the taps
        read (`data`: the stream's own encoding in `codec`, shared). True when a tap
        that is not held up by its reader is half full: the producer should let it
        run (a checkpoint), as it otherwise may not until its own writer is full (at
        most every YIELD_SECONDS; looked at once in 16 chunks). A tap whose writer
        has waited on its reader for over SLOW_TAP_SECONDS never asks: it drops
        instead of slowing the stream."""
        items = self.log_items
        if not items:
            self.log_first = sequence
        items.append(item)
        for name, column in self.log_data.items():
            if name == codec:
                column.append(data)
                continue
            try:
                column.append(self._encoders[name](item))
            except Exception:
                column.append(None)  # the tap encodes it itself, for the real error
        if len(self.tap_wake):
            self.tap_wake.unpark_all()
        if len(items) > self.log_limit:
            self._trim(sequence)
        if sequence & 15:
            return False
        now = trio.current_time()
        if now - self._yielded < YIELD_SECONDS:
            return False
        ask = False
        for t in self.taps:
            if t.lag(sequence) * 2 >= t.capacity and not (t.blocked and now - t.blocked_since > SLOW_TAP_SECONDS):
                ask = True  # a tap that keeps up is half full: let it run
                break
        if not ask:
            return False
        self._yielded = now
        return True

    def _trim(self, latest: int) -> None:
        """Forget the log's chunks every tap is past. A tap whose share is full loses
        the rest until it takes: its share moves to its own `held`, so the log need
        not keep what only it would have read."""
        first = self.log_first
        for t in self.taps:
            if t.cursor <= latest and latest - t.cursor + 1 + len(t.held) > t.capacity:
                first_seq, items, data, lead = t.read_log()
                if items:
                    column = data or [None] * len(items)
                    t.held.extend((first_seq + i, item, lead if i == 0 else 0, column[i])
                                  for i, item in enumerate(items))
        low = min([t.cursor for t in self.taps], default=latest + 1)
        if self.log_keep:
            low = min(low, latest + 1 - self.log_keep)
        cut = low - first
        if cut > 0:
            del self.log_items[:cut]
            for column in self.log_data.values():
                del column[:cut]
            self.log_first = low

    def end_taps(self, kind: str, value: Any) -> None:
        for tap in self.taps:
            tap.finish(kind, value, self.chunks)

    def describe(self, max_chars: int) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        params = {k: v for k, v in self.params.items() if k not in ENVELOPE_PARAMS}
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


#: what a chunk that cannot be encoded counts in the replay ring (its reader answers 4008)
UNENCODED_SIZE = 1024


class Producer:
    """Runs one resumable or shared stream's generator apart from its callers."""

    def __init__(self, record: ActiveStream, agen, limits: Limits, on_done, codec: str = codecs.JSON) -> None:
        self.record = record
        self.agen = agen
        self.limits = limits
        self.on_done = on_done  # called once the stream is over (the registry forgets it)
        self.codec = codec  # its caller's: each chunk's data is encoded once, in it
        self.ring: deque = deque()  # (sequence, item, size), the newest chunks; size: its data's bytes
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
            oldest = self.oldest()
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
        codec = self.codec
        encode = codecs.fast_encoder(codec)
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
                    try:
                        data = encode(item)
                    except Exception:  # what the fast path cannot write (bytes, big integers, ...)
                        try:
                            data = codecs.encode(item, codec)
                        except OlaneError:
                            data = None  # its reader encodes it again, for the 4008
                    size = len(data) if data is not None else UNENCODED_SIZE
                    ring.append((seq, item, size))
                    self.ring_bytes += size
                    while len(ring) > keep_chunks or (self.ring_bytes > keep_bytes and len(ring) > 1):
                        self.ring_bytes -= ring.popleft()[2]
                    for sink in list(self.sinks):
                        while not sink.offer(seq, item, data) and not sink.detached:
                            await sink.wait_room()
                    if record.taps and record.fan_out(seq, item, codec, data):
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
