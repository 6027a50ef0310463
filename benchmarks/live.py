"""`olane bench --only live`: what live streams cost (docs/protocol-extensions.md,
"Live streams"), against the bench node in its own process.

- resume: a resumable stream paced at `resume_rate` chunks/s whose connection is
  killed (its TCP socket closed) `kills` times; per kill, the time from the kill
  to the first chunk that came over the resumed stream, and that every chunk
  came exactly once;
- paced taps (what the issue's acceptance means): a stream paced at `paced_rate`
  chunks/s (a rate the node sustains) with 0, 3 (one of them slow: it pauses
  SLOW_PAUSE_S every SLOW_EVERY chunks, so it must drop) and 10 taps: the
  original's completion rate against its untapped run (target: within 20%),
  per tap the chunks it got, the slow tap's drops (received + dropped = all);
- resumable flood: a 100 B flood read flat out, plain and resumable (the node runs
  the generator apart, keeps a replay ring, encodes each chunk's data once): chunks/s
  and the node's CPU per chunk of each, for JSON and msgpack;
- taps: a 100 B flood with 1, 10 and 100 taps (one tap stream each, all read by
  one other process over one connection, so this one reads only the stream): the
  tapped stream's chunks/s against the same flood untapped, and per tap its
  chunks/s and the chunks it dropped (one process reads every tap, so with many
  taps the taps are the slow readers), and the node's CPU per chunk of the
  stream (from /proc): the rates share 2 cores between the node and the
  reading processes, the CPU figure is what a tap costs the node itself.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass

import trio

from .common import Report, Row, ServedNode

BENCH_ADDRESS = "o://bench"
#: the stream resumed within this much of the kill (median): dial, Noise, Yamux, one request
TARGET_RESUME_MS = 250.0
#: a stream with one tap keeps this share of its untapped rate (the issue's "within 20%")
TARGET_TAPPED_SHARE = 0.8
#: the slow tap of the paced case reads with pauses: at most SLOW_EVERY / SLOW_PAUSE_S chunks/s
SLOW_EVERY = 100
SLOW_PAUSE_S = 0.1


@dataclass
class LivePlan:
    resume_chunks: int = 20_000
    resume_rate: int = 2_000
    kills: int = 8
    tap_chunks: int = 100_000
    tap_counts: tuple = (1, 10, 100)
    paced_chunks: int = 100_000
    paced_rate: int = 20_000
    paced_taps: tuple = (3, 10)  # the first of each set is slow
    #: padding per chunk: the slow tap only loses chunks once its connection's 16 MiB Yamux window is full
    paced_pad: int = 400
    flood_chunks: int = 100_000

    @classmethod
    def quick(cls) -> "LivePlan":
        return cls(resume_chunks=6_000, kills=4, tap_chunks=20_000, paced_chunks=60_000,
                   paced_pad=600, flood_chunks=20_000)


async def _resumes(node: ServedNode, plan: LivePlan, report: Report) -> None:
    from node_runtime import Client

    async with Client(seed="bench-live-resume") as client:
        await client.connect(node.multiaddr)
        call = client.use_streaming(BENCH_ADDRESS, "paced", {"count": plan.resume_chunks, "perSecond": plan.resume_rate},
                                    via=node.multiaddr, resumable=True)
        every = plan.resume_chunks // (plan.kills + 1)
        seen = 0
        in_order = True
        killed_at = None
        gaps_ms: list[float] = []
        async for chunk in call:
            seen += 1
            if chunk["i"] != seen:
                in_order = False
            if killed_at is not None and call.resumes > len(gaps_ms):  # the first chunk over the resumed stream
                gaps_ms.append((time.perf_counter() - killed_at) * 1000)
                killed_at = None
            if killed_at is None and seen % every == 0 and len(gaps_ms) < plan.kills:
                call.abort_connection()
                killed_at = time.perf_counter()
        complete = seen == plan.resume_chunks and in_order and call.resumes == len(gaps_ms)
        if not complete:
            report.failures.append(f"live resume: {seen} of {plan.resume_chunks} chunks, in order: {in_order}, "
                                   f"{call.resumes} resumes for {len(gaps_ms)} kills")
        p50 = statistics.median(gaps_ms) if gaps_ms else float("nan")
        p_max = max(gaps_ms) if gaps_ms else float("nan")
        report.add(Row("live", "resume", {"kills": len(gaps_ms), "resumes": call.resumes, "p50_ms": round(p50, 1),
                                          "max_ms": round(p_max, 1), "ms": [round(g, 1) for g in gaps_ms],
                                          "complete": complete},
                       f"resume   kill -> first resumed chunk: p50 {p50:7.1f} ms  max {p_max:7.1f} ms over "
                       f"{len(gaps_ms)} kills; every chunk once: {complete}",
                       f"p50 <= {TARGET_RESUME_MS:g} ms", p50 <= TARGET_RESUME_MS))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


async def _resumable_floods(node: ServedNode, plan: LivePlan, report: Report) -> None:
    from node_runtime import Client

    count = plan.flood_chunks
    for codec in ("json", "msgpack"):
        async with Client(seed="bench-live-flood", codec=codec) as client:
            await client.connect(node.multiaddr)
            figures = {}
            for resumable in (False, True, False, True):  # interleaved: the second of each counts
                call = client.use_streaming(BENCH_ADDRESS, "flood", {"count": count, "size": 100}, via=node.multiaddr,
                                            resumable=resumable)
                cpu = _cpu_seconds(node.pid)
                started = time.perf_counter()
                n = 0
                async for _ in call:
                    n += 1
                seconds = time.perf_counter() - started
                if n != count:
                    report.failures.append(f"live flood ({codec}, resumable {resumable}): {n} of {count} chunks")
                figures[resumable] = (count / seconds, (_cpu_seconds(node.pid) - cpu) / count * 1e6)
        (plain, plain_us), (live, live_us) = figures[False], figures[True]
        report.add(Row("live", f"resumable_flood_{codec}", {
            "codec": codec, "plain_chunks_per_s": round(plain), "resumable_chunks_per_s": round(live),
            "plain_node_cpu_us_per_chunk": round(plain_us, 2), "resumable_node_cpu_us_per_chunk": round(live_us, 2)},
            f"flood {codec:<7}       plain {plain:>10,.0f} chunks/s, node CPU {plain_us:5.2f} us/chunk; resumable "
            f"{live:>9,.0f} chunks/s, {live_us:5.2f} us/chunk ({count:,} x 100 B)"))


async def _flood(client, node: ServedNode, count: int, taps: int) -> tuple[float, int]:
    call = client.use_streaming(BENCH_ADDRESS, "flood_tapped", {"count": count, "size": 100, "taps": taps},
                                via=node.multiaddr)
    started = None
    n = 0
    async for _ in call:
        if started is None:
            started = time.perf_counter()  # from the first chunk: the taps are attached by then
        n += 1
    return time.perf_counter() - (started or time.perf_counter()), n


async def _taps(node: ServedNode, plan: LivePlan, report: Report) -> None:
    from node_runtime import Client

    count = plan.tap_chunks
    async with Client(seed="bench-live-owner") as owner:
        await owner.connect(node.multiaddr)
        await _flood(owner, node, 2_000, 0)  # warm up
        cpu = _cpu_seconds(node.pid)
        seconds, _ = await _flood(owner, node, count, 0)
        # the node's CPU per chunk: what a tap costs the node, whatever the readers' share of the machine
        untapped_us = (_cpu_seconds(node.pid) - cpu) / count * 1e6
        untapped = count / seconds
        report.add(Row("live", "untapped", {"chunks_per_s": round(untapped), "node_cpu_us_per_chunk": round(untapped_us, 2)},
                       f"taps       0        stream {untapped:>10,.0f} chunks/s (untapped); node CPU "
                       f"{untapped_us:5.2f} us/chunk"))
        for n_taps in plan.tap_counts:
            original: dict = {}

            async def run_original() -> None:
                original["seconds"], original["chunks"] = await _flood(owner, node, count, n_taps)

            cpu = _cpu_seconds(node.pid)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_original)
                stream_id = await _find(owner, node)
                # the taps read in a process of their own: this one reads only the stream itself
                done = await trio.run_process([sys.executable, "-m", "benchmarks.live", "tap", node.multiaddr,
                                               stream_id, str(n_taps)], capture_stdout=True, check=False)
            try:
                results = json.loads(done.stdout.decode().strip().splitlines()[-1])
            except (ValueError, IndexError):
                report.failures.append(f"live taps x{n_taps}: the tapping process said nothing (exit {done.returncode})")
                continue
            node_us = (_cpu_seconds(node.pid) - cpu) / count * 1e6
            per_tap_us = (node_us - untapped_us) / n_taps
            rate = count / original["seconds"]
            per_tap = [r["received"] / r["seconds"] for r in results if r["seconds"] > 0]
            tap_rate = statistics.median(per_tap) if per_tap else 0.0
            dropped = sum(r["dropped"] for r in results)
            exact = len(results) == n_taps and all(r["received"] + r["dropped"] == count for r in results)
            if not exact or original["chunks"] != count:
                report.failures.append(f"live taps x{n_taps}: received + dropped != {count} for some tap, or the "
                                       f"stream lost chunks")
            share = rate / untapped
            report.add(Row("live", f"taps_{n_taps}", {
                "taps": n_taps, "stream_chunks_per_s": round(rate), "share_of_untapped": round(share, 2),
                "tap_chunks_per_s_median": round(tap_rate), "tap_chunks_per_s_min": round(min(per_tap or [0])),
                "dropped_total": dropped, "dropped_share": round(dropped / (count * n_taps), 3), "exact": exact,
                "node_cpu_us_per_chunk": round(node_us, 2), "node_cpu_us_per_tap_chunk": round(per_tap_us, 3)},
                f"taps {n_taps:>5}        stream {rate:>10,.0f} chunks/s ({share:4.0%} of untapped); per tap "
                f"median {tap_rate:>9,.0f} chunks/s, dropped {dropped / (count * n_taps):5.1%}; node CPU "
                f"{node_us:5.2f} us/chunk ({per_tap_us:+.2f} per tap)",
                f"stream >= {TARGET_TAPPED_SHARE:.0%} of untapped" if n_taps == 1 else "",
                share >= TARGET_TAPPED_SHARE if n_taps == 1 else None))


async def _paced(client, node: ServedNode, count: int, rate: int, taps: int, pad: int) -> tuple[float, int]:
    call = client.use_streaming(BENCH_ADDRESS, "paced", {"count": count, "perSecond": rate, "taps": taps, "pad": pad},
                                via=node.multiaddr)
    started = None
    n = 0
    async for _ in call:
        if started is None:
            started = time.perf_counter()
        n += 1
    return time.perf_counter() - (started or time.perf_counter()), n


async def _paced_taps(node: ServedNode, plan: LivePlan, report: Report) -> None:
    from node_runtime import Client

    count, rate = plan.paced_chunks, plan.paced_rate
    async with Client(seed="bench-live-owner") as owner:
        await owner.connect(node.multiaddr)
        cpu = _cpu_seconds(node.pid)
        seconds, _ = await _paced(owner, node, count, rate, 0, plan.paced_pad)
        untapped_us = (_cpu_seconds(node.pid) - cpu) / count * 1e6
        untapped = count / seconds
        report.add(Row("live", "paced_untapped", {"chunks_per_s": round(untapped), "asked_per_s": rate,
                                                  "node_cpu_us_per_chunk": round(untapped_us, 2)},
                       f"paced  0 taps     stream {untapped:>10,.0f} chunks/s (untapped; paced at {rate:,}/s); node CPU "
                       f"{untapped_us:5.2f} us/chunk"))
        for n_taps in plan.paced_taps:
            original: dict = {}

            async def run_original() -> None:
                original["seconds"], original["chunks"] = await _paced(owner, node, count, rate, n_taps, plan.paced_pad)

            cpu = _cpu_seconds(node.pid)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_original)
                stream_id = await _find(owner, node, "paced")
                done = await trio.run_process([sys.executable, "-m", "benchmarks.live", "tap", node.multiaddr,
                                               stream_id, str(n_taps), "1", str(count / rate)], capture_stdout=True,
                                              check=False)
            try:
                results = json.loads(done.stdout.decode().strip().splitlines()[-1])
            except (ValueError, IndexError):
                report.failures.append(f"live paced x{n_taps}: the tapping process said nothing "
                                       f"(exit {done.returncode})")
                continue
            node_us = (_cpu_seconds(node.pid) - cpu) / count * 1e6
            share = (count / original["seconds"]) / untapped
            slow = [r for r in results if r["slow"]]
            fast = [r for r in results if not r["slow"]]
            exact = len(results) == n_taps and all(r["received"] + r["dropped"] == count for r in results)
            fast_all = all(r["received"] == count for r in fast)
            if not exact or original["chunks"] != count:
                report.failures.append(f"live paced x{n_taps}: received + dropped != {count} for some tap, or the "
                                       f"stream lost chunks")
            slow_text = (f"; slow tap got {slow[0]['received']:,}, dropped {slow[0]['dropped']:,}" if slow else "")
            report.add(Row("live", f"paced_taps_{n_taps}", {
                "taps": n_taps, "stream_chunks_per_s": round(count / original["seconds"]),
                "share_of_untapped": round(share, 3), "received": [r["received"] for r in results],
                "dropped": [r["dropped"] for r in results], "fast_taps_complete": fast_all, "exact": exact,
                "node_cpu_us_per_chunk": round(node_us, 2)},
                f"paced {n_taps:>2} taps     stream {count / original['seconds']:>10,.0f} chunks/s ({share:4.0%} of "
                f"untapped); fast taps got every chunk: {fast_all} (min {min((r['received'] for r in fast), default=0):,})"
                f"{slow_text}; node CPU {node_us:5.2f} us/chunk",
                f"stream >= {TARGET_TAPPED_SHARE:.0%} of untapped", share >= TARGET_TAPPED_SHARE))


async def _tap_all(multiaddr: str, stream_id: str, n_taps: int, n_slow: int = 0, slow_for: float = 0.0) -> list[dict]:
    """`n_taps` taps of one stream over one connection; per tap what it got. The
    first `n_slow` read with pauses (SLOW_PAUSE_S every SLOW_EVERY chunks)."""
    from node_runtime import Client

    results: list[dict] = []
    async with Client(seed="bench-live-owner") as watcher:
        await watcher.connect(multiaddr)

        async def tap(slow: bool) -> None:
            if slow:  # a connection of its own: a slow tap fills only its own 16 MiB Yamux window
                async with Client(seed="bench-live-owner") as own:
                    await own.connect(multiaddr)
                    await read(own, slow)
            else:
                await read(watcher, slow)

        async def read(client, slow: bool) -> None:
            call = client.use_streaming(BENCH_ADDRESS, "tap", {"streamId": stream_id}, via=multiaddr)
            received = dropped = 0
            first = None
            async for response in call.responses():
                dropped += response.extra("_dropped") or 0
                if response.last:
                    break
                if first is None:
                    first = time.perf_counter()
                received += 1
                # slow while the stream runs (then it reads the rest its window holds flat out)
                if slow and received % SLOW_EVERY == 0 and time.perf_counter() - first < slow_for:
                    await trio.sleep(SLOW_PAUSE_S)
            results.append({"received": received, "dropped": dropped, "slow": slow,
                            "seconds": time.perf_counter() - (first or time.perf_counter())})

        async with trio.open_nursery() as nursery:
            for i in range(n_taps):
                nursery.start_soon(tap, i < n_slow)
    return results


async def _find(client, node: ServedNode, method: str = "flood_tapped") -> str:
    with trio.fail_after(10):
        while True:
            for entry in (await client.use(BENCH_ADDRESS, "list_streams", via=node.multiaddr))["streams"]:
                if entry["method"] == method:
                    return entry["streamId"]
            await trio.sleep(0.005)


async def section_live(node: ServedNode, plan: LivePlan, report: Report) -> None:
    await _resumes(node, plan, report)
    await _resumable_floods(node, plan, report)
    await _paced_taps(node, plan, report)
    await _taps(node, plan, report)


if __name__ == "__main__":  # the tapping process: tap MULTIADDR STREAM_ID N [SLOW] -> one JSON line
    if sys.argv[1:2] == ["tap"]:
        slow = int(sys.argv[5]) if len(sys.argv) > 5 else 0
        slow_for = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
        print(json.dumps(trio.run(_tap_all, sys.argv[2], sys.argv[3], int(sys.argv[4]), slow, slow_for)), flush=True)
