"""`o://metrics`: live CPU, memory, network and disk figures of the machine the
node runs on (psutil).

`watch` contract: sample n (1-based) is taken at start + n * intervalMs, on a
grid computed from the start time (`trio.sleep_until`), so intervals do not
drift; its rates (CPU %, bytes/s) cover the interval since the previous sample
(the first one: since the call started). A consumer slower than the interval
makes the tool skip grid points rather than send a burst of stale samples;
`sample` still counts 1, 2, 3 ... and `missed` says how many were skipped.
`count` = 0 streams until the caller cancels; otherwise the final data is
{samples, missed}.

Sample shape: {sample, timestamp (ISO, UTC), time (epoch s), elapsedSeconds,
cpu: {percent, perCpu, count, load1/5/15}, memory: {total, available, used,
percent, swapPercent}, network: {bytesSent, bytesRecv, sentPerSec, recvPerSec,
packetsSent, packetsRecv}, disk: {readBytes, writeBytes, readPerSec,
writePerSec, total, used, free, percent}, missed}.
"""
from __future__ import annotations

import os
import platform
import socket
import time
from datetime import datetime, timezone
from typing import Any

import psutil
import trio

from node_runtime import Param, Request, StreamEnd, Tool, tool_method

MIN_INTERVAL_MS = 50
MAX_INTERVAL_MS = 3_600_000
SNAPSHOT_WINDOW = 0.1  # seconds over which snapshot() measures its rates


def _disk_path() -> str:
    return os.path.abspath(os.sep)


class _Counters:
    """Cumulative counters read at one instant; two of them give rates."""

    def __init__(self) -> None:
        self.at = time.monotonic()
        self.cpu = psutil.cpu_times(percpu=True)
        net = psutil.net_io_counters()
        self.net = net
        try:
            self.disk = psutil.disk_io_counters()  # None in some containers
        except Exception:
            self.disk = None


def _busy_percent(before, after) -> float:
    """CPU busy % between two cpu_times readings (our own delta: psutil.cpu_percent
    keeps one global baseline, which two concurrent watchers would share)."""
    total = sum(after) - sum(before)
    idle = (after.idle - before.idle) + (getattr(after, "iowait", 0) - getattr(before, "iowait", 0))
    return round(max(0.0, min(100.0, 100.0 * (total - idle) / total)), 1) if total > 0 else 0.0


def _sample(before: _Counters, after: _Counters) -> dict[str, Any]:
    """One sample from two readings (blocking: psutil reads /proc)."""
    seconds = max(after.at - before.at, 1e-9)
    per_cpu = [_busy_percent(b, a) for b, a in zip(before.cpu, after.cpu)]
    mem = psutil.virtual_memory()
    swap = psutil.swap_memory()
    try:
        load = os.getloadavg()
    except (AttributeError, OSError):
        load = (0.0, 0.0, 0.0)
    usage = psutil.disk_usage(_disk_path())
    net_a, net_b = after.net, before.net
    disk: dict[str, Any] = {"path": _disk_path(), "total": usage.total, "used": usage.used, "free": usage.free,
                            "percent": usage.percent}
    if after.disk is not None and before.disk is not None:
        disk.update(readBytes=after.disk.read_bytes, writeBytes=after.disk.write_bytes,
                    readPerSec=round((after.disk.read_bytes - before.disk.read_bytes) / seconds),
                    writePerSec=round((after.disk.write_bytes - before.disk.write_bytes) / seconds))
    else:
        disk.update(readBytes=None, writeBytes=None, readPerSec=None, writePerSec=None)
    now = time.time()
    return {
        "timestamp": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"),
        "time": round(now, 3),
        "cpu": {"percent": round(sum(per_cpu) / len(per_cpu), 1) if per_cpu else 0.0, "perCpu": per_cpu,
                "count": len(per_cpu), "load1": round(load[0], 2), "load5": round(load[1], 2),
                "load15": round(load[2], 2)},
        "memory": {"total": mem.total, "available": mem.available, "used": mem.used, "percent": mem.percent,
                   "swapPercent": swap.percent},
        "network": {"bytesSent": net_a.bytes_sent, "bytesRecv": net_a.bytes_recv,
                    "sentPerSec": round((net_a.bytes_sent - net_b.bytes_sent) / seconds),
                    "recvPerSec": round((net_a.bytes_recv - net_b.bytes_recv) / seconds),
                    "packetsSent": net_a.packets_sent, "packetsRecv": net_a.packets_recv},
        "disk": disk,
    }


def _read_and_sample(before: _Counters) -> tuple[_Counters, dict[str, Any]]:
    after = _Counters()
    return after, _sample(before, after)


class MetricsTool(Tool):
    """Live figures of the machine: a stream of samples, or one snapshot."""

    address = "o://metrics"
    description = "Live CPU, memory, network and disk figures of the machine the node runs on."

    @tool_method(
        "Streams a sample of CPU, memory, network and disk every intervalMs (rates over the last interval): "
        "{sample, timestamp, time, elapsedSeconds, cpu, memory, network, disk, missed}. "
        "count = 0: until cancelled.",
        params={
            "intervalMs": Param(f"milliseconds between samples, {MIN_INTERVAL_MS} to {MAX_INTERVAL_MS}",
                                examples=[1000, 250], minimum=MIN_INTERVAL_MS, maximum=MAX_INTERVAL_MS),
            "count": Param("how many samples (0: until cancelled)", examples=[0, 10], minimum=0),
        },
        category="monitoring",
        examples=[{"intervalMs": 1000, "count": 10}],
    )
    async def _tool_watch(self, request: Request, intervalMs: int = 1000, count: int = 0):
        interval = intervalMs / 1000.0
        previous = await trio.to_thread.run_sync(_Counters)
        start = trio.current_time()
        tick = n = missed_total = 0
        while count == 0 or n < count:
            tick += 1
            now = trio.current_time()
            missed = 0
            if start + tick * interval < now:  # fell behind (slow consumer): rejoin the grid, say so
                late_tick = int((now - start) / interval) + 1
                missed, tick = late_tick - tick, late_tick
            await trio.sleep_until(start + tick * interval)
            previous, sample = await trio.to_thread.run_sync(_read_and_sample, previous)
            n += 1
            missed_total += missed
            yield {"sample": n, **sample, "elapsedSeconds": round(trio.current_time() - start, 3),
                   "intervalMs": intervalMs, "missed": missed}
        yield StreamEnd({"samples": n, "missed": missed_total})

    @tool_method(
        "One sample now (rates measured over 100 ms), plus the host: "
        "{host: {hostname, system, release, machine, bootTime}, timestamp, time, cpu, memory, network, disk}.",
        category="monitoring",
    )
    async def _tool_snapshot(self, request: Request) -> dict[str, Any]:
        before = await trio.to_thread.run_sync(_Counters)
        await trio.sleep(SNAPSHOT_WINDOW)
        _, sample = await trio.to_thread.run_sync(_read_and_sample, before)
        uname = platform.uname()
        host = {"hostname": socket.gethostname(), "system": uname.system, "release": uname.release,
                "machine": uname.machine,
                "bootTime": datetime.fromtimestamp(psutil.boot_time(), timezone.utc).isoformat(timespec="seconds")}
        return {"host": host, **sample}
