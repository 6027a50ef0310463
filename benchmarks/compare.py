"""`olane bench --compare`: ours against what users would pick instead, in one
run, interleaved (round after round, each round measures every contender once),
printed as ratios next to the targets of issue 14.

Contenders (each serving side in its own process on 127.0.0.1):
- ours: the bench node (`benchmarks.runtime serve`), one chunk per frame (JSON,
  msgpack) and batched (several chunks per frame, negotiated through identify);
- raw py-libp2p on the same node: 100-byte messages, 64 per write (what a
  hand-coalescing py-libp2p user gets), and 64 KiB messages one per write.
  These run in our bench processes, so with our py-libp2p fixes 4-8 and 10
  (node_runtime/libp2p_fixes.py: they apply process-wide and speed raw
  py-libp2p up too): "raw + our fixes";
- raw py-libp2p stock (benchmarks/raw.py): the same transfers (100 B, 64 per
  write; 64 KiB, one per write) between a server and a client process of their
  own that apply none of the fixes, what a user who picks py-libp2p instead of
  us gets: "raw stock";
- grpcio (`pip install .[bench]`): server streaming of 100 B and 64 KiB
  messages and a unary call, served by generic handlers (no generated code)
  with bytes in and out, sync client.

Figures per round; the ratios are medians of the per-round ratios (both sides
of a ratio measured back to back, so load changes hurt both alike).
"""
from __future__ import annotations

import os
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from .common import Report, Row, ServedNode, narrate, percentile

KIB = 1024
MB = 1_000_000

# targets of issue 14, as ratios in one run (and two absolute ones)
TARGET_SMALL_VS_RAW64 = 0.8  # ours 100 B chunks / raw py-libp2p with 64 frames per write
TARGET_BATCHED_CHUNKS_PER_S = 500_000
TARGET_LARGE_MSGPACK_MB_PER_S = 250.0
TARGET_UNARY_VS_REUSED = 1.3  # use() p50 / the same request on one reused stream
TARGET_UNARY_VS_GRPC = 1.5  # use() p50 / grpcio sync unary p50

GRPC_SERVICE = "olane.bench.Bench"


@dataclass
class ComparePlan:
    rounds: int = 3
    small: int = 100_000
    large: int = 2_000
    unary: int = 500

    @classmethod
    def quick(cls) -> "ComparePlan":
        return cls(rounds=1, small=10_000, large=200, unary=50)


# --- the grpc server process -----------------------------------------------------------


def grpc_serve() -> int:
    """The hidden `grpc-serve` command: a grpcio server on 127.0.0.1, generic handlers, bytes in and out."""
    from concurrent import futures

    import grpc

    def stream(request: bytes, context):
        count, size = (int(x) for x in request.split())
        message = b"\x00" * size
        for _ in range(count):
            yield message

    def ping(request: bytes, context) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(GRPC_SERVICE, {
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Ping": grpc.unary_unary_rpc_method_handler(ping),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening 127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    parent = os.getppid()
    while not stop.wait(1):
        if os.getppid() != parent:
            break
    server.stop(0)
    return 0


class GrpcServer(ServedNode):
    command = ("-m", "benchmarks.compare", "grpc-serve")
    name = "grpc server"


class GrpcClient:
    """The sync grpcio client (what a grpc user writes), run in a worker thread."""

    def __init__(self, address: str) -> None:
        import grpc

        self.channel = grpc.insecure_channel(address)
        self.stream = self.channel.unary_stream(f"/{GRPC_SERVICE}/Stream")
        self.ping = self.channel.unary_unary(f"/{GRPC_SERVICE}/Ping")
        grpc.channel_ready_future(self.channel).result(timeout=10)

    def transfer(self, count: int, size: int) -> tuple[float, int, int]:
        started = time.perf_counter()
        n = received = 0
        for message in self.stream(f"{count} {size}".encode()):
            n += 1
            received += len(message)
        return time.perf_counter() - started, n, received

    def unary(self, calls: int) -> list[float]:
        out = []
        for _ in range(calls):
            started = time.perf_counter()
            self.ping(b"ping")
            out.append(time.perf_counter() - started)
        return out

    def close(self) -> None:
        self.channel.close()


# --- ours, raw and a reused stream --------------------------------------------------------


async def _ours(client, multiaddr: str, method: str, count: int, size: int) -> tuple[float, bool]:
    """(seconds, True); a lost or misplaced chunk is a failure of the bench, not a figure."""
    from .runtime import _stream_all

    r = await _stream_all(client, multiaddr, method, count, size)
    if not (r["complete"] and r["in_order"]):
        raise RuntimeError(f"{method} x {count}: {r['chunks']} chunks arrived, in order: {r['in_order']}")
    return r["seconds"], True


async def _reused_stream_unary(client, peer_id, calls: int) -> list[float]:
    """`ping` requests one after another on one stream (what stream reuse could give)."""
    from libp2p.custom_types import TProtocol

    from node_runtime import codec
    from node_runtime.framing import FrameDecoder, frame
    from node_runtime.messages import route_request

    from .runtime import BENCH_ADDRESS

    stream = await client.host.new_stream(peer_id, [TProtocol("/o/bench")])
    decoder = FrameDecoder()
    out = []
    try:
        for k in range(calls):
            request = frame(codec.encode(route_request(
                BENCH_ADDRESS, "ping", {}, request_id=f"reuse-{k}", connection_id=client.connection_id,
                caller_address=client.address.value, streaming=False)))
            started = time.perf_counter()
            await stream.write(request)
            got: list[bytes] = []
            while not got:
                got = decoder.feed(await stream.read(65536))
            out.append(time.perf_counter() - started)
    finally:
        await stream.reset()
    return out


def _p50(values: list[float]) -> float:
    return percentile(values, 50)


async def _round(node: ServedNode, raw_stock: ServedNode, grpc_client: GrpcClient | None, plan: ComparePlan,
                 figures: dict[str, list]) -> None:
    import trio

    from node_runtime import Client
    from node_runtime.host import parse_peer_multiaddr

    from .raw import run_client as run_raw_client
    from .runtime import _raw_transfer

    def add(key: str, value: Any) -> None:
        figures.setdefault(key, []).append(value)

    ma = node.multiaddr
    peer_id = parse_peer_multiaddr(ma).peer_id
    async with Client(codec="json") as json_client, Client(codec="msgpack") as mp_client, \
            Client(codec="msgpack", batch=True) as batched, Client(codec="json", batch=True) as batched_json:
        for c in (json_client, mp_client, batched, batched_json):
            await c.connect(ma)
            await _ours(c, ma, "flood", 1000, 100)  # warm up, learn identify
        await _raw_transfer(json_client, peer_id, 1000, 100, 64)

        # 100-byte chunks: raw 64 per write, ours unbatched and batched, grpc
        seconds, received = await _raw_transfer(json_client, peer_id, plan.small, 100, 64)
        add("raw64_100", plan.small / seconds if received == plan.small * 100 else 0.0)
        seconds, received = await trio.to_thread.run_sync(run_raw_client, raw_stock.multiaddr, plan.small, 100, 64)
        add("raw64_100_stock", plan.small / seconds if received == plan.small * 100 else 0.0)
        for key, c in (("json_100", json_client), ("msgpack_100", mp_client), ("batched_msgpack_100", batched),
                       ("batched_json_100", batched_json)):
            seconds, ok = await _ours(c, ma, "flood", plan.small, 100)
            add(key, plan.small / seconds if ok else 0.0)
        if grpc_client is not None:
            seconds, n, _ = await trio.to_thread.run_sync(grpc_client.transfer, plan.small, 100)
            add("grpc_100", n / seconds if n == plan.small else 0.0)

        # 64 KiB chunks: MB/s of data
        size = 64 * KIB
        seconds, received = await _raw_transfer(json_client, peer_id, plan.large, size, 1)
        add("raw_64k", received / MB / seconds)
        seconds, received = await trio.to_thread.run_sync(run_raw_client, raw_stock.multiaddr, plan.large, size, 1)
        add("raw_64k_stock", received / MB / seconds)
        for key, c in (("msgpack_64k", mp_client), ("json_64k", json_client)):
            seconds, ok = await _ours(c, ma, "blob", plan.large, size)
            add(key, plan.large * size / MB / seconds if ok else 0.0)
        if grpc_client is not None:
            seconds, n, received = await trio.to_thread.run_sync(grpc_client.transfer, plan.large, size)
            add("grpc_64k", received / MB / seconds)

        # unary: use() (streams pooled between calls), one raw stream reused by hand, grpc
        from .runtime import BENCH_ADDRESS

        for _ in range(20):
            await mp_client.use(BENCH_ADDRESS, "ping", via=ma)
        times = []
        for _ in range(plan.unary):
            started = time.perf_counter()
            await mp_client.use(BENCH_ADDRESS, "ping", via=ma)
            times.append(time.perf_counter() - started)
        add("unary_use", times)
        add("unary_reused", await _reused_stream_unary(mp_client, peer_id, plan.unary))
        if grpc_client is not None:
            grpc_client.unary(20)
            add("unary_grpc", await trio.to_thread.run_sync(grpc_client.unary, plan.unary))


def _ratio(figures: dict[str, list], a: str, b: str, *, lower_is_better: bool = False) -> float | None:
    """Median over rounds of a/b (for latencies: p50 a / p50 b)."""
    xs, ys = figures.get(a), figures.get(b)
    if not xs or not ys:
        return None
    ratios = []
    for x, y in zip(xs, ys):
        if isinstance(x, list):
            x, y = _p50(x), _p50(y)
        if x and y:
            ratios.append(x / y)
    return statistics.median(ratios) if ratios else None


def run_compare(plan: ComparePlan, report: Report) -> None:
    import trio

    try:
        import grpc  # noqa: F401
        have_grpc = True
    except ImportError:
        have_grpc = False
        print("  grpcio is not installed (pip install .[bench]): grpc figures are left out", flush=True)
    figures: dict[str, list] = {}
    grpc_ctx = GrpcServer() if have_grpc else None
    from .raw import RawServer

    with ServedNode() as node, RawServer() as raw_stock:
        narrate(f"bench node pid {node.pid} at {node.multiaddr}; stock raw py-libp2p server pid {raw_stock.pid}")
        grpc_server = grpc_ctx.__enter__() if grpc_ctx is not None else None
        try:
            grpc_client = GrpcClient(grpc_server.multiaddr) if grpc_server is not None else None
            try:
                for k in range(plan.rounds):
                    narrate(f"compare round {k + 1} of {plan.rounds} (load average {os.getloadavg()[0]:.2f})")
                    trio.run(_round, node, raw_stock, grpc_client, plan, figures)
            finally:
                if grpc_client is not None:
                    grpc_client.close()
        finally:
            if grpc_ctx is not None:
                grpc_ctx.__exit__(None, None, None)
    _print(figures, plan, report)


def _print(figures: dict[str, list], plan: ComparePlan, report: Report) -> None:
    def med(key: str) -> float:
        values = figures.get(key) or []
        return statistics.median(values) if values else float("nan")

    for key, what in (("raw64_100_stock", "raw py-libp2p stock, 64 x 100 B/write"),
                      ("raw64_100", "raw + our fixes, 64 x 100 B/write"), ("json_100", "ours json, 1 chunk/frame"),
                      ("msgpack_100", "ours msgpack, 1 chunk/frame"), ("batched_msgpack_100", "ours msgpack, batched"),
                      ("batched_json_100", "ours json, batched"), ("grpc_100", "grpcio server streaming")):
        if key in figures:
            per_round = ", ".join(f"{v:,.0f}" for v in figures[key])
            passed = None
            target = ""
            if key.startswith("batched_"):
                passed = med(key) >= TARGET_BATCHED_CHUNKS_PER_S
                target = f">= {TARGET_BATCHED_CHUNKS_PER_S:,} chunks/s"
            report.add(Row("compare", key, {"per_s": round(med(key)), "rounds": [round(v) for v in figures[key]]},
                           f"100 B  {what:<36} {med(key):>10,.0f} msg/s  (rounds: {per_round})", target, passed))
    for key, what in (("raw_64k_stock", "raw py-libp2p stock, 1 x 64 KiB/write"),
                      ("raw_64k", "raw + our fixes, 1 x 64 KiB/write"), ("msgpack_64k", "ours msgpack"),
                      ("json_64k", "ours json (base64)"), ("grpc_64k", "grpcio server streaming")):
        if key in figures:
            per_round = ", ".join(f"{v:.0f}" for v in figures[key])
            passed = None
            target = ""
            if key == "msgpack_64k":
                passed = med(key) >= TARGET_LARGE_MSGPACK_MB_PER_S
                target = f">= {TARGET_LARGE_MSGPACK_MB_PER_S:g} MB/s"
            report.add(Row("compare", key, {"mb_per_s": round(med(key), 1), "rounds": [round(v, 1) for v in figures[key]]},
                           f"64 KiB {what:<36} {med(key):>10.1f} MB/s   (rounds: {per_round})", target, passed))
    for key, what in (("unary_use", "ours use(), pooled stream"), ("unary_reused", "ours, one reused stream"),
                      ("unary_grpc", "grpcio sync unary")):
        if key in figures:
            values = [v for run in figures[key] for v in run]
            p50, p99 = _p50(values) * 1000, percentile(values, 99) * 1000
            report.add(Row("compare", key, {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "calls": len(values)},
                           f"unary  {what:<36} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  ({len(values)} calls)"))

    print("\n  ratios (median of per-round ratios, both sides measured back to back):", flush=True)
    for name, a, b, target, higher in (
        ("ours json 100 B / raw stock", "json_100", "raw64_100_stock", TARGET_SMALL_VS_RAW64, True),
        ("ours msgpack 100 B / raw stock", "msgpack_100", "raw64_100_stock", TARGET_SMALL_VS_RAW64, True),
        ("ours batched msgpack / raw stock", "batched_msgpack_100", "raw64_100_stock", TARGET_SMALL_VS_RAW64, True),
        ("ours batched json / raw stock", "batched_json_100", "raw64_100_stock", TARGET_SMALL_VS_RAW64, True),
        ("ours batched msgpack / raw + our fixes", "batched_msgpack_100", "raw64_100", TARGET_SMALL_VS_RAW64, True),
        ("ours batched json / raw + our fixes", "batched_json_100", "raw64_100", TARGET_SMALL_VS_RAW64, True),
        ("raw + our fixes / raw stock", "raw64_100", "raw64_100_stock", None, True),
        ("grpcio 100 B / ours msgpack", "grpc_100", "msgpack_100", None, True),
        ("grpcio 100 B / ours batched msgpack", "grpc_100", "batched_msgpack_100", None, True),
        ("ours msgpack 64 KiB / raw stock", "msgpack_64k", "raw_64k_stock", None, True),
        ("ours msgpack 64 KiB / raw + our fixes", "msgpack_64k", "raw_64k", None, True),
        ("ours msgpack 64 KiB / grpcio", "msgpack_64k", "grpc_64k", None, True),
        ("unary use() p50 / one reused stream", "unary_use", "unary_reused", TARGET_UNARY_VS_REUSED, False),
        ("unary use() p50 / grpcio sync", "unary_use", "unary_grpc", TARGET_UNARY_VS_GRPC, False),
    ):
        r = _ratio(figures, a, b)
        if r is None:
            continue
        if target is None:
            passed, target_text = None, ""
        elif higher:
            passed, target_text = r >= target, f">= {target:g}x"
        else:
            passed, target_text = r <= target, f"<= {target:g}x"
        report.add(Row("compare", f"ratio:{a}/{b}", {"ratio": round(r, 3), "target": target},
                       f"{name:<44} {r:6.2f}x", target_text, passed))


if __name__ == "__main__":
    if sys.argv[1:2] == ["grpc-serve"]:
        sys.exit(grpc_serve())
    sys.exit(2)
