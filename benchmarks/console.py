"""`olane bench-console`: how the console holds up under a node streaming flat out.

An `olane node --tools demo` runs in its own process on 127.0.0.1; this process
runs the real OlaneConsole app (trio in guest mode on Textual's asyncio loop,
the 30 Hz refresh timer, the stream's tab visible) on a terminal driver that
renders every frame to ANSI text as in production and then discards it. The
bench starts `o://demo stream_items {count, delayMs: 0}` through
`app.start_call` and measures, while the stream runs:

- chunks/s into the console: chunks in the record / (last chunk - first chunk);
- what the screen showed: the newest chunk index the chunk log rendered, sampled
  at each frame written; its rate, how far it trailed the record, and the
  refresh ticks and frames per second actually achieved;
- UI event-loop stall: an asyncio task sleeping 5 ms in a loop records how late
  it wakes up (p50/p99/max);
- key latency: a thread sends a key (F12, unbound) through the driver every
  50 ms, as a terminal's input thread does; the time until the focused widget
  dispatches it (p50/p99/max);
- garbage collector: full and young passes and their time (full passes over a
  big heap are what stalled the UI before the client decoded frames one by one);
- RSS of this process (sampled every 50 ms by a thread): before, peak, after.

Then the same with two concurrent streams of half the count each (the second
tab visible). Before those, the views part (benchmarks/views.py): the table view
under `o://sqlite query` of 1M rows in 500-row batches and the chart view under a
flat-out stream (rows/s, stall, RSS; `--rows N`, `--no-views`, `--views-only`).
`--split` adds where the loop's time went (benchmarks/loop_split.py): trio guest
batches and their longest task steps, frames (layout, compositing, writing), refresh
ticks and GC passes, wall and CPU time, and which of them the stalls over 16 ms overlapped.
Targets (issues 4, 11 and 14: the single 1M-chunk stream >= 150,000 chunks/s, stall
p99 <= 16 ms and max <= 50 ms, <= 2 full GC passes) are printed with PASS/MISS; they never change the exit code, which is 0 when every stream completed with every chunk in
order, 1 otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import DemoAndSqliteNode, Report, Row, is_interrupt, narrate, percentile, percentile_ms, wait_until

DEMO_ADDRESS = "o://demo"
METHOD = "stream_items"
SIZE = (160, 50)

TARGET_CHUNKS_PER_S = 50_000
TARGET_STALL_P99_MS = 50.0
# issue 14, one 1M-chunk stream visible: faster, and no long pauses (GC, layout)
TARGET_SINGLE_CHUNKS_PER_S = 150_000
TARGET_SINGLE_STALL_P99_MS = 16.0
TARGET_SINGLE_STALL_MAX_MS = 50.0
TARGET_SINGLE_FULL_GC = 2
TARGET_RSS_GROWTH_MB = 300.0  # a 1M-chunk stream adds less than this

LAG_PERIOD = 0.005  # the stall probe's sleep
KEY_PERIOD = 0.05  # one probe key this often
PROBE_KEY = "f12"  # bound to nothing in the console
MB = 1_000_000


# --- the streaming node ------------------------------------------------------------------


# --- probes ----------------------------------------------------------------------------------


def _null_terminal_driver():
    """A driver that is not headless (so Textual renders each frame to terminal
    text, as on a real terminal) but throws the text away, counting frames."""
    from textual.drivers.headless_driver import HeadlessDriver

    class NullTerminalDriver(HeadlessDriver):
        on_frame = None  # set by the bench: called after each frame is written

        @property
        def is_headless(self) -> bool:
            return False

        def write(self, data: str) -> None:
            if len(data) > 32 and self.on_frame is not None:  # not the sync start/end markers
                self.on_frame(len(data))

        def flush(self) -> None:
            pass

    return NullTerminalDriver


class RssSampler(threading.Thread):
    """RSS of this process every `period` s, from a thread (so a busy loop does not hide a peak)."""

    def __init__(self, period: float = 0.05) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process()
        self.period = period
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def now(self) -> int:
        return self.process.memory_info().rss

    def run(self) -> None:
        while not self._halt.wait(self.period):
            self.samples.append((time.perf_counter(), self.now()))

    def stop(self) -> None:
        self._halt.set()
        self.join(2)

    def peak(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)


@dataclass
class Probes:
    """Everything sampled while the app runs; each list holds (perf_counter time, value)."""

    lag: list[tuple[float, float]] = field(default_factory=list)  # event-loop lateness, s
    keys: list[tuple[float, float]] = field(default_factory=list)  # key send -> dispatch at the focused widget, s
    ticks: list[tuple[float, float]] = field(default_factory=list)  # refresh timer ticks: duration, s
    frames: list[tuple[float, int, int, Any]] = field(default_factory=list)  # (t, newest shown, record.count, record)
    frame_bytes: int = 0
    gc: list[tuple[float, int, float]] = field(default_factory=list)  # (end, generation, duration s)
    watched: Any = None  # the StreamRecord whose log is visible
    shown: int = 0  # newest chunk (1-based receive index) the visible log rendered
    pending_keys: dict[int, tuple[Any, float]] = field(default_factory=dict)

    def between(self, series: list, start: float, end: float) -> list:
        return [s for s in series if start <= s[0] <= end]


def _gc_probe(probes: Probes):
    """A gc callback timing each collection (the full ones are what can stall the UI)."""
    started = [0.0]

    def callback(phase: str, info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            started[0] = now
        else:
            probes.gc.append((now, info["generation"], now - started[0]))

    return callback


async def _lag_probe(probes: Probes) -> None:
    while True:
        before = time.perf_counter()
        await asyncio.sleep(LAG_PERIOD)
        after = time.perf_counter()
        probes.lag.append((after, max(0.0, after - before - LAG_PERIOD)))


class KeySender(threading.Thread):
    """Sends the probe key through the driver every KEY_PERIOD, as a terminal's input thread would."""

    def __init__(self, driver, probes: Probes) -> None:
        super().__init__(daemon=True)
        self.driver = driver
        self.probes = probes
        self._halt = threading.Event()

    def run(self) -> None:
        from textual import events

        while not self._halt.wait(KEY_PERIOD):
            event = events.Key(PROBE_KEY, None)
            self.probes.pending_keys[id(event)] = (event, time.perf_counter())
            try:
                self.driver.send_message(event)
            except RuntimeError:  # the loop is gone
                return

    def stop(self) -> None:
        self._halt.set()
        self.join(2)


def _message_hook(app, probes: Probes):
    from textual import events
    from textual._context import active_message_pump

    def hook(message) -> None:
        if isinstance(message, events.Key) and message.key == PROBE_KEY:
            entry = probes.pending_keys.get(id(message))
            if entry is not None and entry[0] is message:
                try:
                    pump = active_message_pump.get()
                except LookupError:
                    pump = None
                if pump is not app:  # the first dispatch past the App: at the focused widget
                    del probes.pending_keys[id(message)]
                    now = time.perf_counter()
                    probes.keys.append((now, now - entry[1]))

    return hook


def _watch_log(view, probes: Probes) -> None:
    """Record the newest chunk the visible log renders (wraps its render_line)."""
    log = view.log
    record = view.record
    original = log.render_line

    def render_line(y: int):
        strip = original(y)
        index = record.first_held + int(log.scroll_y) + y + 1
        if probes.watched is record and probes.shown < index <= record.count:
            probes.shown = index
        return strip

    log.render_line = render_line
    probes.watched = record
    probes.shown = 0


# --- one run ----------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    counts: list[int]
    records: list[Any] = field(default_factory=list)
    start: float = 0.0  # perf_counter
    end: float = 0.0
    rss_before: int = 0
    rss_after: int = 0
    rss_peak: int = 0
    cpu_console: float = 0.0  # CPU seconds of this process during the phase
    cpu_node: float = 0.0
    shown_end: int = 0  # newest shown when the phase ended (after the last refresh)
    load: float = 0.0  # 1-minute load average when it started
    split: Any = None  # with --split: the LoopSplit timing the loop's parts


def _cpu(process) -> float:
    t = process.cpu_times()
    return t.user + t.system


async def _run_phase(app, target, method, phase: Phase, probes: Probes, rss: RssSampler, node_proc) -> None:
    import psutil

    me = psutil.Process()
    gc.collect()
    await asyncio.sleep(0.5)
    phase.rss_before = rss.now()
    phase.load = os.getloadavg()[0]
    probes.watched, probes.shown = None, 0
    cpu_me, cpu_node = _cpu(me), _cpu(node_proc)
    phase.start = time.perf_counter()
    for count in phase.counts:
        phase.records.append(app.start_call(target, DEMO_ADDRESS, method, {"count": count, "delayMs": 0}))
    record = phase.records[-1]  # its tab is the visible one, once added
    await wait_until(lambda: app.current_view is not None and app.current_view.record is record, 10, "its tab")
    view = app.current_view
    await wait_until(lambda: view.log is not None, 10, "the chunk log")
    _watch_log(view, probes)
    budget = 60 + sum(phase.counts) / 5_000  # generous: 1M chunks at 5k/s still fits
    await wait_until(lambda: all(r.state.ended for r in phase.records), budget, f"{phase.name} to end")
    phase.end = time.perf_counter()
    phase.cpu_console, phase.cpu_node = _cpu(me) - cpu_me, _cpu(node_proc) - cpu_node
    # the screen catches up at the next refresh: give it a few ticks
    try:
        await wait_until(lambda: probes.shown >= record.count, 2.0, "the last chunk on screen")
    except TimeoutError:
        pass  # reported: "last shown #n of m"
    phase.shown_end = probes.shown
    await asyncio.sleep(0.5)
    phase.rss_after = rss.now()
    phase.rss_peak = max(rss.peak(phase.start, time.perf_counter()), phase.rss_after, phase.rss_before)


async def _add_instrument(instrument) -> None:
    import trio

    trio.lowlevel.add_instrument(instrument)


async def _remove_instrument(instrument) -> None:
    import trio

    trio.lowlevel.remove_instrument(instrument)


async def _drive(args, multiaddr: str, node_pid: int, phases: list[Phase], probes: Probes,
                 rss: RssSampler, notes: dict[str, Any]) -> None:
    import psutil

    node_proc = psutil.Process(node_pid)
    with tempfile.TemporaryDirectory(prefix="olane-bench-console-") as folder:  # no saved targets
        await _drive_app(args, multiaddr, Path(folder) / "config.json", node_proc, phases, probes, rss, notes)


async def _drive_app(args, multiaddr: str, settings: Path, node_proc, phases: list[Phase], probes: Probes,
                     rss: RssSampler, notes: dict[str, Any]) -> None:
    from console.app import OlaneConsole
    from console.core.session import ConsoleSession

    session = ConsoleSession(embedded=False, max_chunks=args.max_chunks)
    app = OlaneConsole([multiaddr], session=session, settings_path=settings)
    app.driver_class = _null_terminal_driver()

    refresh = app._refresh_visible  # the 30 Hz timer's callback: time each tick

    def timed_refresh() -> None:
        started = time.perf_counter()
        try:
            refresh()
        finally:
            ended = time.perf_counter()
            probes.ticks.append((ended, ended - started))

    app._refresh_visible = timed_refresh  # picked up by on_mount's set_interval

    def on_frame(size: int) -> None:
        probes.frame_bytes += size
        record = probes.watched
        if record is not None:
            probes.frames.append((time.perf_counter(), probes.shown, record.count, record))

    async with app.run_test(headless=False, size=SIZE, message_hook=_message_hook(app, probes)) as pilot:
        app._driver.on_frame = on_frame
        await wait_until(lambda: app.session.targets and app.session.targets[0].state != "connecting", 30,
                    "the console to connect")
        target = app.session.targets[0]
        if target.state != "connected" or target.tool(DEMO_ADDRESS) is None:
            raise RuntimeError(f"the console could not reach the demo node: {target.state} {target.error}")
        method = target.tool(DEMO_ADDRESS).methods[METHOD]
        # warm up: first call, imports, widget classes; closed again so the tab count starts at one
        warm = app.start_call(target, DEMO_ADDRESS, method, {"count": 2_000, "delayMs": 0})
        await wait_until(lambda: warm.state.ended, 30, "the warm-up stream")
        await pilot.pause(0.2)
        await app.action_close_tab()
        await pilot.pause(0.2)
        notes["rss_start"] = rss.now()
        lag_task = asyncio.create_task(_lag_probe(probes))
        gc_callback = _gc_probe(probes)
        gc.callbacks.append(gc_callback)
        keys = KeySender(app._driver, probes)
        keys.start()
        try:
            for run in notes.get("view_runs", []):
                from benchmarks.views import run_view

                print(f"{run.name}: streaming", file=sys.__stderr__, flush=True)
                await run_view(app, target, run, rss)
                await app.action_close_tab()  # its rows go with it before the next part
                await pilot.pause(0.2)
            for phase in phases:
                # Textual holds sys.stderr while the app runs: narrate to the real one
                print(f"{phase.name}: streaming {' + '.join(f'{c:,}' for c in phase.counts)} chunks",
                      file=sys.__stderr__, flush=True)
                if args.split:
                    from benchmarks.loop_split import LoopSplit

                    split = phase.split = LoopSplit()
                    await app.bridge.call(_add_instrument, split.trio_instrument())
                    split.install(app)
                if args.profile:
                    import cProfile

                    profiler = cProfile.Profile()
                    profiler.enable()
                    try:
                        await _run_phase(app, target, method, phase, probes, rss, node_proc)
                    finally:
                        profiler.disable()
                        path = f"{args.profile}.{phase.name.split()[0]}"
                        profiler.dump_stats(path)
                        notes.setdefault("profiles", []).append(path)
                else:
                    await _run_phase(app, target, method, phase, probes, rss, node_proc)
                if phase.split is not None:
                    phase.split.uninstall()
                    await app.bridge.call(_remove_instrument, phase.split.instrument)
        finally:
            gc.callbacks.remove(gc_callback)
            keys.stop()
            lag_task.cancel()
            try:
                await lag_task
            except asyncio.CancelledError:
                pass


# --- reporting -----------------------------------------------------------------------------------


def _report_phase(phase: Phase, probes: Probes, report: Report, failures: list[str], baseline_rss: int,
                  args) -> None:
    from console.core.stream_store import State

    key = phase.name.split()[0]
    seconds = phase.end - phase.start
    total = 0
    first, last = None, 0.0
    for record, count in zip(phase.records, phase.counts):
        total += record.count
        findings = record.lint()
        if record.state is not State.COMPLETED or record.count != count or findings:
            why = record.error or "; ".join(findings) or record.state.value
            failures.append(f"{phase.name} {record.title}: {record.count:,} of {count:,} chunks, {why}")
        if record.count:
            started = record.started
            f = started + (record.first_chunk_at or 0.0)
            newest = record.chunk(record.count - 1)
            l = started + (newest.at if newest is not None else record.elapsed())
            first = f if first is None else min(first, f)
            last = max(last, l)
    span = max(1e-9, last - (first or last))
    per_s = total / span
    single = len(phase.counts) == 1
    rate_target = TARGET_SINGLE_CHUNKS_PER_S if single else TARGET_CHUNKS_PER_S
    report.add(Row("throughput", f"{key}_chunks_per_s",
                   {"streams": len(phase.counts), "chunks": total, "expected": sum(phase.counts),
                    "chunks_per_s": round(per_s), "first_to_last_s": round(span, 3),
                    "call_seconds": round(seconds, 3),
                    "console_cpu_pct": round(100 * phase.cpu_console / seconds, 1),
                    "node_cpu_pct": round(100 * phase.cpu_node / seconds, 1)},
                   f"chunks into the console {total:>10,} in {span:6.2f} s   {per_s:>9,.0f} chunks/s  "
                   f"(CPU: console {100 * phase.cpu_console / seconds:3.0f}%, node "
                   f"{100 * phase.cpu_node / seconds:3.0f}%)",
                   f">= {rate_target:,} chunks/s", per_s >= rate_target))

    # what the screen showed (the visible tab)
    watched = phase.records[-1]
    frames = [f for f in probes.between(probes.frames, phase.start, phase.end) if f[3] is watched]
    ticks = probes.between(probes.ticks, phase.start, phase.end)
    tick_rate = len(ticks) / seconds
    frame_rate = len(frames) / seconds
    moving = [f for f in frames if f[1] > 0]
    shown_rate = ((moving[-1][1] - moving[0][1]) / (moving[-1][0] - moving[0][0])
                  if len(moving) > 1 and moving[-1][0] > moving[0][0] else 0.0)
    behind = [max(0, f[2] - f[1]) for f in moving]
    behind_p50 = percentile(behind, 50) if behind else float("nan")
    behind_p99 = percentile(behind, 99) if behind else float("nan")
    tick_ms = [d for _, d in ticks]
    tick_p50, tick_p99 = percentile_ms(tick_ms, 50), percentile_ms(tick_ms, 99)
    shown_last = ("last chunk shown" if phase.shown_end >= watched.count
                  else f"last shown #{phase.shown_end:,} of {watched.count:,}")
    report.add(Row("screen", f"{key}_screen",
                   {"shown_chunks_per_s": round(shown_rate), "refresh_ticks_per_s": round(tick_rate, 1),
                    "frames_per_s": round(frame_rate, 1), "frames": len(frames),
                    "behind_p50_chunks": behind_p50, "behind_p99_chunks": behind_p99,
                    "tick_ms_p50": round(tick_p50, 2), "tick_ms_p99": round(tick_p99, 2),
                    "newest_shown": phase.shown_end, "watched_count": watched.count},
                   f"screen (visible stream): newest shown {shown_rate:>7,.0f}/s; {tick_rate:4.1f} refresh ticks/s, "
                   f"{frame_rate:4.1f} frames/s; {shown_last}"))
    report.add(Row("screen", f"{key}_screen_behind", {},
                   f"screen trails the record by p50 {behind_p50:,.0f} / p99 {behind_p99:,.0f} chunks at a frame;"
                   f" a refresh tick takes p50 {tick_p50:.1f} / p99 {tick_p99:.1f} ms"))

    lag = [v for _, v in probes.between(probes.lag, phase.start, phase.end)]
    p50, p99, worst = percentile_ms(lag, 50), percentile_ms(lag, 99), (max(lag) * 1000 if lag else float("nan"))
    report.add(Row("stall", f"{key}_stall",
                   {"samples": len(lag), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "max_ms": round(worst, 2)},
                   f"UI event-loop stall (5 ms sleeper, {len(lag):,} samples)   p50 {p50:6.2f}  p99 {p99:6.2f}  "
                   f"max {worst:7.2f} ms",
                   *((f"p99 <= {TARGET_SINGLE_STALL_P99_MS:g}, max <= {TARGET_SINGLE_STALL_MAX_MS:g} ms",
                      p99 <= TARGET_SINGLE_STALL_P99_MS and worst <= TARGET_SINGLE_STALL_MAX_MS) if single else
                     (f"p99 < {TARGET_STALL_P99_MS:g} ms", p99 < TARGET_STALL_P99_MS))))

    collections = probes.between(probes.gc, phase.start, phase.end)
    full = [d for _, gen, d in collections if gen == 2]
    young = [d for _, gen, d in collections if gen < 2]
    report.add(Row("stall", f"{key}_gc",
                   {"full_collections": len(full), "full_total_ms": round(sum(full) * 1000, 1),
                    "full_max_ms": round(max(full, default=0) * 1000, 1), "young_collections": len(young),
                    "young_total_ms": round(sum(young) * 1000, 1)},
                   f"garbage collector: {len(full)} full passes ({sum(full) * 1000:,.0f} ms, max "
                   f"{max(full, default=0) * 1000:.0f} ms), {len(young):,} young ({sum(young) * 1000:,.0f} ms)",
                   *((f"<= {TARGET_SINGLE_FULL_GC} full", len(full) <= TARGET_SINGLE_FULL_GC) if single else ())))

    keys = [v for _, v in probes.between(probes.keys, phase.start, phase.end)]
    k50, k99, kmax = percentile_ms(keys, 50), percentile_ms(keys, 99), (max(keys) * 1000 if keys else float("nan"))
    report.add(Row("keys", f"{key}_key_latency",
                   {"keys": len(keys), "p50_ms": round(k50, 2), "p99_ms": round(k99, 2), "max_ms": round(kmax, 2)},
                   f"key latency (driver -> focused widget, {len(keys):,} keys)     p50 {k50:6.2f}  p99 {k99:6.2f}  "
                   f"max {kmax:7.2f} ms"))

    growth = (phase.rss_peak - phase.rss_before) / MB
    report.add(Row("rss", f"{key}_rss",
                   {"rss_before_mb": round(phase.rss_before / MB, 1), "rss_peak_mb": round(phase.rss_peak / MB, 1),
                    "rss_after_mb": round(phase.rss_after / MB, 1), "growth_mb": round(growth, 1),
                    "since_start_mb": round((phase.rss_after - baseline_rss) / MB, 1),
                    "max_chunks_held": args.max_chunks},
                   f"console RSS MB {phase.rss_before / MB:6.1f} before {phase.rss_peak / MB:6.1f} peak "
                   f"{phase.rss_after / MB:6.1f} after   growth {growth:6.1f} MB",
                   f"growth < {TARGET_RSS_GROWTH_MB:g} MB", growth < TARGET_RSS_GROWTH_MB))


# --- the command -----------------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="olane bench-console",
        description="Benchmark the console: a demo node (own process, 127.0.0.1) streams flat out into the real "
                    "console app (headless terminal, 30 Hz refresh, the stream's tab visible); prints chunks/s, "
                    "what the screen showed, UI event-loop stall, key latency and RSS, with targets.",
    )
    parser.add_argument("--quick", action="store_true", help="100,000 chunks instead of 1,000,000 (a smoke test)")
    parser.add_argument("--chunks", type=int, default=None, metavar="N",
                        help="chunks in the single stream (default 1,000,000; 100,000 with --quick)")
    parser.add_argument("--no-concurrent", action="store_true",
                        help="skip the second part: two concurrent streams of N/2 each")
    parser.add_argument("--max-chunks", type=int, default=None, metavar="N",
                        help="chunks each stream record holds (the console's default: 100,000)")
    parser.add_argument("--profile", metavar="PATH",
                        help="cProfile each part into PATH.<part> (slows everything down; for finding hot spots)")
    parser.add_argument("--split", action="store_true",
                        help="time the loop's parts (trio batches, frames, refresh ticks, GC) and say which of "
                             "them the stalls over 16 ms overlapped (adds a little overhead)")
    parser.add_argument("--json", action="store_true", help="also print a machine-readable summary (last line)")
    parser.add_argument("--rows", type=int, default=None, metavar="N",
                        help="rows of the table-view run (default 1,000,000; 100,000 with --quick)")
    parser.add_argument("--no-views", action="store_true", help="skip the table-view and chart-view runs")
    parser.add_argument("--views-only", action="store_true", help="only the table-view and chart-view runs")
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = 100_000 if args.quick else 1_000_000
    if args.chunks is None:
        args.chunks = 100_000 if args.quick else 1_000_000
    if args.chunks < 2:
        parser.error("--chunks must be at least 2")
    if args.max_chunks is None:
        from console.core.stream_store import DEFAULT_MAX_CHUNKS

        args.max_chunks = DEFAULT_MAX_CHUNKS
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    try:
        import textual  # noqa: F401
    except ImportError as exc:  # pragma: no cover
        print(f"the console is not available: {exc}", file=sys.stderr)
        return 1
    from importlib.metadata import version

    print(f"olane bench-console{' --quick' if args.quick else ''}: textual {version('textual')}, "
          f"py-libp2p {version('libp2p')}, Python {platform.python_version()}, {os.cpu_count()} CPUs; "
          f"demo node in its own process on 127.0.0.1; console {SIZE[0]}x{SIZE[1]}, frames rendered to ANSI "
          f"and discarded; records hold {args.max_chunks:,} chunks; load average {os.getloadavg()[0]:.2f}; "
          f"MB = 10^6 bytes", flush=True)
    phases = [] if args.views_only else [Phase(f"single stream of {args.chunks:,}", [args.chunks])]
    if not args.no_concurrent and not args.views_only:
        half = args.chunks // 2
        phases.append(Phase(f"two concurrent streams of {half:,}", [half, half]))
    probes = Probes()
    rss = RssSampler()
    notes: dict[str, Any] = {}
    if not args.no_views:
        from benchmarks.views import view_runs

        notes["view_runs"] = view_runs(args.rows, args.chunks // 5)
    report = Report()
    failures: list[str] = []
    started = time.monotonic()
    rss.start()
    try:
        with DemoAndSqliteNode() as node:
            narrate(f"demo node pid {node.pid} at {node.multiaddr}")
            asyncio.run(_drive(args, node.multiaddr, node.pid, phases, probes, rss, notes))
    except BaseException as exc:
        if is_interrupt(exc):
            print("\ninterrupted", flush=True)
            return 130
        if not isinstance(exc, Exception):
            raise
        failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        rss.stop()

    if notes.get("view_runs"):
        from benchmarks.views import report_view

        for run in notes["view_runs"]:
            print(f"\n{run.name}: {run.address} {run.method}, the tab visible in the {run.view} view; load average "
                  f"{run.notes.get('load', float('nan')):.2f} when it started", flush=True)
            report_view(run, probes, report, failures, Row, percentile)
    baseline = notes.get("rss_start", phases[0].rss_before if phases else 0)
    for phase in phases:
        if not phase.end:
            failures.append(f"{phase.name}: did not run to the end")
            continue
        print(f"\n{phase.name} x o://demo stream_items (delayMs 0), the "
              f"{'second ' if len(phase.counts) > 1 else ''}stream's tab visible; load average "
              f"{phase.load:.2f} when it started", flush=True)
        _report_phase(phase, probes, report, failures, baseline, args)
        if phase.split is not None:
            phase.split.add_ticks_and_gc(probes.between(probes.ticks, phase.start, phase.end),
                                         probes.between(probes.gc, phase.start, phase.end))
            print("  where the loop's time went (--split):", flush=True)
            for line in phase.split.report(probes.lag, phase.start, phase.end, LAG_PERIOD):
                print(f"    {line}", flush=True)
    for path in notes.get("profiles", []):
        print(f"\nprofile written to {path} (python -m pstats {path})", flush=True)

    targets = [r for r in report.rows if r.passed is not None]
    passes = sum(1 for r in targets if r.passed)
    elapsed = time.monotonic() - started
    print(f"\nsummary: {passes} PASS, {len(targets) - passes} MISS of {len(targets)} targets; "
          f"{len(failures)} failures; {elapsed:.0f} s; load average {os.getloadavg()[0]:.2f} "
          f"(other busy processes lower the figures)", flush=True)
    for failure in failures:
        print(f"  failure: {failure}", flush=True)
    if args.json:
        print(json.dumps({
            "quick": args.quick, "chunks": args.chunks, "max_chunks": args.max_chunks, "seconds": round(elapsed, 1),
            "python": platform.python_version(), "cpus": os.cpu_count(),
            "rows": [{"section": r.section, "name": r.name, **r.figures, "target": r.target or None,
                      "verdict": r.verdict or None} for r in report.rows],
            "failures": failures,
        }), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
