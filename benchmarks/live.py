"""`olane bench --only live`: what live streams cost (docs/protocol-extensions.md,
"Live streams"), against the bench node in its own process.

- resume: a resumable stream paced at `resume_rate` chunks/s whose connection is
  killed (its TCP socket closed) `kills` times; per kill, the time from the kill
  to the first chunk that came over the resumed stream, and that every chunk
  came exactly once;
- taps: a 100 B flood with 1, 10 and 100 taps (one tap stream each, all read by
  one other process over one connection, so this one reads only the stream): the
  tapped stream's chunks/s against the same flood untapped, and per tap its
  chunks/s and the chunks it dropped (one process reads every tap, so with many
  taps the taps are the slow readers).
"""
from __future__ import annotations

import json
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


@dataclass
class LivePlan:
    resume_chunks: int = 20_000
    resume_rate: int = 2_000
    kills: int = 8
    tap_chunks: int = 100_000
    tap_counts: tuple = (1, 10, 100)

    @classmethod
    def quick(cls) -> "LivePlan":
        return cls(resume_chunks=6_000, kills=4, tap_chunks=20_000)


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
        seconds, _ = await _flood(owner, node, count, 0)
        untapped = count / seconds
        report.add(Row("live", "untapped", {"chunks_per_s": round(untapped)},
                       f"taps       0        stream {untapped:>10,.0f} chunks/s (untapped)"))
        for n_taps in plan.tap_counts:
            original: dict = {}

            async def run_original() -> None:
                original["seconds"], original["chunks"] = await _flood(owner, node, count, n_taps)

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
                "dropped_total": dropped, "dropped_share": round(dropped / (count * n_taps), 3), "exact": exact},
                f"taps {n_taps:>5}        stream {rate:>10,.0f} chunks/s ({share:4.0%} of untapped); per tap "
                f"median {tap_rate:>9,.0f} chunks/s, dropped {dropped / (count * n_taps):5.1%}",
                f"stream >= {TARGET_TAPPED_SHARE:.0%} of untapped" if n_taps == 1 else "",
                share >= TARGET_TAPPED_SHARE if n_taps == 1 else None))


async def _tap_all(multiaddr: str, stream_id: str, n_taps: int) -> list[dict]:
    """`n_taps` taps of one stream over one connection; per tap what it got."""
    from node_runtime import Client

    results: list[dict] = []
    async with Client(seed="bench-live-owner") as watcher:
        await watcher.connect(multiaddr)

        async def tap() -> None:
            call = watcher.use_streaming(BENCH_ADDRESS, "tap", {"streamId": stream_id}, via=multiaddr)
            received = dropped = 0
            first = None
            async for response in call.responses():
                dropped += response.extra("_dropped") or 0
                if response.last:
                    break
                if first is None:
                    first = time.perf_counter()
                received += 1
            results.append({"received": received, "dropped": dropped,
                            "seconds": time.perf_counter() - (first or time.perf_counter())})

        async with trio.open_nursery() as nursery:
            for _ in range(n_taps):
                nursery.start_soon(tap)
    return results


async def _find(client, node: ServedNode) -> str:
    with trio.fail_after(10):
        while True:
            for entry in (await client.use(BENCH_ADDRESS, "list_streams", via=node.multiaddr))["streams"]:
                if entry["method"] == "flood_tapped":
                    return entry["streamId"]
            await trio.sleep(0.005)


async def section_live(node: ServedNode, plan: LivePlan, report: Report) -> None:
    await _resumes(node, plan, report)
    await _taps(node, plan, report)


if __name__ == "__main__":  # the tapping process: tap MULTIADDR STREAM_ID N -> one JSON line
    if sys.argv[1:2] == ["tap"]:
        print(json.dumps(trio.run(_tap_all, sys.argv[2], sys.argv[3], int(sys.argv[4]))), flush=True)
