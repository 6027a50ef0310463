"""What the console knows about one call: every chunk's receive order, declared
sequence, arrival time and size, kept in a bounded ring; counters, throughput
per second, ordering analysis (gaps, duplicates, reordering) and the call's
state. Plain Python, no Textual: the trio side writes it once per chunk, the
screen reads it at a fixed rate.

Ordering analysis is O(1) per chunk and its memory grows only with the number
of sequences still missing: a chunk whose sequence is above the highest seen
opens a gap; one that fills a known gap is "reordered" (late); one at or below
the highest seen that fills no gap is a duplicate.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterator

DEFAULT_MAX_CHUNKS = 100_000
DEFAULT_STALL_AFTER = 5.0
MAX_TRACKED_MISSING = 100_000

# flags on one chunk (a bitmask, so an entry stays a small tuple)
GAP = 1  # sequences were skipped right before this chunk
REORDERED = 2  # arrived after a higher sequence (filled a gap)
DUPLICATE = 4  # a sequence already seen
AFTER_FINAL = 8  # a frame for this call after its final frame
NOKEY = 16  # the ordering key (`_sequence`, or the chosen JSON path) is missing: not judged
BADKEY = 32  # the ordering key is there but not a whole number: not judged

FLAG_NAMES = {GAP: "gap", REORDERED: "reordered", DUPLICATE: "duplicate", AFTER_FINAL: "after final",
              NOKEY: "no key", BADKEY: "key not an integer"}


class State(str, Enum):
    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    STALLED = "stalled"  # derived: running, but nothing for `stall_after` seconds

    @property
    def ended(self) -> bool:
        return self in (State.COMPLETED, State.FAILED, State.CANCELLED)


@dataclass(frozen=True)
class Chunk:
    """One received chunk as the screen shows it."""

    index: int  # receive order, 1-based
    sequence: Any  # declared `_sequence` (or the value at the chosen JSON path); None if absent
    at: float  # seconds since the call started
    delta: float  # seconds since the previous chunk (or since the start, for the first)
    size: int  # payload bytes on the wire
    data: Any
    flags: int

    @property
    def flag_names(self) -> list[str]:
        return [name for bit, name in FLAG_NAMES.items() if self.flags & bit]


@dataclass(frozen=True)
class ErrorInfo:
    code: int
    name: str
    message: str
    details: Any = None

    def __str__(self) -> str:
        return f"{self.code} {self.name}: {self.message}"


def value_at_path(data: Any, path: str) -> Any:
    """`a.b.0.c` -> data["a"]["b"][0]["c"]; None when any step is missing."""
    for step in path.split("."):
        if isinstance(data, dict):
            data = data.get(step)
        elif isinstance(data, list) and step.lstrip("-").isdigit():
            i = int(step)
            data = data[i] if -len(data) <= i < len(data) else None
        else:
            return None
        if data is None:
            return None
    return data


class SequenceCheck:
    """Gap / duplicate / reorder detection over integer sequences. A chunk whose
    key is missing (None) or not a whole number cannot be judged: it is flagged
    NOKEY / BADKEY and counted, never silently passed."""

    def __init__(self) -> None:
        self.judged = 0  # chunks whose key was a whole number
        self.no_key = 0  # chunks without the key
        self.bad_key = 0  # chunks whose key was not a whole number
        self.highest: int | None = None
        self.missing: set[int] = set()
        self.gaps = 0  # gap events (a jump over one or more sequences)
        self.missing_total = 0  # sequences skipped, over all gaps
        self.duplicates = 0
        self.reordered = 0
        self.missing_overflow = False  # too many open gaps to track each one

    def check(self, seq: Any) -> int:
        if type(seq) is not int:
            if seq is None:
                self.no_key += 1
                return NOKEY
            if isinstance(seq, float) and seq.is_integer():
                seq = int(seq)
            else:  # text, bool, an object, a fraction ...
                self.bad_key += 1
                return BADKEY
        self.judged += 1
        highest = self.highest
        if highest is None or seq == highest + 1:
            self.highest = seq
            return 0
        if seq > highest:
            self.gaps += 1
            skipped = seq - highest - 1
            self.missing_total += skipped
            if len(self.missing) + skipped <= MAX_TRACKED_MISSING:
                self.missing.update(range(highest + 1, seq))
            else:
                self.missing_overflow = True
            self.highest = seq
            return GAP
        if seq in self.missing:
            self.missing.discard(seq)
            self.reordered += 1
            return REORDERED
        self.duplicates += 1
        return DUPLICATE

    @property
    def still_missing(self) -> int:
        """Sequences skipped and never seen (late arrivals subtracted)."""
        return self.missing_total - self.reordered


class StreamRecord:
    """One call's record. `add_chunk` per chunk (cheap), `finish`/`fail`/`cancel`
    once; everything else is for readers. Holds at most `max_chunks` chunks
    (oldest dropped first; counters always cover all of them)."""

    def __init__(
        self,
        *,
        title: str,
        target: str = "",
        address: str = "",
        method: str = "",
        params: dict[str, Any] | None = None,
        streaming: bool = True,
        max_chunks: int = DEFAULT_MAX_CHUNKS,
        stall_after: float = DEFAULT_STALL_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_chunks < 1:
            raise ValueError("max_chunks must be at least 1")
        self.title = title
        self.number = 0  # the session's call number
        self.target = target
        self.address = address
        self.method = method
        self.params = dict(params or {})
        self.streaming = streaming
        self.max_chunks = max_chunks
        self.stall_after = stall_after
        self.clock = clock
        self.started = clock()  # when the call was asked for; mark_running moves it to the request write
        self.opened_after: float | None = None  # seconds from asking to the request frame written
        self.started_wall = time.time()
        self.request_at: float | None = None  # seconds after `started` when the request was written
        self.codec: str | None = None  # the frames' codec on the wire, once known
        self.replay_of: Any = None  # the recording's path, for a replayed call
        self.recording_path: Any = None  # where this call was last written as a recording
        self.outbox: Any = None  # a bidirectional call's input (console.core.outbox.Outbox)
        self.route: list[str] = []  # the relays a call through a leader passes (o://leader, o://leader/alpha)
        self.protocol: str | None = None  # the libp2p protocol dialed, when not the address's own (/o/leader)
        self.state = State.STARTING
        self.ended_at: float | None = None
        self.first_chunk_at: float | None = None
        self.last_activity = self.started
        self.count = 0  # chunks received, all of them
        self.bytes = 0
        self.final: Any = None
        self.final_sequence: Any = None
        self.final_chunks: Any = None  # `_chunks` the final frame declared
        self.error: ErrorInfo | None = None
        self.frames_after_final = 0
        self.missing_final = False  # the stream ended without a final frame
        self.sequence_path: str | None = None  # None: the `_sequence` the node sends
        self.check = SequenceCheck()
        self.tap_of: str | None = None  # a tap: the stream id it copies (its gaps are chunks the tap lost)
        self.tap_dropped = 0  # chunks the node said this tap lost (`_dropped`)
        self.resumed_at: list[int] = []  # a resumable call went on over a new stream at these sequences
        self.version = 0  # bumped on every change, so a screen can skip idle refreshes
        self.released = False  # its data let go (release)
        self.closed = False  # its tab was closed (ConsoleSession.forget_call)
        # The ring, one list per field (a column each): a tuple per chunk would be one more
        # GC-tracked object per chunk (it holds the data dict), and a full ring churning them
        # made the collector's full passes (100-200 ms each, several a second) the UI's worst stalls.
        size = min(max_chunks, 1024)
        self._capacity = size
        self._seqs: list[Any] = [None] * size
        self._ats: list[float] = [0.0] * size
        self._dts: list[float] = [0.0] * size
        self._sizes: list[int] = [0] * size
        self._datas: list[Any] = [None] * size
        self._flags: list[int] = [0] * size
        self._last_at = 0.0
        # throughput: per whole second since start, [chunks, bytes]
        self.per_second: list[list[int]] = []

    # -- writing (trio side) ---------------------------------------------------

    def mark_running(self, sent_at: float | None = None) -> None:
        """The request is on its way. `sent_at` (on `clock`'s scale) is when its frame
        was written: times in the record (each chunk's, time to first chunk) count from
        there, not from the dial, stream negotiation and screen work before it."""
        if self.state is State.STARTING:
            self.state = State.RUNNING
            if sent_at is not None and self.count == 0:
                self.opened_after = sent_at - self.started
                self.started = self.last_activity = sent_at
            self.version += 1

    def add_chunk(self, data: Any, sequence: Any, size: int, now: float | None = None) -> None:
        at = (self.clock() if now is None else now) - self.started
        self.last_activity = self.started + at
        if self.state is State.STARTING:
            self.state = State.RUNNING
        if self.first_chunk_at is None:
            self.first_chunk_at = at
        key = sequence if self.sequence_path is None else value_at_path(data, self.sequence_path)
        flags = self.check.check(key)
        if self.ended_at is not None:  # ended (cheaper than state.ended, once per chunk)
            flags |= AFTER_FINAL
            self.frames_after_final += 1
        index = self.count
        capacity = self._capacity
        if index >= capacity and capacity < self.max_chunks:
            capacity = self._grow()
        slot = index % capacity
        self._seqs[slot] = sequence
        self._ats[slot] = at
        self._dts[slot] = at - self._last_at
        self._sizes[slot] = size
        self._datas[slot] = data
        self._flags[slot] = flags
        self._last_at = at
        self.count = index + 1
        self.bytes += size
        second = int(at)
        buckets = self.per_second
        while len(buckets) <= second:
            buckets.append([0, 0])
        bucket = buckets[second]
        bucket[0] += 1
        bucket[1] += size
        self.version += 1

    def _grow(self) -> int:
        """Double the ring (up to max_chunks); only while it has not wrapped yet."""
        more = min(self._capacity, self.max_chunks - self._capacity)
        self._seqs.extend([None] * more)
        self._ats.extend([0.0] * more)
        self._dts.extend([0.0] * more)
        self._sizes.extend([0] * more)
        self._datas.extend([None] * more)
        self._flags.extend([0] * more)
        self._capacity += more
        return self._capacity

    def finish(self, data: Any, sequence: Any = None, chunks: Any = None) -> None:
        self.final, self.final_sequence, self.final_chunks = data, sequence, chunks
        self._end(State.COMPLETED)

    def fail(self, code: int, name: str, message: str, details: Any = None, *, missing_final: bool = False) -> None:
        self.error = ErrorInfo(code, name, message, details)
        self.missing_final = missing_final
        self._end(State.FAILED)

    def cancel(self) -> None:
        if not self.state.ended:
            self._end(State.CANCELLED)

    def _end(self, state: State) -> None:
        self.state = state
        self.ended_at = self.clock() - self.started
        self.last_activity = self.clock()
        self.version += 1

    def set_sequence_path(self, path: str | None) -> None:
        """Judge ordering by the value at `path` in each chunk's data (for peers
        that send no `_sequence`); None goes back to `_sequence`. Re-checks the
        chunks held; counters of dropped chunks are lost."""
        self.sequence_path = path or None
        self.check = SequenceCheck()
        self.tap_of: str | None = None  # a tap: the stream id it copies (its gaps are chunks the tap lost)
        self.tap_dropped = 0  # chunks the node said this tap lost (`_dropped`)
        self.resumed_at: list[int] = []  # a resumable call went on over a new stream at these sequences
        for i in range(self.first_held, self.count):
            slot = i % self._capacity
            key = self._key(slot)  # the wire `_sequence` stays as it came
            flags = (self._flags[slot] & AFTER_FINAL) | self.check.check(key)
            self._flags[slot] = flags
        self.version += 1

    def release(self) -> None:
        """Let go of the chunks' data and the final value (a closed tab's call: a 1M-row
        query held ~250 MB); the counters, timings and error stay for summaries. Chunks
        still arriving (a cancelled call's last ones) land in a ring of one."""
        self.released = True
        self.max_chunks = self._capacity = 1
        self._seqs, self._ats, self._dts = [None], [0.0], [0.0]
        self._sizes, self._datas, self._flags = [0], [None], [0]
        self.final = None
        self.version += 1

    # -- reading (screen side) ---------------------------------------------------

    @property
    def held(self) -> int:
        return 0 if self.released else min(self.count, self._capacity)

    @property
    def first_held(self) -> int:
        """0-based receive index of the oldest chunk still held."""
        return self.count - self.held

    @property
    def dropped(self) -> int:
        return self.first_held

    def _key(self, slot: int) -> Any:
        """The sequence ordering is judged by: `_sequence`, or the value at the chosen path."""
        if self.sequence_path is None:
            return self._seqs[slot]
        return value_at_path(self._datas[slot], self.sequence_path)

    def chunk(self, index: int) -> Chunk | None:
        """Chunk by 0-based receive index; None when dropped or not yet received."""
        if index < self.first_held or index >= self.count:
            return None
        slot = index % self._capacity
        return Chunk(index + 1, self._key(slot), self._ats[slot], self._dts[slot], self._sizes[slot],
                     self._datas[slot], self._flags[slot])

    def data_at(self, index: int) -> Any:
        """A chunk's data by 0-based receive index (no Chunk built: for views that read
        many); None when dropped or not yet received."""
        if index < self.first_held or index >= self.count:
            return None
        return self._datas[index % self._capacity]

    def time_at(self, index: int) -> float | None:
        """A chunk's arrival, seconds since the start, by 0-based receive index."""
        if index < self.first_held or index >= self.count:
            return None
        return self._ats[index % self._capacity]

    def wire_sequence(self, index: int) -> Any:
        """The `_sequence` chunk `index` (0-based) came with, whatever ordering is judged by."""
        if index < self.first_held or index >= self.count:
            return None
        return self._seqs[index % self._capacity]

    def chunks(self, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        stop = self.count if stop is None else min(stop, self.count)
        for i in range(max(start, self.first_held), stop):
            c = self.chunk(i)
            if c is not None:
                yield c

    def effective_state(self, now: float | None = None) -> State:
        if self.state in (State.RUNNING, State.STARTING) and self.stall_after > 0:
            now = self.clock() if now is None else now
            if now - self.last_activity > self.stall_after:
                return State.STALLED
        return self.state

    def elapsed(self, now: float | None = None) -> float:
        if self.ended_at is not None:
            return self.ended_at
        return (self.clock() if now is None else now) - self.started

    def rates(self, now: float | None = None) -> tuple[float, float]:
        """(chunks/s, bytes/s): over the last full second while running, over
        the whole call once it ended."""
        if self.state.ended or not self.per_second:
            span = max(self.elapsed(now) - (self.first_chunk_at or 0.0), 1e-9)
            return (self.count / span, self.bytes / span) if self.count else (0.0, 0.0)
        second = int(self.elapsed(now))
        last = self.per_second[second - 1] if 0 < second <= len(self.per_second) else [0, 0]
        if second == 0:  # first second: what has come so far
            span = max(self.elapsed(now), 1e-3)
            return self.count / span, self.bytes / span
        return float(last[0]), float(last[1])

    def rate_history(self, seconds: int = 60, now: float | None = None) -> list[float]:
        """Chunks per second over the last `seconds` whole seconds."""
        end = min(int(self.elapsed(now)), len(self.per_second))
        return [float(b[0]) for b in self.per_second[max(0, end - seconds):end]]

    def note_resumed(self, sequence: int) -> None:
        self.resumed_at.append(sequence)
        self.version += 1

    def lint(self) -> list[str]:
        """Protocol findings, worst first."""
        out: list[str] = []
        if self.tap_dropped:
            out.append(f"tap lost {self.tap_dropped:,} chunk(s) (read too slowly)")
        if self.missing_final:
            out.append("stream ended without a final frame")
        if self.frames_after_final:
            out.append(f"{self.frames_after_final} frame(s) after the final frame")
        c = self.check
        key = self.sequence_path or "_sequence"
        if c.no_key or c.bad_key:
            if not c.judged:
                out.append(f"ordering not judged: no chunk has a whole number at {key}")
            if c.no_key:
                out.append(f"{c.no_key} chunk(s) without {key}")
            if c.bad_key:
                out.append(f"{c.bad_key} chunk(s) where {key} is not a whole number")
        if c.still_missing:
            out.append(f"{c.still_missing} sequence(s) missing in {c.gaps} gap(s)")
        if c.reordered:
            out.append(f"{c.reordered} chunk(s) out of order")
        if c.duplicates:
            out.append(f"{c.duplicates} duplicate sequence(s)")
        if (self.state is State.COMPLETED and isinstance(self.final_chunks, int) and self.final_chunks != self.count
                and self.tap_of is None):  # a tap's final frame counts the whole stream's chunks
            out.append(f"final frame declares {self.final_chunks} chunks, {self.count} arrived")
        return out
