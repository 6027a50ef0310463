"""`olane bench --network` (the `network` section of benchmarks/runtime.py):
networks measured, every role in its own process on 127.0.0.1.

- paths: a leader, alpha under it, beta under alpha (each serving the bench tool);
  chunks/s of 100 B chunks and first-frame latency p50/p99, direct (dialing
  the node) vs through 1 relay (leader -> alpha) and 2 relays (leader -> alpha
  -> beta). JSON frames on every hop, as TypeScript peers speak them.
- relay memory: 100 concurrent streams through the leader, each read slowly
  (one chunk every 10 ms) while the far tool could send 1 KB chunks flat out;
  the leader's RSS sampled every 0.5 s. Bounded: per relayed stream the relay
  holds one read, its writer's buffer and the next hop's Yamux receive window,
  capped at `Limits.relay_window_bytes` (py-libp2p would grow it to 16 MiB).
  The target: RSS growth at most the sum of those buffers over the streams.
- scale: a leader with 200 registered nodes (two processes of 100 nodes each;
  in the second, 20 nodes are replaced one at a time every 0.1 s: nodes join
  and leave all along) answering `search` (p50/p99) and routing `ping` to the
  stable nodes (p50/p99, errors), the registry's size and the leader's RSS.

`python -m benchmarks.network serve ROLE ...` is the hidden side: `leader`,
`node LEADER_MA PARENT ADDRESS`, `swarm LEADER_MA COUNT PREFIX CHURN`.
"""
from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import dataclass

from .common import Report, Row, ServedNode, narrate, percentile_ms, serve_until_stopped

MIB = 1024 * 1024

def relay_bound_mib(streams: int) -> float:
    """What a relay may hold for `streams` slow relayed streams, from its limits: per stream the
    next hop's receive window, one read (twice: the bytes and the frames cut from them) and the
    caller-side writer's buffer (stream_io.FrameWriter copies it while writing)."""
    from node_runtime import Limits

    limits = Limits()
    # the writer's buffer counts three times: the frames waiting, joined into one batch, a slice of it
    return streams * (limits.relay_window_bytes + 2 * limits.relay_read_bytes + 3 * limits.write_buffer_bytes) / MIB

#: routing to the stable nodes while others join and leave: every call answered
TARGET_ROUTED_ERRORS = 0


@dataclass
class NetworkPlan:
    chunks: int = 50_000
    latency_calls: int = 200
    streams: int = 100
    slow_seconds: float = 20.0
    swarm: int = 100  # nodes per swarm process (two processes)
    churn: int = 20  # nodes of the second swarm replaced one at a time
    scale_seconds: float = 10.0

    @classmethod
    def quick(cls) -> "NetworkPlan":
        return cls(chunks=5_000, latency_calls=20, streams=20, slow_seconds=3.0, swarm=10, churn=4, scale_seconds=3.0)


class Role(ServedNode):
    def __init__(self, *args: str, name: str, startup_timeout: float = 120.0) -> None:
        super().__init__(startup_timeout)
        self.command = ("-m", "benchmarks.network", "serve", *args)
        self.name = name


# --- the served side ----------------------------------------------------------------


def _serve(argv: list[str]) -> int:
    import trio

    from node_runtime import Node
    from node_runtime.joining import joined, nest
    from node_runtime.leader import Leader

    from .runtime import BenchTool

    parent_pid = os.getppid()

    async def until_stopped() -> None:
        await serve_until_stopped(parent_pid)

    async def member(lma: str, parent: str, address: str, started=None, stop=None,
                     task_status=trio.TASK_STATUS_IGNORED) -> None:
        tools, units = nest([BenchTool(address)], parent)
        async with Node(tools) as node, joined(node, lma, parent=parent, units=units, heartbeat=3600):
            task_status.started(node.listen_addrs[0])
            await (stop.wait() if stop is not None else trio.sleep_forever())

    role = argv[0]

    async def go() -> None:
        if role == "leader":
            async with Leader(ttl=60, heartbeat=5) as lead:
                print(f"listening {lead.listen_addrs[0]}", flush=True)
                await until_stopped()
        elif role == "node":
            lma, parent, address = argv[1:4]
            async with trio.open_nursery() as nursery:
                ma = await nursery.start(member, lma, parent, address)
                print(f"listening {ma}", flush=True)
                await until_stopped()
                nursery.cancel_scope.cancel()
        elif role == "swarm":
            lma, count, prefix, churn = argv[1], int(argv[2]), argv[3], int(argv[4])
            async with trio.open_nursery() as nursery:
                limit = trio.Semaphore(16)  # registrations at once

                async def start(i: int, stop=None) -> str:
                    async with limit:
                        return await nursery.start(member, lma, "o://leader", f"o://{prefix}{i}", None, stop)

                stops: dict[int, trio.Event] = {}
                first = []
                async with trio.open_nursery() as starting:
                    for i in range(count):
                        if i >= count - churn:
                            stops[i] = trio.Event()

                        async def one(i=i):
                            first.append(await start(i, stops.get(i)))
                        starting.start_soon(one)
                print(f"listening {first[0]}", flush=True)

                async def churning() -> None:  # replace the churn set's nodes one at a time
                    while stops:
                        for i in list(stops):
                            stops[i].set()
                            stops[i] = trio.Event()
                            await start(i, stops[i])
                            await trio.sleep(0.1)

                nursery.start_soon(churning)
                await until_stopped()
                nursery.cancel_scope.cancel()

    trio.run(go)
    return 0


# --- measuring -----------------------------------------------------------------------


def _rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


async def _rate(client, address: str, via: str, protocol: str | None, count: int) -> tuple[float, bool]:
    call = client.use_streaming(address, "flood", {"count": count, "size": 100}, via=via, protocol=protocol,
                                codec="json", timeout=300)
    started = time.perf_counter()
    expected, in_order = 1, True
    async for chunk in call:
        in_order &= chunk["i"] == expected
        expected += 1
    elapsed = time.perf_counter() - started
    return count / elapsed, in_order and expected == count + 1


async def _first_frames(client, address: str, via: str, protocol: str | None, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        call = client.use_streaming(address, "flood", {"count": 1, "size": 100}, via=via, protocol=protocol,
                                    codec="json", timeout=30)
        async with call:
            await call.next_response()
            out.append(time.monotonic() - call.started_at)
            async for _ in call.responses():
                pass
    return out


async def _paths(leader: Role, alpha: Role, beta: Role, plan: NetworkPlan, report: Report) -> None:
    import trio

    from node_runtime import Client

    lma = leader.multiaddr
    paths = [  # name, address, via, protocol
        ("direct (alpha)", "o://leader/alpha", alpha.multiaddr, None),
        ("1 relay", "o://leader/alpha", lma, "/o/leader"),
        ("direct (beta)", "o://leader/alpha/beta", beta.multiaddr, None),
        ("2 relays", "o://leader/alpha/beta", lma, "/o/leader"),
    ]
    async with Client(codec="json") as client:
        for _, address, via, protocol in paths:  # connections, codecs and one-time allocations first
            await _rate(client, address, via, protocol, 1000)
        rates = {}
        for name, address, via, protocol in paths:
            rate, ok = await _rate(client, address, via, protocol, plan.chunks)
            if not ok:
                report.failures.append(f"network paths {name}: chunks missing or out of order")
            firsts = await _first_frames(client, address, via, protocol, plan.latency_calls)
            rates[name] = rate
            f50, f99 = percentile_ms(firsts, 50), percentile_ms(firsts, 99)
            report.add(Row("network", f"path {name}", {
                "path": name, "chunks_per_s": round(rate), "first_frame_p50_ms": round(f50, 2),
                "first_frame_p99_ms": round(f99, 2), "in_order": ok},
                f"{name:<16} {rate:>9,.0f} chunks/s ({plan.chunks:,} x 100 B, in order: {ok})   first frame "
                f"p50 {f50:6.2f} ms  p99 {f99:6.2f} ms ({plan.latency_calls} calls)"))
        print(f"  routed / direct chunks/s: 1 relay {rates['1 relay'] / rates['direct (alpha)']:.2f}x, "
              f"2 relays {rates['2 relays'] / rates['direct (beta)']:.2f}x", flush=True)

        # 100 slow streams through the leader
        rss_start = _rss(leader.pid)
        samples: list[int] = []
        got = [0] * plan.streams

        async def slow(i: int) -> None:
            call = client.use_streaming("o://leader/alpha", "flood", {"count": 10**7, "size": 1000}, via=lma,
                                        protocol="/o/leader", codec="json")
            async with call:
                async for _ in call:
                    got[i] += 1
                    await trio.sleep(0.01)

        async with trio.open_nursery() as nursery:
            for i in range(plan.streams):
                nursery.start_soon(slow, i)
            deadline = trio.current_time() + plan.slow_seconds
            while trio.current_time() < deadline:
                await trio.sleep(0.5)
                samples.append(_rss(leader.pid))
            nursery.cancel_scope.cancel()
        await trio.sleep(1)
        rss_end = _rss(leader.pid)
        peak = max(samples)
        growth = (peak - rss_start) / MIB
        bound = relay_bound_mib(plan.streams)
        running = sum(1 for g in got if g)
        quarters = [samples[min(len(samples) - 1, k * len(samples) // 4)] / MIB for k in range(1, 5)]
        report.add(Row("network", "relay memory", {
            "streams": plan.streams, "streams_flowing": running, "chunks_read": sum(got),
            "rss_start_mib": round(rss_start / MIB, 1), "rss_peak_mib": round(peak / MIB, 1),
            "rss_quarters_mib": [round(q, 1) for q in quarters], "rss_end_mib": round(rss_end / MIB, 1),
            "growth_mib": round(growth, 1), "buffers_bound_mib": round(bound, 1)},
            f"relay RSS, {plan.streams} slow streams ({running} flowing, {sum(got):,} chunks read in "
            f"{plan.slow_seconds:g} s): {rss_start / MIB:.1f} MiB start, then "
            f"{' / '.join(f'{q:.1f}' for q in quarters)} at each quarter, {rss_end / MIB:.1f} after: {growth:+.1f} MiB",
            f"<= +{bound:.0f} MiB", growth <= bound))
        print(f"  (target: the buffers a relay may hold for {plan.streams} streams by its limits)", flush=True)


async def _scale(leader: Role, plan: NetworkPlan, report: Report, registered_in: float) -> None:
    import trio

    from node_runtime import Client, OlaneError

    lma = leader.multiaddr
    stable = [f"o://leader/s{i}" for i in range(plan.swarm)]
    searches: list[float] = []
    routed: list[float] = []
    errors: list[str] = []
    sizes: list[int] = []
    peers_seen: list[set] = []
    async with Client(leader=lma, codec="json") as client:
        deadline = trio.current_time() + plan.scale_seconds

        async def search() -> None:
            while trio.current_time() < deadline:
                t = time.perf_counter()
                await client.use("o://registry", "search", {"staticAddress": f"o://c{random.randrange(plan.swarm)}"},
                                 timeout=10)
                searches.append(time.perf_counter() - t)

        async def route() -> None:
            while trio.current_time() < deadline:
                t = time.perf_counter()
                try:
                    await client.use(random.choice(stable), "ping", {}, timeout=10)
                    routed.append(time.perf_counter() - t)
                except OlaneError as exc:
                    errors.append(f"{exc.code} {exc.message}")

        async def registry() -> None:
            while trio.current_time() < deadline:
                entries = await client.use("o://registry", "find_all", {}, timeout=10)
                sizes.append(len(entries))
                peers_seen.append({(e.get("address"), e.get("peerId")) for e in entries})
                await trio.sleep(1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(registry)
            for _ in range(2):
                nursery.start_soon(search)
                nursery.start_soon(route)
    churned = set().union(*peers_seen) - peers_seen[0] if peers_seen else set()
    rss = _rss(leader.pid)
    s50, s99 = percentile_ms(searches, 50), percentile_ms(searches, 99)
    r50, r99 = percentile_ms(routed, 50), percentile_ms(routed, 99)
    report.add(Row("network", "scale search", {
        "nodes": 2 * plan.swarm, "registered_in_s": round(registered_in, 1), "searches": len(searches),
        "search_p50_ms": round(s50, 2), "search_p99_ms": round(s99, 2),
        "registry_min": min(sizes, default=0), "registry_max": max(sizes, default=0),
        "joins_seen": len(churned), "leader_rss_mib": round(rss / MIB, 1)},
        f"{2 * plan.swarm} nodes (registered in {registered_in:.1f} s), {plan.churn} replaced one by one every "
        f"0.1 s: search p50 {s50:.2f} ms p99 {s99:.2f} ms ({len(searches):,} calls); "
        f"registry {min(sizes, default=0)}-{max(sizes, default=0)} entries, {len(churned)} new entries seen; "
        f"leader RSS {rss / MIB:.1f} MiB"))
    report.add(Row("network", "scale routing", {
        "calls": len(routed), "routed_p50_ms": round(r50, 2), "routed_p99_ms": round(r99, 2),
        "errors": len(errors), "first_error": errors[0] if errors else None},
        f"routed ping to stable nodes meanwhile: p50 {r50:.2f} ms p99 {r99:.2f} ms "
        f"({len(routed):,} calls, {len(errors)} errors{': ' + errors[0] if errors else ''})",
        f"errors = {TARGET_ROUTED_ERRORS}", len(errors) <= TARGET_ROUTED_ERRORS))


async def _wait_registered(lma: str, wanted: int, timeout: float) -> None:
    import trio

    from node_runtime import Client

    async with Client(leader=lma) as client:
        with trio.fail_after(timeout):
            while len(await client.use("o://registry", "find_all", {}, timeout=10)) < wanted:
                await trio.sleep(0.2)


def run_network(plan: NetworkPlan, report: Report) -> None:
    import trio

    print(f"\nnetwork: leader, alpha under it, beta under alpha, each its own process; JSON frames; "
          f"{plan.chunks:,} x 100 B per rate, {plan.latency_calls} calls per latency", flush=True)
    try:
        with Role("leader", name="leader") as leader:
            with Role("node", leader.multiaddr, "o://leader", "o://alpha", name="alpha") as alpha, \
                    Role("node", leader.multiaddr, "o://leader/alpha", "o://beta", name="beta") as beta:
                narrate(f"leader pid {leader.pid}, alpha pid {alpha.pid}, beta pid {beta.pid}")
                trio.run(_paths, leader, alpha, beta, plan, report)
    except Exception as exc:
        report.failures.append(f"network paths: {type(exc).__name__}: {exc}")
        print(f"  failed: {type(exc).__name__}: {exc}", flush=True)

    print(f"\nnetwork scale: a leader, {2 * plan.swarm} nodes in two processes ({plan.churn} of them replaced one at "
          f"a time all along); {plan.scale_seconds:g} s of search and routed ping, 2 callers each", flush=True)
    try:
        with Role("leader", name="leader") as leader:
            started = time.monotonic()
            with Role("swarm", leader.multiaddr, str(plan.swarm), "s", "0", name="swarm s"), \
                    Role("swarm", leader.multiaddr, str(plan.swarm), "c", str(plan.churn), name="swarm c"):
                trio.run(_wait_registered, leader.multiaddr, 2 * plan.swarm + 1 - plan.churn, 180.0)
                trio.run(_scale, leader, plan, report, time.monotonic() - started)
    except Exception as exc:
        report.failures.append(f"network scale: {type(exc).__name__}: {exc}")
        print(f"  failed: {type(exc).__name__}: {exc}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        sys.exit(_serve(sys.argv[2:]))
    sys.exit(2)
