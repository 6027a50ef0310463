"""Raw py-libp2p in processes of its own, for `olane bench --compare`: what a user
who picks py-libp2p instead of us gets.

Our node runtime changes py-libp2p process-wide (node_runtime/libp2p_fixes.py,
fixes 5-7: Yamux window updates, Yamux locks, TCP read-ahead; fix 4, protocol
selection, per host), so raw py-libp2p measured in our bench client against our
bench node is py-libp2p *with our fixes*. Here both ends are plain: a server
(`python -m benchmarks.raw serve`) and a client (`python -m benchmarks.raw
client MULTIADDR COUNT SIZE PER_WRITE`), each a process that applies none of
the fixes (each checks `libp2p_fixes.process_wide_fixes()` before it
measures), on a host built like ours (Noise, Yamux, one connection per peer:
`host.new_olane_host`, which patches nothing). `--fixed` applies fixes 4-8 and 10 on
both, for a like-for-like check of what the fixes alone give (fixes 1-3 are
about limits and safety; neither side needs them here).

The handler and the transfer are those of the bench node's raw protocol
(benchmarks/runtime.py), so the figures compare with its raw rows.
"""
from __future__ import annotations

import json
import os
import sys
import time

from .common import ServedNode, serve_until_stopped
from .runtime import RAW_PROTOCOL, _raw_handler, raw_transfer


def _host(fixed: bool):
    from node_runtime.host import key_pair_from_seed, new_olane_host

    host = new_olane_host(key_pair_from_seed(None))
    if fixed:
        from node_runtime.libp2p_fixes import (answer_protocol_select_at_once, fair_yamux_writes,
                                               pipeline_protocol_select, quick_yamux_locks, tcp_read_ahead,
                                               window_updates_go_style)

        pipeline_protocol_select(host)
        answer_protocol_select_at_once(host)
        window_updates_go_style()
        quick_yamux_locks()
        tcp_read_ahead()
        fair_yamux_writes()
    return host


def serve(fixed: bool) -> int:
    """`serve [--fixed]`: a bare py-libp2p host serving the raw protocol on 127.0.0.1."""
    import multiaddr
    import trio
    from libp2p.custom_types import TProtocol

    from node_runtime.libp2p_fixes import process_wide_fixes

    parent = os.getppid()

    async def go() -> None:
        host = _host(fixed)
        if bool(process_wide_fixes()) != fixed:
            raise RuntimeError(f"the raw server runs with fixes {process_wide_fixes()}")
        async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            host.set_stream_handler(TProtocol(RAW_PROTOCOL), _raw_handler)
            addr = f"{host.get_addrs()[0]}"
            if "/p2p/" not in addr:
                addr = f"{addr}/p2p/{host.get_id().to_string()}"
            await serve_until_stopped(parent, addr)

    trio.run(go)
    return 0


def client(address: str, count: int, size: int, per_write: int, fixed: bool) -> int:
    """`client MA COUNT SIZE PER_WRITE [--fixed]`: connect, warm up, ask for `count`
    messages of `size` bytes, `per_write` per write; print one JSON line."""
    import multiaddr
    import trio
    from libp2p.peer.peerinfo import info_from_p2p_addr

    from node_runtime.libp2p_fixes import process_wide_fixes

    async def go() -> dict:
        host = _host(fixed)
        info = info_from_p2p_addr(multiaddr.Multiaddr(address))
        async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            with trio.fail_after(30):
                await host.connect(info)
                await raw_transfer(host, info.peer_id, min(count, 1000), size, per_write)  # warm up
                seconds, received = await raw_transfer(host, info.peer_id, count, size, per_write)
        return {"seconds": seconds, "received": received, "fixes": process_wide_fixes()}

    print(json.dumps(trio.run(go)), flush=True)
    return 0


class RawServer(ServedNode):
    """The stock raw py-libp2p server in its own process."""

    command = ("-m", "benchmarks.raw", "serve")
    name = "raw py-libp2p server"


def run_client(address: str, count: int, size: int, per_write: int, fixed: bool = False,
               timeout: float = 120.0) -> tuple[float, int]:
    """(seconds, bytes received) of one transfer by a raw client process of its own."""
    import subprocess

    args = [sys.executable, "-m", "benchmarks.raw", "client", address, str(count), str(size), str(per_write)]
    if fixed:
        args.append("--fixed")
    done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"raw client failed ({done.returncode}): {done.stderr[-1000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if bool(out["fixes"]) != fixed:
        raise RuntimeError(f"the raw client ran with fixes {out['fixes']} (asked: {'all' if fixed else 'none'})")
    return out["seconds"], out["received"]


if __name__ == "__main__":
    argv = sys.argv[1:]
    fixed = "--fixed" in argv
    argv = [a for a in argv if a != "--fixed"]
    if argv[:1] == ["serve"]:
        sys.exit(serve(fixed))
    if argv[:1] == ["client"] and len(argv) == 5:
        sys.exit(client(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), fixed))
    print("usage: python -m benchmarks.raw serve [--fixed] | client MA COUNT SIZE PER_WRITE [--fixed]",
          file=sys.stderr)
    sys.exit(2)
