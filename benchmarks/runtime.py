"""`olane bench`: how fast the runtime streams, measured in one run.

The serving node runs in its own process (`python -m benchmarks.runtime serve`,
hidden), so its RSS is its own and it has a core of its own; this process is
the client. Sections:

- baseline:   raw py-libp2p (Noise + Yamux) stream, one write per message, no
              olane framing: what py-libp2p gives before our write coalescing;
- throughput: node -> client chunks/s and MB/s for 100-byte and 64 KiB chunks;
- latency:    first-frame latency (p50/p99) of a streaming and of a unary call
              on a reused connection (pooled streams);
- many:       100 concurrent streams x 2,000 chunks on one connection: time to
              first chunk p50/p99 and aggregate chunks/s;
- slow:       1M chunks read by a consumer that pauses now and then and once
              for 10 s (py-libp2p alone kills a stream after 5 s), while the
              node's RSS is sampled every 0.5 s;
- bidirectional, compression: echo_stream chunks/s each way; zstd vs plain wire bytes
              and rates for sqlite rows and metrics samples (benchmarks/extensions.py);
- live:       (only with --only live) resumption: kill-to-resumed-chunk time; tap fan-out with 1, 10 and
              100 taps: chunks/s per tap, chunks dropped, the tapped stream's rate against untapped
              (benchmarks/live.py);
- network:    (only with --network or --only network) routed vs direct chunks/s and
              first-frame latency through 1 and 2 relays, a relay's RSS under 100 slow
              streams, a leader with 200 nodes joining and leaving (benchmarks/network.py);
- soak:       (only with --soak or --only soak) hostile frames, 10,000 connections in sequence, a
              request hog and partial-frame holders against `olane node --tools demo`
              (benchmarks/soak.py): crashes, refusals, others' ping p99, fds and RSS.

Each runs with JSON frames and with msgpack frames. Targets are printed next to
the figures with PASS/MISS; they never change the exit code, which is 0 when
every section ran and every chunk arrived in order, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import trio

from node_runtime import Request, Tool, tool_method

from .common import Report, Row, ServedNode, is_interrupt, narrate, percentile, serve_until_stopped

BENCH_ADDRESS = "o://bench"
RAW_PROTOCOL = "/olane-bench/raw/1.0.0"
SECTIONS = ("baseline", "throughput", "latency", "many", "slow", "bidirectional", "compression", "live", "soak",
            "compare", "network")
#: what `olane bench` runs without --only, --soak or --compare (the soak takes long: ask for it)
DEFAULT_SECTIONS = ("baseline", "throughput", "latency", "many", "slow", "bidirectional", "compression")
CODECS = ("json", "msgpack")

TARGET_SMALL_CHUNKS_PER_S = 50_000
TARGET_LARGE_MB_PER_S = 120.0
#: "flat RSS": the node may grow at most this much (peak over start) while 1M chunks go to a slow reader
TARGET_RSS_GROWTH_MIB = 16.0
#: issue 14: 100 concurrent streams on one connection
TARGET_MANY_FIRST_P99_MS = 250.0
TARGET_MANY_CHUNKS_PER_S = 200_000

MB = 1_000_000
MIB = 1024 * 1024
KIB = 1024


# --- the serving side -------------------------------------------------------------


class BenchTool(Tool):
    """What the bench calls: chunks of a chosen size, as fast as the stream takes them."""

    address = BENCH_ADDRESS

    @tool_method("Stream `count` small dicts {i, pad}, each about `size` bytes encoded (JSON).")
    async def _tool_flood(self, request: Request, count: int = 1000, size: int = 100):
        # {"i":123456,"pad":"..."} is 21 bytes of JSON around the padding
        pad = "x" * max(0, size - 21)
        for i in range(1, count + 1):
            yield {"i": i, "pad": pad}

    @tool_method("As flood, once the stream has `taps` taps (the live section's fan-out).")
    async def _tool_flood_tapped(self, request: Request, count: int = 1000, size: int = 100, taps: int = 0):
        record = request.node.streams.record_of(request.id)
        while record is not None and len(record.taps) < taps:
            await trio.sleep(0.005)
        pad = "x" * max(0, size - 21)
        for i in range(1, count + 1):
            yield {"i": i, "pad": pad}

    @tool_method("Stream `count` small dicts at about `perSecond` chunks a second (the live section's resumes), "
                 "once the stream has `taps` taps, each with `pad` characters of padding.")
    async def _tool_paced(self, request: Request, count: int = 1000, perSecond: int = 2000, taps: int = 0,
                          pad: int = 0):
        record = request.node.streams.record_of(request.id)
        while taps and record is not None and len(record.taps) < taps:  # the live section's paced fan-out
            await trio.sleep(0.005)
        padding = "x" * pad
        start = trio.current_time()
        for i in range(1, count + 1):
            if i % 10 == 0:
                await trio.sleep_until(start + i / perSecond)
            yield {"i": i, "pad": padding} if pad else {"i": i}

    @tool_method("Stream `count` chunks of `size` raw bytes (base64 text in JSON frames).")
    async def _tool_blob(self, request: Request, count: int = 100, size: int = 64 * KIB):
        data = os.urandom(size)
        for _ in range(count):
            yield data


async def _raw_handler(stream) -> None:
    """Bare py-libp2p: read `count size [per_write]\\n`, then write `count` messages of
    `size` bytes, `per_write` of them (default 1) in each write."""
    try:
        head = b""
        while b"\n" not in head:
            head += await stream.read(64)
        count, size, *rest = (int(x) for x in head.split(b"\n", 1)[0].split())
        per_write = max(1, rest[0]) if rest else 1
        message = b"\x00" * size
        block = message * per_write
        left = count
        while left > 0:
            n = min(per_write, left)
            await stream.write(block if n == per_write else message * n)
            left -= n
        try:  # the client resets the stream once it has read everything
            while await stream.read(1024):
                pass
        except Exception:
            pass
    except Exception:
        pass
    finally:
        try:
            await stream.reset()
        except Exception:
            pass


def _serve() -> int:
    """The hidden `serve` command: a node with BenchTool and the raw protocol on 127.0.0.1."""
    import trio
    from libp2p.custom_types import TProtocol

    from node_runtime import Node

    parent = os.getppid()

    async def go() -> None:
        async with Node([BenchTool()], listen=["/ip4/127.0.0.1/tcp/0"]) as node:
            node.host.set_stream_handler(TProtocol(RAW_PROTOCOL), _raw_handler)
            await serve_until_stopped(parent, node.listen_addrs[0])

    trio.run(go)
    return 0


# --- measuring ---------------------------------------------------------------------


@dataclass
class Plan:
    raw_small: int = 30_000
    raw_large: int = 5_000
    small: int = 200_000
    large: int = 5_000
    latency_calls: int = 200
    slow_chunks: int = 1_000_000
    slow_every: int = 5_000
    slow_pause: float = 0.05
    slow_long_pause: float = 10.0
    warmup: int = 10_000
    many_streams: int = 100
    many_chunks: int = 2_000
    repeats: int = 3  # baseline and throughput figures are the median of this many runs

    @classmethod
    def quick(cls) -> "Plan":
        # ~10x smaller; the long pause stays beyond py-libp2p's 5 s window timeout
        return cls(raw_small=5_000, raw_large=500, small=20_000, large=500, latency_calls=20,
                   slow_chunks=100_000, slow_every=5_000, slow_pause=0.05, slow_long_pause=6.0, warmup=2_000,
                   many_streams=100, many_chunks=200, repeats=1)


async def _raw_transfer(client, peer_id, count: int, size: int, per_write: int = 1) -> tuple[float, int]:
    """Ask the node's raw handler for `count` messages of `size` bytes, `per_write`
    in each write; (seconds, bytes read)."""
    return await raw_transfer(client.host, peer_id, count, size, per_write)


async def raw_transfer(host, peer_id, count: int, size: int, per_write: int = 1) -> tuple[float, int]:
    """`_raw_transfer` from a bare py-libp2p host (benchmarks/raw.py's stock client)."""
    from libp2p.custom_types import TProtocol

    from node_runtime.stream_io import STREAM_ENDED

    stream = await host.new_stream(peer_id, [TProtocol(RAW_PROTOCOL)])
    expected = count * size
    received = 0
    try:
        started = time.perf_counter()
        await stream.write(f"{count} {size} {per_write}\n".encode())
        while received < expected:
            try:
                data = await stream.read(256 * KIB)
            except STREAM_ENDED:
                break
            if not data:
                break
            received += len(data)
        return time.perf_counter() - started, received
    finally:
        try:
            await stream.reset()
        except Exception:
            pass


async def _section_baseline(node: ServedNode, plan: Plan, report: Report) -> None:
    from node_runtime.host import parse_peer_multiaddr
    from node_runtime import Client

    async with Client(codec="json") as client:
        await client.connect(node.multiaddr)
        peer_id = parse_peer_multiaddr(node.multiaddr).peer_id
        await _raw_transfer(client, peer_id, 1000, 100)  # warm up
        for label, count, size in (("100 B", plan.raw_small, 100), ("64 KiB", plan.raw_large, 64 * KIB)):
            runs = []
            for _ in range(plan.repeats):
                seconds, received = await _raw_transfer(client, peer_id, count, size)
                if received != count * size:
                    report.failures.append(f"baseline {label}: got {received} of {count * size} bytes")
                runs.append(seconds)
            seconds = statistics.median(runs)
            msgs = count / seconds
            mbs = count * size / MB / seconds
            report.add(Row("baseline", f"raw_{size}", {"messages": count, "msgs_per_s": round(msgs),
                                                      "mb_per_s": round(mbs, 1), "seconds": round(seconds, 3),
                                                      "runs_s": [round(x, 3) for x in runs]},
                           f"raw       {label:>7} x {count:>9,}   {msgs:>10,.0f} msg/s  {mbs:>8.1f} MB/s"))


async def _stream_all(client, multiaddr: str, method: str, count: int, size: int,
                      on_chunk: Callable[[int, Any], Awaitable[None]] | None = None) -> dict[str, Any]:
    """Stream `method` to the end; count chunks, frame bytes, and check the order."""
    call = client.use_streaming(BENCH_ADDRESS, method, {"count": count, "size": size}, via=multiaddr)
    chunks = 0
    frame_bytes = 0
    in_order = True
    started = time.perf_counter()
    first = None
    async for response in call.responses():
        if response.last:
            continue
        chunks += 1
        if first is None:
            first = time.perf_counter() - started
        frame_bytes += response.size
        if response.sequence != chunks:
            in_order = False
        if on_chunk is not None:
            await on_chunk(chunks, response)
    seconds = time.perf_counter() - started
    final_chunks = call.final_response.chunks if call.final_response is not None else None
    return {"chunks": chunks, "seconds": seconds, "frame_bytes": frame_bytes, "in_order": in_order,
            "complete": chunks == count and final_chunks == count, "first": first}


async def _section_throughput(node: ServedNode, plan: Plan, report: Report) -> None:
    from node_runtime import Client

    for codec in CODECS:
        async with Client(codec=codec) as client:
            await client.connect(node.multiaddr)
            await _stream_all(client, node.multiaddr, "flood", 2_000, 100)  # warm up
            await _stream_all(client, node.multiaddr, "blob", 20, 64 * KIB)
            for label, method, count, size in (("100 B", "flood", plan.small, 100),
                                               ("64 KiB", "blob", plan.large, 64 * KIB)):
                runs = []
                for _ in range(plan.repeats):
                    r = await _stream_all(client, node.multiaddr, method, count, size)
                    if not (r["complete"] and r["in_order"]):
                        report.failures.append(f"throughput {codec} {label}: {r['chunks']} of {count} chunks, "
                                               f"in order: {r['in_order']}")
                    runs.append(r)
                r = sorted(runs, key=lambda x: x["seconds"])[len(runs) // 2]  # the median run
                per_s = r["chunks"] / r["seconds"]
                avg_frame = r["frame_bytes"] / max(1, r["chunks"])
                if method == "flood":
                    data_mbs = r["frame_bytes"] / MB / r["seconds"]
                    passed = per_s >= TARGET_SMALL_CHUNKS_PER_S
                    target = f">= {TARGET_SMALL_CHUNKS_PER_S:,} chunks/s"
                    mb_label = "frames"
                else:
                    data_mbs = r["chunks"] * size / MB / r["seconds"]
                    passed = data_mbs >= TARGET_LARGE_MB_PER_S
                    target = f">= {TARGET_LARGE_MB_PER_S:g} MB/s"
                    mb_label = "data"
                report.add(Row(
                    "throughput", f"{codec}_{size}",
                    {"codec": codec, "chunk_bytes": size, "chunks": r["chunks"], "chunks_per_s": round(per_s),
                     "mb_per_s": round(data_mbs, 1), "avg_frame_bytes": round(avg_frame),
                     "seconds": round(r["seconds"], 3), "runs_s": [round(x["seconds"], 3) for x in runs],
                     "in_order": all(x["in_order"] for x in runs), "complete": all(x["complete"] for x in runs)},
                    f"{codec:<8} {label:>7} x {count:>9,}   {per_s:>10,.0f} chunks/s {data_mbs:>7.1f} MB/s {mb_label:<6}"
                    f" {avg_frame:>6,.0f} B/frame",
                    target, passed))


async def _section_latency(node: ServedNode, plan: Plan, report: Report) -> None:
    from node_runtime import Client

    for codec in CODECS:
        async with Client(codec=codec) as client:
            await client.connect(node.multiaddr)
            for _ in range(20):  # warm up
                await client.use(BENCH_ADDRESS, "ping", via=node.multiaddr)
            streaming: list[float] = []
            unary: list[float] = []
            for _ in range(plan.latency_calls):
                r = await _stream_all(client, node.multiaddr, "flood", 1, 100)
                streaming.append(r["first"])
                started = time.perf_counter()
                await client.use(BENCH_ADDRESS, "ping", via=node.multiaddr)
                unary.append(time.perf_counter() - started)
            for kind, values in (("streaming first chunk", streaming), ("unary answer", unary)):
                p50 = percentile(values, 50) * 1000
                p99 = percentile(values, 99) * 1000
                report.add(Row("latency", f"{codec}_{kind.split()[0]}",
                               {"codec": codec, "kind": kind.split()[0], "calls": len(values),
                                "p50_ms": round(p50, 3), "p99_ms": round(p99, 3)},
                               f"{codec:<8} {kind:<22} {len(values):>5} calls   p50 {p50:>6.2f} ms   "
                               f"p99 {p99:>6.2f} ms"))


async def _many_streams(client, multiaddr: str, streams: int, chunks: int) -> dict[str, Any]:
    """`streams` flood calls of `chunks` x 100 B started at once on one connection:
    each one's time from the common start to its first chunk, and the aggregate rate."""
    import trio

    firsts: list[float] = []
    opened: list[float] = []  # the request written: stream open (or a pooled one), lazy protocol select
    counts: list[int] = []
    ordered = True
    started = time.perf_counter()

    async def one() -> None:
        nonlocal ordered
        n = 0
        call = client.use_streaming(BENCH_ADDRESS, "flood", {"count": chunks, "size": 100}, via=multiaddr)
        await call.start()
        opened.append(time.perf_counter() - started)
        async for response in call.responses():
            if response.last:
                continue
            n += 1
            if n == 1:
                firsts.append(time.perf_counter() - started)
            if response.sequence != n:
                ordered = False
        counts.append(n)

    async with trio.open_nursery() as nursery:
        for _ in range(streams):
            nursery.start_soon(one)
    seconds = time.perf_counter() - started
    return {"firsts": firsts, "opened": opened, "chunks": sum(counts), "seconds": seconds,
            "complete": len(counts) == streams and all(c == chunks for c in counts), "in_order": ordered}


async def _section_many(node: ServedNode, plan: Plan, report: Report) -> None:
    from node_runtime import Client

    for label, kwargs in (("msgpack batched", {}), ("json", {"codec": "json"})):
        async with Client(**kwargs) as client:
            await client.connect(node.multiaddr)
            await _many_streams(client, node.multiaddr, 10, 200)  # warm up (and learn identify)
            runs = []
            for _ in range(plan.repeats):
                r = await _many_streams(client, node.multiaddr, plan.many_streams, plan.many_chunks)
                if not (r["complete"] and r["in_order"]):
                    report.failures.append(f"many streams {label}: {r['chunks']} chunks, in order {r['in_order']}")
                runs.append(r)
            r = sorted(runs, key=lambda x: x["seconds"])[len(runs) // 2]
            p50 = percentile(r["firsts"], 50) * 1000
            p99 = percentile(r["firsts"], 99) * 1000
            per_s = r["chunks"] / r["seconds"]
            name = label.replace(" ", "_")
            o50 = percentile(r["opened"], 50) * 1000
            o99 = percentile(r["opened"], 99) * 1000
            report.add(Row("many", f"{name}_opened", {"codec": label, "p50_ms": round(o50, 1), "p99_ms": round(o99, 1)},
                           f"{label:<16} {plan.many_streams} streams, request sent p50 {o50:>7.1f} ms  "
                           f"p99 {o99:>7.1f} ms  (stream open; the protocol select rides with it, fix 9)"))
            report.add(Row("many", f"{name}_first", {"codec": label, "streams": plan.many_streams,
                                                     "p50_ms": round(p50, 1), "p99_ms": round(p99, 1)},
                           f"{label:<16} {plan.many_streams} streams, first chunk  p50 {p50:>7.1f} ms  "
                           f"p99 {p99:>7.1f} ms",
                           f"p99 <= {TARGET_MANY_FIRST_P99_MS:g} ms", p99 <= TARGET_MANY_FIRST_P99_MS))
            report.add(Row("many", f"{name}_rate", {"codec": label, "chunks": r["chunks"], "chunks_per_s": round(per_s),
                                                    "seconds": round(r["seconds"], 3),
                                                    "runs_s": [round(x["seconds"], 3) for x in runs]},
                           f"{label:<16} {plan.many_streams} x {plan.many_chunks:,} chunks      "
                           f"{per_s:>10,.0f} chunks/s aggregate",
                           f">= {TARGET_MANY_CHUNKS_PER_S:,} chunks/s", per_s >= TARGET_MANY_CHUNKS_PER_S))


async def _section_slow(node: ServedNode, codec: str, plan: Plan, report: Report) -> None:
    import psutil
    import trio

    from node_runtime import Client

    served = psutil.Process(node.pid)
    me = psutil.Process()
    async with Client(codec=codec) as client:
        await client.connect(node.multiaddr)
        await _stream_all(client, node.multiaddr, "flood", plan.warmup, 100)  # one-time allocations first
        await trio.sleep(0.5)
        rss_start = served.memory_info().rss
        samples: list[int] = [rss_start]
        client_peak = me.memory_info().rss
        long_pause_at = plan.slow_chunks * 3 // 10
        paused_for = 0.0
        pause_cpu = None  # the node's CPU share during the long pause: ~0 when it waits for the window

        async def sample() -> None:
            nonlocal client_peak
            while True:
                await trio.sleep(0.5)
                samples.append(served.memory_info().rss)
                client_peak = max(client_peak, me.memory_info().rss)

        async def on_chunk(n: int, response) -> None:
            nonlocal paused_for, pause_cpu
            data = response.data
            if type(data) is not dict or data.get("i") != n:
                raise RuntimeError(f"chunk {n} out of order: {str(data)[:60]}")
            if n == long_pause_at:
                paused_for += plan.slow_long_pause
                cpu_before, t_before = served.cpu_times(), time.perf_counter()
                await trio.sleep(plan.slow_long_pause)
                cpu_after, t_after = served.cpu_times(), time.perf_counter()
                used = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
                pause_cpu = used / (t_after - t_before)
            elif n % plan.slow_every == 0:
                paused_for += plan.slow_pause
                await trio.sleep(plan.slow_pause)

        result: dict[str, Any] = {}
        error = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            try:
                result = await _stream_all(client, node.multiaddr, "flood", plan.slow_chunks, 100, on_chunk)
            except Exception as exc:  # a dead stream is a finding, not a crash of the bench
                error = exc
            nursery.cancel_scope.cancel()
        await trio.sleep(0.5)
        rss_end = served.memory_info().rss
    samples.append(rss_end)
    peak = max(samples)
    growth = (peak - rss_start) / MIB
    chunks = result.get("chunks", 0)
    ok = error is None and result.get("complete") and result.get("in_order")
    if not ok:
        why = f"{type(error).__name__}: {error}" if error else f"{chunks} chunks, in order {result.get('in_order')}"
        report.failures.append(f"slow consumer {codec}: {why}")
    passed = bool(ok) and growth <= TARGET_RSS_GROWTH_MIB
    arrived = f"{chunks:,} in order" if ok else f"FAILED ({chunks:,})"
    seconds = result.get("seconds", 0.0)
    report.add(Row(
        "slow", codec,
        {"codec": codec, "chunks": chunks, "all_in_order": bool(ok), "rss_start_mib": round(rss_start / MIB, 1),
         "rss_peak_mib": round(peak / MIB, 1), "rss_end_mib": round(rss_end / MIB, 1),
         "rss_growth_mib": round(growth, 1), "client_rss_peak_mib": round(client_peak / MIB, 1),
         "seconds": round(seconds, 1), "paused_s": round(paused_for, 1), "samples": len(samples),
         "node_cpu_in_long_pause": None if pause_cpu is None else round(pause_cpu, 4),
         "error": str(error) if error else None},
        f"{codec:<8} {arrived:<19} node RSS MiB {rss_start / MIB:5.1f} start {peak / MIB:5.1f} peak "
        f"{rss_end / MIB:5.1f} end; CPU {'?' if pause_cpu is None else f'{pause_cpu:.1%}'} in long pause",
        f"growth <= {TARGET_RSS_GROWTH_MIB:g} MiB", passed))


# --- the command ---------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="olane bench",
        description="Benchmark the olane runtime: raw py-libp2p baseline, node -> client throughput, "
                    "first-frame latency, and node RSS under a slow consumer, for JSON and msgpack frames. "
                    "The node runs in its own process on 127.0.0.1.",
    )
    parser.add_argument("--quick", action="store_true", help="about 10x smaller counts (a smoke test)")
    parser.add_argument("--only", action="append", metavar="SECTION", default=None,
                        help=f"run only these sections (repeatable or comma-separated): {', '.join(SECTIONS)}")
    parser.add_argument("--json", action="store_true", help="also print a machine-readable summary (last line)")
    parser.add_argument("--soak", action="store_true",
                        help="run the soak (same as --only soak): fuzzed frames, 10,000 sequential connections, "
                             "a request hog and partial-frame holders against `olane node --tools demo`")
    parser.add_argument("--network", action="store_true",
                        help="run the network section (same as --only network): direct vs 1 and 2 relays, "
                             "a relay under 100 slow streams, a leader with 200 nodes joining and leaving")
    parser.add_argument("--frames", type=int, default=None, metavar="N", help="soak: fuzzed frames (default 100,000)")
    parser.add_argument("--connections", type=int, default=None, metavar="N",
                        help="soak: sequential connections (default 10,000)")
    parser.add_argument("--compare", action="store_true",
                        help="also run the comparison: ours vs raw py-libp2p (64 frames per write) and grpcio "
                             "(pip install .[bench]), interleaved, as ratios next to the targets")
    args = parser.parse_args(argv)
    if args.soak:
        args.only = list(args.only or []) + ["soak"]
    if args.network:
        args.only = list(args.only or []) + ["network"]
    if args.only:
        wanted = [s.strip() for item in args.only for s in item.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in SECTIONS]
        if unknown:
            parser.error(f"unknown section {', '.join(unknown)} (choose from {', '.join(SECTIONS)})")
        args.only = wanted
    return args


def _median_note(plan: Plan) -> str:
    return f"; median of {plan.repeats} runs" if plan.repeats > 1 else ""


def _run_sections(sections: list[str], plan: Plan, report: Report, *, quick: bool = False,
                  frames: int | None = None, connections: int | None = None) -> None:
    import trio

    def run(title: str, body) -> None:
        print(f"\n{title}", flush=True)
        try:
            with ServedNode() as node:
                narrate(f"bench node pid {node.pid} at {node.multiaddr}")
                trio.run(body, node)
        except Exception as exc:
            report.failures.append(f"{title.split(':')[0]}: {type(exc).__name__}: {exc}")
            print(f"  failed: {type(exc).__name__}: {exc}", flush=True)

    if "baseline" in sections:
        run(f"baseline: raw py-libp2p stream (Noise + Yamux), one write per message, no olane framing"
            f"{_median_note(plan)}",
            lambda node: _section_baseline(node, plan, report))
    if "throughput" in sections:
        run(f"throughput: node -> client, one chunk per frame; 100 B = chunk data size, 64 KiB = raw bytes"
            f"{_median_note(plan)}",
            lambda node: _section_throughput(node, plan, report))
        raw = {r.name: r.figures for r in report.rows if r.section == "baseline"}
        if raw.get("raw_100", {}).get("msgs_per_s"):
            for r in report.rows:
                if r.section == "throughput" and r.figures["chunk_bytes"] == 100:
                    print(f"  {r.figures['codec']}: {r.figures['chunks_per_s'] / raw['raw_100']['msgs_per_s']:.1f}x "
                          f"the raw one-write-per-message rate (frames coalesced into few writes)", flush=True)
    if "latency" in sections:
        run("latency: call start -> first frame, one connection, streams pooled between calls",
            lambda node: _section_latency(node, plan, report))
    if "many" in sections:
        run(f"many streams: {plan.many_streams} concurrent calls x {plan.many_chunks:,} x 100 B chunks on one "
            f"connection; first chunk counted from the common start{_median_note(plan)}",
            lambda node: _section_many(node, plan, report))
    if "compare" in sections:
        from .compare import ComparePlan, run_compare

        cplan = ComparePlan.quick() if plan.repeats == 1 else ComparePlan()
        print(f"\ncompare: ours vs raw py-libp2p and grpcio, {cplan.rounds} interleaved rounds; 100 B x {cplan.small:,}, "
              f"64 KiB x {cplan.large:,}, unary x {cplan.unary}; every server in its own process on 127.0.0.1",
              flush=True)
        try:
            run_compare(cplan, report)
        except Exception as exc:
            report.failures.append(f"compare: {type(exc).__name__}: {exc}")
            print(f"  failed: {type(exc).__name__}: {exc}", flush=True)
    if "slow" in sections:
        print(f"\nslow consumer: {plan.slow_chunks:,} x 100 B chunks; reader sleeps {plan.slow_pause * 1000:g} ms "
              f"every {plan.slow_every:,} chunks and {plan.slow_long_pause:g} s once (at chunk "
              f"{plan.slow_chunks * 3 // 10:,}); node RSS sampled every 0.5 s, fresh node per codec", flush=True)
        for codec in CODECS:
            try:
                with ServedNode() as node:
                    narrate(f"bench node pid {node.pid} at {node.multiaddr}")
                    trio.run(_section_slow, node, codec, plan, report)
            except Exception as exc:
                report.failures.append(f"slow consumer {codec}: {type(exc).__name__}: {exc}")
                print(f"  {codec:<8} failed: {type(exc).__name__}: {exc}", flush=True)

    if "bidirectional" in sections or "compression" in sections:
        from .extensions import run as run_extensions

        run_extensions(sections, quick, report)

    if "live" in sections:
        from .live import LivePlan, section_live

        lplan = LivePlan.quick() if quick else LivePlan()
        run(f"live streams: resumable {lplan.resume_chunks:,} chunks at {lplan.resume_rate:,}/s with its connection "
            f"killed {lplan.kills} times; taps on a {lplan.paced_chunks:,}-chunk stream paced at {lplan.paced_rate:,}/s "
            f"(0, 3 with one slow, 10 taps) and on a {lplan.tap_chunks:,} x 100 B flood (1, 10, 100 taps); taps read by "
            f"another process", lambda node: section_live(node, lplan, report))
    if "network" in sections:
        from .network import NetworkPlan, run_network

        run_network(NetworkPlan.quick() if quick else NetworkPlan(), report)
    if "soak" in sections:
        from .soak import SoakPlan, run_soak

        soak_plan = SoakPlan.quick() if quick else SoakPlan()
        if frames is not None:
            soak_plan.frames = frames
        if connections is not None:
            soak_plan.connections = connections
        run_soak(soak_plan, report)

def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return _serve()
    args = _parse(argv)
    sections = [s for s in SECTIONS if (s in args.only if args.only else s in DEFAULT_SECTIONS)]
    if args.compare and "compare" not in sections:
        sections.append("compare")
    plan = Plan.quick() if args.quick else Plan()
    try:
        from importlib.metadata import version

        libp2p_version = version("libp2p")
    except Exception:
        libp2p_version = "?"
    print(f"olane bench{' --quick' if args.quick else ''}: py-libp2p {libp2p_version}, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs; node in its own process on 127.0.0.1; "
          f"load average {os.getloadavg()[0]:.2f}; MB = 10^6 bytes", flush=True)
    report = Report()
    started = time.monotonic()
    try:
        _run_sections(sections, plan, report, quick=args.quick, frames=args.frames, connections=args.connections)
    except BaseException as exc:
        if not is_interrupt(exc):
            raise
        print("\ninterrupted", flush=True)
        return 130

    targets = [r for r in report.rows if r.passed is not None]
    passes = sum(1 for r in targets if r.passed)
    elapsed = time.monotonic() - started
    print(f"\nsummary: {passes} PASS, {len(targets) - passes} MISS of {len(targets)} targets; "
          f"{len(report.failures)} failures; {elapsed:.0f} s; load average {os.getloadavg()[0]:.2f} "
          f"(other busy processes lower the figures)", flush=True)
    for failure in report.failures:
        print(f"  failure: {failure}", flush=True)
    if args.json:
        print(json.dumps({
            "quick": args.quick, "sections": sections, "seconds": round(elapsed, 1),
            "libp2p": libp2p_version, "python": platform.python_version(), "cpus": os.cpu_count(),
            "rows": [{"section": r.section, "name": r.name, **r.figures, "target": r.target or None,
                      "verdict": r.verdict or None} for r in report.rows],
            "failures": report.failures,
        }), flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
