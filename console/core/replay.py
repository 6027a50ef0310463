"""Replaying a recording into a StreamRecord, so that every view of a live stream
(the chunk log, findings, rates, the end) shows a recorded one the same way.

A `Replayer` keeps a virtual clock: while playing it runs at `speed` times real
time, paused it stands still, and `seek` moves it. `tick()` (the console calls it
at its refresh rate) feeds the record every chunk whose recorded time has come,
then the end. The record's own clock is the virtual one, so its elapsed time,
rates and stall detection read as they did during the call. Seeking backwards
starts a new record (`generation` changes): the screen then shows the new one.
Plain Python, no Textual.
"""
from __future__ import annotations

import time
from typing import Callable

from node_runtime.errors import code_name

from .recording import Recording
from .stream_store import DEFAULT_MAX_CHUNKS, StreamRecord

SPEEDS = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0]


class Replayer:
    def __init__(self, recording: Recording, *, title: str | None = None, speed: float = 1.0,
                 max_chunks: int = DEFAULT_MAX_CHUNKS, clock: Callable[[], float] = time.monotonic,
                 playing: bool = True) -> None:
        self.recording = recording
        self.title = title or f"▷ {recording.title}"
        self.speed = speed
        self.max_chunks = max_chunks
        self.real_clock = clock
        self.playing = playing
        self.generation = 0
        self._virtual = 0.0  # ms of the recording shown so far
        self._real_at = clock()
        frames = recording.frames
        end = recording.end
        self.duration = max(end.elapsed if end is not None else 0.0, frames[-1].t if frames else 0.0)
        self._new_record()

    # -- the virtual clock -----------------------------------------------------------

    def _now_ms(self) -> float:
        if self.playing:
            real = self.real_clock()
            self._virtual = min(self.duration, self._virtual + (real - self._real_at) * 1000 * self.speed)
            self._real_at = real
        return self._virtual

    @property
    def position(self) -> float:
        """ms of the recording played so far."""
        return self._virtual

    def _record_clock(self) -> float:
        return self._base + self._virtual / 1000

    def _new_record(self) -> None:
        h = self.recording.header
        self._base = 0.0
        self._virtual = 0.0  # the record starts at the recording's start
        record = StreamRecord(title=self.title, target=h.target, address=h.address, method=h.method,
                              params=h.params, streaming=h.streaming, max_chunks=self.max_chunks,
                              clock=self._record_clock)
        record.codec = h.codec
        record.replay_of = self.recording.path
        record.mark_running()
        self.record = record
        self._next = 0  # index into recording.frames of the next chunk to feed
        self._ended = False
        self.generation += 1

    # -- control ----------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._ended

    def pause(self) -> None:
        self._now_ms()
        self.playing = False

    def play(self) -> None:
        if self._ended:
            self.seek(0)
        self._real_at = self.real_clock()
        self.playing = True

    def toggle(self) -> None:
        self.pause() if self.playing else self.play()

    def set_speed(self, speed: float) -> None:
        self._now_ms()
        self.speed = max(0.01, speed)

    def faster(self) -> None:
        self.set_speed(next((s for s in SPEEDS if s > self.speed), self.speed * 2))

    def slower(self) -> None:
        self.set_speed(next((s for s in reversed(SPEEDS) if s < self.speed), self.speed / 2))

    def seek(self, ms: float) -> None:
        """Go to `ms` into the recording (clamped). Backwards starts a new record."""
        self._now_ms()
        ms = max(0.0, min(self.duration, ms))
        if ms < self._virtual or (ms == 0 and self._next):
            self._new_record()
        self._virtual = ms
        self._real_at = self.real_clock()
        self._feed()

    def seek_by(self, ms: float) -> None:
        self.seek(self._now_ms() + ms)

    def to_end(self) -> None:
        self.seek(self.duration)

    # -- feeding the record -------------------------------------------------------------

    def tick(self) -> int:
        """Feed what is due; returns the chunks added."""
        if self._ended:
            return 0
        self._now_ms()
        return self._feed()

    def _feed(self) -> int:
        frames = self.recording.frames
        record = self.record
        now = self._virtual
        added = 0
        i = self._next
        while i < len(frames) and frames[i].t <= now:
            f = frames[i]
            record.add_chunk(f.data, f.seq, f.size, now=self._base + f.t / 1000)
            i += 1
            added += 1
        self._next = i
        end = self.recording.end
        if i >= len(frames) and not self._ended and (end is None or now >= end.elapsed):
            self._ended = True
            self.playing = False
            self._finish(end)
        return added

    def _finish(self, end) -> None:
        record = self.record
        if end is None:
            record.fail(4020, code_name(4020), "the recording stops before its end line", missing_final=True)
        elif end.state == "completed":
            record.finish(end.final, end.final_seq, end.final_chunks)
        elif end.state == "failed":
            e = end.error or {}
            record.fail(int(e.get("code") or 4001), str(e.get("name") or code_name(int(e.get("code") or 4001))),
                        str(e.get("message") or ""), e.get("details"))
        else:
            record.cancel()
        if end is not None:
            record.frames_after_final = end.frames_after_final

    def status(self) -> str:
        state = "ended" if self._ended else "playing" if self.playing else "paused"
        text = (f"{state} {self.speed:g}× {self._virtual / 1000:,.2f}/{self.duration / 1000:,.2f} s "
                f"chunk {self._next:,}/{len(self.recording.frames):,}")
        dropped = self.recording.dropped
        if dropped:
            text += f"  ({dropped:,} received but not recorded)"
        return text
