"""`olane bench --soak`: a node among strangers (issue 8, item 8).

Each phase runs against a fresh `olane node --tools demo` in its own process (a crash is the process
ending; the phase then restarts it and counts the crash):

- fuzz:        100,000 hostile frames from benchmarks/fuzz_frames.py in batches of 100, a fresh client
               pinging every 10 batches; a crash is replayed to name the frame that ended the node;
- connections: 10,000 clients in sequence, each a new `Client` that pings once and closes;
- hog:         one peer pipelining 4,096 slow requests on 16 streams, while well-behaved callers
               (their own connections) ping every 50 ms;
- partial:     40 streams each holding 15 MiB of an unfinished frame, while the callers ping.

Printed: crashes, refusals, the callers' ping p50/p99, the node's open fds and RSS before/after (and
the peak under the partial-frame holders). Targets: 0 crashes, 0 refusals of the 10,000
connections, ping p99 < 50 ms, RSS within +100 MiB under the partial frames. A crash is a failure
(exit code 1); the rest are PASS/MISS.
"""
from __future__ import annotations

import collections
import os
import time
from dataclasses import dataclass
from typing import Any

from .common import DemoNode, Report, Row, narrate, percentile
from .fuzz_frames import (MIB, RandomChooser, Target, envelope, exception_line, find_killer, frame, fuzzed_batch,
                          ping_fresh, send_batch, wait_dead)

TARGET_PING_P99_MS = 50.0
TARGET_RSS_GROWTH_MIB = 100.0
DEMO = "o://demo"


@dataclass
class SoakPlan:
    frames: int = 100_000
    batch: int = 100
    fresh_ping_every: int = 10  # batches
    connections: int = 10_000
    hog_requests: int = 4_096
    hog_streams: int = 16
    hog_seconds: float = 10.0
    holders: int = 40
    hold_bytes: int = 15 * MIB
    hold_seconds: float = 5.0
    callers: int = 4
    ping_every: float = 0.05
    max_crashes: int = 20  # the fuzz phase stops after this many (each costs a restart)
    triage: int = 8  # crashes replayed frame by frame to name the culprit
    give_up_after_refusals: int = 50  # consecutive refused connections before the phase stops
    seed: int = 8

    @classmethod
    def quick(cls) -> "SoakPlan":
        # past the 250-connection mark py-libp2p 0.8.1 leaks, and past the node's buffered-bytes bound
        return cls(frames=5_000, connections=300, hog_requests=1_024, hog_streams=4, hog_seconds=4.0, holders=10,
                   hold_seconds=2.0, callers=2, max_crashes=5, triage=3, give_up_after_refusals=20)


class SoakNode(Target):
    """A DemoNode that can be restarted after a crash."""

    def __init__(self) -> None:
        self.node: DemoNode | None = None
        self.multiaddr = ""
        self.starts = 0

    def restart(self) -> None:
        self.stop()
        self.node = DemoNode().__enter__()
        self.multiaddr = self.node.multiaddr
        self.starts += 1

    def alive(self) -> bool:
        return self.node is not None and self.node.proc is not None and self.node.proc.poll() is None

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None

    @property
    def pid(self) -> int:
        assert self.node is not None
        return self.node.pid

    def exit_reason(self) -> str:
        if self.node is None or self.alive():
            return ""
        try:
            self.node.proc.wait(1)
        except Exception:
            pass
        return f"exit {self.node.proc.returncode}: {exception_line(self.node._error_text().splitlines())}"

    def usage(self) -> tuple[int | None, float | None]:
        """(open fds, RSS MiB) of the node process, None when it is gone."""
        import psutil

        try:
            p = psutil.Process(self.pid)
            return p.num_fds(), p.memory_info().rss / MIB
        except Exception:
            return None, None


def _fmt_usage(before: tuple, after: tuple) -> str:
    def one(u):
        fds, rss = u
        return f"{'?' if fds is None else fds} fds, {'?' if rss is None else f'{rss:.1f}'} MiB"
    return f"node {one(before)} before, {one(after)} after"


# --- the well-behaved callers -----------------------------------------------------------------------------


class Callers:
    """`n` clients, each on its own connection, pinging every `every` s until stopped."""

    def __init__(self, multiaddr: str, n: int, every: float) -> None:
        self.multiaddr = multiaddr
        self.n = n
        self.every = every
        self.latencies: list[float] = []
        self.failures: collections.Counter[str] = collections.Counter()

    async def run(self, task_status=None) -> None:
        import trio

        async with trio.open_nursery() as nursery:
            for _ in range(self.n):
                nursery.start_soon(self._one)
            if task_status is not None:
                task_status.started()

    async def _one(self) -> None:
        import trio

        from node_runtime import Client, OlaneError

        async with Client() as c:
            with trio.move_on_after(10):
                await c.connect(self.multiaddr)
            next_at = trio.current_time()
            while True:
                started = time.perf_counter()
                try:
                    with trio.fail_after(5):
                        await c.use(DEMO, "ping", via=self.multiaddr, timeout=5)
                    self.latencies.append(time.perf_counter() - started)
                except OlaneError as exc:
                    self.failures[f"{exc.code} {exc.message[:60]}"] += 1
                except (Exception, trio.TooSlowError) as exc:
                    self.failures[f"{type(exc).__name__}"] += 1
                next_at += self.every
                await trio.sleep_until(max(next_at, trio.current_time()))

    def row(self, report: Report, section: str, label: str) -> None:
        lat = self.latencies
        p50 = percentile(lat, 50) * 1000 if lat else float("nan")
        p99 = percentile(lat, 99) * 1000 if lat else float("nan")
        calls = len(lat) + sum(self.failures.values())
        failed = sum(self.failures.values())
        why = "; ".join(f"{k} x{v}" for k, v in self.failures.most_common(3))
        report.add(Row(section, f"{label}_callers",
                       {"callers": self.n, "pings": calls, "failed": failed, "p50_ms": round(p50, 2),
                        "p99_ms": round(p99, 2), "failures": dict(self.failures)},
                       f"{label}: others' ping  {calls:>6,} pings, {failed:,} failed   p50 {p50:6.2f} ms  p99 "
                       f"{p99:7.2f} ms" + (f"  ({why})" if why else ""),
                       f"p99 < {TARGET_PING_P99_MS:g} ms, 0 failed",
                       bool(lat) and failed == 0 and p99 < TARGET_PING_P99_MS))


# --- phases ---------------------------------------------------------------------------------------------------


async def phase_fuzz(target: SoakNode, plan: SoakPlan, report: Report) -> None:
    import trio

    from node_runtime import Client

    ch = RandomChooser(plan.seed)
    before = target.usage()
    sent = 0
    batches = 0
    crashes = 0
    fresh_failed = 0
    pipelined_unanswered = 0
    undecodable = 0
    killers: list[str] = []
    reasons: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    client = None
    peer = None
    async with trio.open_nursery() as nursery:
        async def connect():
            nonlocal client, peer
            client = Client()
            await client.__aenter__()
            peer = await client.peers.peer_at(target.multiaddr)

        async def disconnect():
            nonlocal client
            if client is not None:
                try:
                    with trio.move_on_after(5):
                        await client.__aexit__(None, None, None)
                except Exception:
                    pass
                client = None

        try:
            while sent < plan.frames and crashes < plan.max_crashes:
                frames = fuzzed_batch(ch, min(plan.batch, plan.frames - sent))
                batches += 1
                if client is None:
                    try:
                        await connect()
                    except Exception:
                        await disconnect()
                out = None
                if client is not None:
                    out = await send_batch(client, peer, frames, timeout=10, ping_id=f"soak-{batches}")
                    sent += out.sent
                    undecodable += out.undecodable_answers
                    if out.ping_answered is False:
                        pipelined_unanswered += 1
                    if out.send_errors:
                        await disconnect()
                dead = await wait_dead(target, 0.05 if out is not None and out.ping_answered else 1.0)
                if not dead and batches % plan.fresh_ping_every == 0:
                    ok, _, _ = await ping_fresh(target.multiaddr, timeout=10)
                    fresh_failed += not ok
                    dead = await wait_dead(target, 0.05 if ok else 1.0)
                if dead:
                    crashes += 1
                    why = target.exit_reason()
                    reasons[why] += 1
                    await disconnect()
                    if crashes <= plan.triage:
                        found = await find_killer(target, frames)
                        killers.append(f"{found[0].describe(200)}\n      -> {found[1]}" if found
                                       else f"(no single frame; {why})")
                    else:
                        target.restart()
                    narrate(f"soak fuzz: crash {crashes} after {sent:,} frames: {why}")
                if batches % 100 == 0:
                    narrate(f"soak fuzz: {sent:,} frames, {crashes} crashes, {time.perf_counter() - started:.0f} s")
        finally:
            await disconnect()
            nursery.cancel_scope.cancel()
    after = target.usage()
    seconds = time.perf_counter() - started
    stopped = f" (stopped after {plan.max_crashes} crashes)" if crashes >= plan.max_crashes else ""
    report.add(Row("soak", "fuzz", {"frames": sent, "batches": batches, "crashes": crashes,
                                    "fresh_ping_failed": fresh_failed, "pipelined_ping_unanswered": pipelined_unanswered,
                                    "undecodable_answers": undecodable, "seconds": round(seconds, 1),
                                    "fds_before": before[0], "rss_before_mib": before[1], "fds_after": after[0],
                                    "rss_after_mib": after[1], "exit_reasons": dict(reasons), "killers": killers},
                   f"fuzz: {sent:,} frames in {batches:,} batches{stopped}, {seconds:.0f} s: {crashes} crashes, "
                   f"{fresh_failed} fresh pings failed, {pipelined_unanswered} pipelined pings unanswered, "
                   f"{undecodable} undecodable answers",
                   "0 crashes", crashes == 0))
    print(f"    {_fmt_usage(before, after)}{' (of the last node started)' if crashes else ''}", flush=True)
    for why, n in reasons.most_common():
        print(f"    crash x{n}: {why}", flush=True)
    for k in killers:
        print(f"    killer: {k}", flush=True)
    if crashes:
        report.failures.append(f"soak fuzz: {crashes} crashes")
    if undecodable:
        report.failures.append(f"soak fuzz: the node wrote {undecodable} frames that do not decode")


async def phase_connections(target: SoakNode, plan: SoakPlan, report: Report) -> None:
    before = target.usage()
    refused = 0
    consecutive = 0
    first_refused = None
    crashes = 0
    reasons: collections.Counter[str] = collections.Counter()
    durations: list[float] = []
    attempted = 0
    started = time.perf_counter()
    for i in range(1, plan.connections + 1):
        attempted = i
        ok, why, seconds = await ping_fresh(target.multiaddr, timeout=5)
        if ok:
            durations.append(seconds)
            consecutive = 0
        else:
            refused += 1
            consecutive += 1
            reasons[why[:90]] += 1
            if first_refused is None:
                first_refused = i
            if not target.alive():
                crashes += 1
                reasons[f"crash: {target.exit_reason()}"] += 1
                target.restart()
            if consecutive >= plan.give_up_after_refusals:
                break
        if i % 1000 == 0:
            narrate(f"soak connections: {i:,}, {refused} refused, {time.perf_counter() - started:.0f} s")
    import trio

    await trio.sleep(1.0)  # let the node see the last close
    after = target.usage()
    not_tried = plan.connections - attempted
    stopped = f" (stopped after {plan.give_up_after_refusals} refusals in a row; {not_tried:,} not attempted)" \
        if not_tried else ""
    p50 = percentile(durations, 50) * 1000 if durations else float("nan")
    report.add(Row("soak", "connections",
                   {"connections": plan.connections, "attempted": attempted, "refused": refused,
                    "first_refused": first_refused, "crashes": crashes, "connect_ping_close_p50_ms": round(p50, 1),
                    "fds_before": before[0], "rss_before_mib": before[1], "fds_after": after[0],
                    "rss_after_mib": after[1], "reasons": dict(reasons)},
                   f"connections: {attempted:,} of {plan.connections:,} new clients in sequence{stopped}: "
                   f"{refused:,} refused" + (f" (first: #{first_refused})" if first_refused else "")
                   + f", {crashes} crashes; connect+ping+close p50 {p50:.1f} ms",
                   f"0 refused of {plan.connections:,}", refused == 0 and not not_tried))
    print(f"    {_fmt_usage(before, after)}", flush=True)
    for why, n in reasons.most_common(3):
        print(f"    refused x{n}: {why}", flush=True)
    if crashes:
        report.failures.append(f"soak connections: {crashes} crashes")


async def _write_shielded(stream, data: bytes, timeout: float) -> bool:
    import trio

    with trio.move_on_after(timeout) as scope:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(timeout):
                await stream.write(data)
    return not scope.cancelled_caught


async def phase_hog(target: SoakNode, plan: SoakPlan, report: Report) -> None:
    import trio
    from libp2p.custom_types import TProtocol

    from node_runtime import Client
    from node_runtime.stream_io import reset_quietly

    before = target.usage()
    callers = Callers(target.multiaddr, plan.callers, plan.ping_every)
    per_stream = plan.hog_requests // plan.hog_streams
    answered = collections.Counter()
    streams = []
    async with Client() as hog:
        peer = await hog.peers.peer_at(target.multiaddr)

        async def drain(stream) -> None:
            from node_runtime.framing import FrameDecoder

            decoder = FrameDecoder(64 * MIB)
            try:
                while True:
                    data = await stream.read(256 * 1024)
                    if not data:
                        return
                    for payload in decoder.feed(data):
                        answered["frames"] += 1
                        if b"4016" in payload:
                            answered["4016"] += 1
            except Exception:
                return

        async with trio.open_nursery() as nursery:
            for s in range(plan.hog_streams):
                with trio.fail_after(10):
                    stream = await hog.host.new_stream(peer, [TProtocol("/o/demo")])
                streams.append(stream)
                nursery.start_soon(drain, stream)
                data = b"".join(frame(_json(envelope("stream_progress", {"totalSteps": 1000, "delayMs": 100},
                                                     f"hog-{s}-{i}", streaming=True)))
                                for i in range(per_stream))
                await _write_shielded(stream, data, 10)
            await trio.sleep(0.5)  # the node has read them all
            mid = target.usage()
            await nursery.start(callers.run)
            await trio.sleep(plan.hog_seconds)
            nursery.cancel_scope.cancel()
        for stream in streams:
            await reset_quietly(stream, 2.0)
    await trio.sleep(0.5)
    dead = not target.alive()
    after = target.usage()
    report.add(Row("soak", "hog", {"requests": per_stream * plan.hog_streams, "streams": plan.hog_streams,
                                   "hog_frames_back": answered["frames"], "hog_4016": answered["4016"],
                                   "crashed": dead, "fds_under_hog": mid[0], "rss_under_hog_mib": mid[1]},
                   f"hog: one peer, {per_stream * plan.hog_streams:,} slow requests on {plan.hog_streams} streams "
                   f"({answered['4016']:,} of them answered 4016); {'NODE DIED' if dead else 'node alive'}"))
    callers.row(report, "soak", "hog")
    print(f"    {_fmt_usage(before, after)}", flush=True)
    if dead:
        report.failures.append(f"soak hog: the node died ({target.exit_reason()})")


def _json(message: dict) -> bytes:
    import orjson

    return orjson.dumps(message)


async def phase_partial(target: SoakNode, plan: SoakPlan, report: Report) -> None:
    import trio
    from libp2p.custom_types import TProtocol

    from node_runtime import Client
    from node_runtime.framing import encode_varint
    from node_runtime.stream_io import reset_quietly

    await trio.sleep(0.5)
    before = target.usage()
    callers = Callers(target.multiaddr, plan.callers, plan.ping_every)
    peak = before[1] or 0.0
    held = collections.Counter()
    streams = []

    async def sample() -> None:
        nonlocal peak
        while True:
            rss = target.usage()[1]
            if rss is not None:
                peak = max(peak, rss)
            await trio.sleep(0.25)

    async with Client() as holder:
        peer = await holder.peers.peer_at(target.multiaddr)
        declared = plan.hold_bytes + MIB  # under the node's 16 MiB frame limit, never finished

        async def hold(n: int) -> None:
            try:
                with trio.fail_after(10):
                    stream = await holder.host.new_stream(peer, [TProtocol("/o/demo")])
            except Exception:
                held["stream refused"] += 1
                return
            streams.append(stream)
            try:
                if not await _write_shielded(stream, encode_varint(declared) + b"{", 10):
                    return
                chunk = b" " * MIB
                for _ in range(plan.hold_bytes // MIB):
                    if not await _write_shielded(stream, chunk, 20):
                        held["write timed out"] += 1
                        return
                held["holding"] += 1
            except Exception:
                held["reset by node"] += 1

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            await nursery.start(callers.run)
            async with trio.open_nursery() as writers:
                for n in range(plan.holders):
                    writers.start_soon(hold, n)
            filled = time.perf_counter() - started
            await trio.sleep(plan.hold_seconds)
            during = target.usage()
            nursery.cancel_scope.cancel()
        for stream in streams:
            await reset_quietly(stream, 2.0)
    await trio.sleep(1.0)
    dead = not target.alive()
    after = target.usage()
    growth = peak - (before[1] or 0.0)
    report.add(Row("soak", "partial",
                   {"holders": plan.holders, "bytes_each": plan.hold_bytes, "outcomes": dict(held),
                    "rss_before_mib": before[1], "rss_peak_mib": round(peak, 1), "rss_after_mib": after[1],
                    "rss_growth_mib": round(growth, 1), "fds_before": before[0], "fds_during": during[0],
                    "fds_after": after[0], "fill_seconds": round(filled, 1), "crashed": dead},
                   f"partial: {plan.holders} streams x {plan.hold_bytes / MIB:g} MiB of unfinished frames "
                   f"({', '.join(f'{k} {v}' for k, v in held.items())}): node RSS {before[1] or 0:.1f} -> peak "
                   f"{peak:.1f} MiB (+{growth:.1f}); {'NODE DIED' if dead else 'node alive'}",
                   f"RSS <= +{TARGET_RSS_GROWTH_MIB:g} MiB", not dead and growth <= TARGET_RSS_GROWTH_MIB))
    callers.row(report, "soak", "partial")
    print(f"    {_fmt_usage(before, after)}", flush=True)
    if dead:
        report.failures.append(f"soak partial: the node died ({target.exit_reason()})")


PHASES = (("fuzz", phase_fuzz), ("connections", phase_connections), ("hog", phase_hog), ("partial", phase_partial))


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_soak(plan: SoakPlan, report: Report) -> None:
    import trio

    print(f"\nsoak: each phase on a fresh `olane node --tools demo`; /proc/loadavg {loadavg()}", flush=True)
    for name, phase in PHASES:
        target = SoakNode()
        try:
            target.restart()
            narrate(f"soak {name}: node pid {target.pid} at {target.multiaddr}")
            trio.run(phase, target, plan, report)
        except Exception as exc:
            report.failures.append(f"soak {name}: {type(exc).__name__}: {exc}")
            print(f"  {name} failed: {type(exc).__name__}: {exc}", flush=True)
        finally:
            target.stop()
    print(f"  /proc/loadavg {loadavg()}", flush=True)
