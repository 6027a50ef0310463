"""`olane bench-console --split`: where the UI event loop's long stalls come from.

Times, while the app runs, every asyncio callback and inside them the parts that can
hold the loop: a trio guest batch (`GuestState.guest_tick`, with its longest trio task
step), a Textual frame (`Screen._on_timer_update`: layout, compositing, writing), the
console's refresh tick and the garbage collector's passes (from the bench's probes).
For each long wake of the stall probe it sums how much of the stall each part
overlapped, so the report says which part the long stalls are made of.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any

RECORD_OVER = 0.001  # intervals shorter than this are only counted, not kept
KINDS = ("trio batch", "frame", "layout", "render", "write", "refresh tick", "gc", "callback")


@dataclass
class LoopSplit:
    durations: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})  # thread CPU time
    intervals: list[tuple[float, float, str, str]] = field(default_factory=list)  # (start, end, kind, label)
    trio_steps: list[tuple[float, float, str]] = field(default_factory=list)  # long trio task steps
    instrument: Any = None  # the trio instrument, once made
    _undo: list = field(default_factory=list)

    def _note(self, kind: str, start: float, end: float, label: str = "") -> None:
        self.durations[kind].append(end - start)
        self.cpu[kind].append(end - start)
        if end - start >= RECORD_OVER:
            self.intervals.append((start, end, kind, label))

    def _wrap(self, owner: Any, name: str, kind: str, label=None) -> None:
        original = getattr(owner, name)
        clock = time.perf_counter

        durations = self.durations[kind]
        cpu_times = self.cpu[kind]
        intervals = self.intervals
        cpu = time.thread_time  # what this thread computed, without the time other processes took

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start, start_cpu = clock(), cpu()
            try:
                return original(*args, **kwargs)
            finally:
                end = clock()
                durations.append(end - start)
                cpu_times.append(cpu() - start_cpu)
                if end - start >= RECORD_OVER:  # named only when long (naming costs)
                    intervals.append((start, end, kind, label(args) if label is not None else ""))

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def install(self, app) -> None:
        import asyncio.events

        from textual.app import App
        from textual._compositor import Compositor
        from textual.screen import Screen
        from trio._core._run import GuestState

        self._wrap(asyncio.events.Handle, "_run", "callback", lambda args: _callback_label(args[0]))
        self._wrap(GuestState, "guest_tick", "trio batch")
        self._wrap(Screen, "_on_timer_update", "frame")
        self._wrap(Screen, "_refresh_layout", "layout")
        self._wrap(Compositor, "render_update", "render")
        self._wrap(App, "_display", "write")

    def trio_instrument(self):
        """An instrument for the guest run: trio task steps of a millisecond or more."""
        import trio

        split = self
        clock = time.perf_counter

        class Steps(trio.abc.Instrument):
            started = started_cpu = 0.0

            def before_task_step(self, task) -> None:
                self.started = clock()
                self.started_cpu = time.thread_time()

            def after_task_step(self, task) -> None:
                end = clock()
                if end - self.started >= RECORD_OVER:
                    split.trio_steps.append((self.started, end, task.name, time.thread_time() - self.started_cpu))

        self.instrument = Steps()
        return self.instrument

    def uninstall(self) -> None:
        while self._undo:
            owner, name, original = self._undo.pop()
            setattr(owner, name, original)

    def add_ticks_and_gc(self, ticks: list[tuple[float, float]], collections: list[tuple[float, int, float]]) -> None:
        for end, duration in ticks:
            self._note("refresh tick", end - duration, end)
        for end, generation, duration in collections:
            self._note("gc", end - duration, end, f"gen {generation}")

    def report(self, lag: list[tuple[float, float]], start: float, end: float, period: float,
               over: float = 0.016) -> list[str]:
        """Text lines: the parts' durations, then what the stalls over `over` s overlapped."""
        from .common import percentile

        lines = []
        kept = [iv for iv in self.intervals if start <= iv[1] <= end]
        for kind in KINDS:
            values = self.durations[kind]
            if not values or kind == "callback":
                continue
            cpu = self.cpu[kind]
            lines.append(f"{kind:>13}: {len(values):7,} times, p50 {percentile(values, 50) * 1000:6.2f}  "
                         f"p99 {percentile(values, 99) * 1000:6.2f}  max {max(values) * 1000:6.1f} ms, "
                         f"{sum(values) * 1000:7,.0f} ms in all; CPU p99 {percentile(cpu, 99) * 1000:6.2f} "
                         f"max {max(cpu) * 1000:6.1f} ms")
        for name in sorted({step[2] for step in self.trio_steps}):
            steps = [step for step in self.trio_steps if step[2] == name and start <= step[1] <= end]
            if steps:
                walls, cpus = [b - a for a, b, _, _ in steps], [c for _, _, _, c in steps]
                lines.append(f"    trio steps over 1 ms of {name.rsplit('.', 1)[-1]}: {len(steps):,}, wall p99 "
                             f"{percentile(walls, 99) * 1000:.1f} max {max(walls) * 1000:.1f} ms, CPU p99 "
                             f"{percentile(cpus, 99) * 1000:.1f} max {max(cpus) * 1000:.1f} ms")
        stalls = [(t - lateness, t) for t, lateness in lag if start <= t <= end and lateness > over]
        # the stall: from when the sleeper should have woken to when it did
        if not stalls:
            lines.append(f"no stall over {over * 1000:g} ms")
            return lines
        shares: dict[str, float] = {}
        dominant: dict[str, int] = {}
        stall_total = 0.0
        for s0, s1 in stalls:
            stall_total += s1 - s0
            inside: dict[str, float] = {}
            for a, b, kind, label in kept:
                if b > s0 and a < s1:
                    key = kind if kind != "callback" else f"callback {label}"
                    inside[key] = inside.get(key, 0.0) + min(b, s1) - max(a, s0)
            for a, b, name, _ in self.trio_steps:
                if b > s0 and a < s1:
                    key = f"trio step {name}"
                    inside[key] = inside.get(key, 0.0) + min(b, s1) - max(a, s0)
            for key, value in inside.items():
                shares[key] = shares.get(key, 0.0) + value
            parts = {k: v for k, v in inside.items() if not k.startswith(("callback", "trio step"))
                     and k not in ("layout", "render", "write")}
            top = max(parts, key=parts.get) if parts else "unattributed"
            dominant[top] = dominant.get(top, 0) + 1
        lines.append(f"{len(stalls)} stalls over {over * 1000:g} ms ({stall_total * 1000:,.0f} ms); "
                     f"mostly: " + ", ".join(f"{k} {n}" for k, n in sorted(dominant.items(), key=lambda x: -x[1])))
        for key, value in sorted(shares.items(), key=lambda x: -x[1])[:14]:
            lines.append(f"    {100 * value / stall_total:5.1f}% of the stall time overlapped {key}")
        return lines


def _callback_label(handle) -> str:
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if owner is not None and hasattr(owner, "get_coro"):  # a task step
        coro = owner.get_coro()
        name = getattr(coro, "__qualname__", type(coro).__name__)
        frame = getattr(coro, "cr_frame", None)
        self = frame.f_locals.get("self") if frame is not None else None
        return f"task {name}" + (f" of {type(self).__name__}" if self is not None else "")
    return getattr(callback, "__qualname__", repr(callback))[:60]
