"""What the benchmarks share: a node in its own process, measured rows and their
report, percentiles, narration on stderr."""
from __future__ import annotations

import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any


async def serve_until_stopped(parent_pid: int, listening: str | None = None) -> None:
    """(trio, in a bench node process) Print `listening MA` once the signals are
    caught, then wait for SIGINT/SIGTERM or for the parent (the bench) to be gone."""
    import os

    import trio

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        if listening is not None:
            print(f"listening {listening}", flush=True)
        async with trio.open_nursery() as nursery:
            async def stop_on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

            async def stop_when_orphaned() -> None:
                while os.getppid() == parent_pid:
                    await trio.sleep(1)
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            nursery.start_soon(stop_when_orphaned)


class ServedNode:
    """A bench node in its own process; always stopped on exit (SIGTERM, then kill)."""

    #: what the process runs (after the Python interpreter), and what errors call it
    command: tuple[str, ...] = ("-m", "benchmarks.runtime", "serve")
    name = "bench node"

    def __init__(self, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.multiaddr = ""
        self._stderr = tempfile.TemporaryFile()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> "ServedNode":
        self.proc = subprocess.Popen(
            [sys.executable, *self.command],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def read_stdout() -> None:  # keep draining so the node never blocks on its stdout
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read_stdout, daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        try:
            while True:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
                if line is None:
                    raise RuntimeError(f"{self.name} exited before listening: {self._error_text()}")
                if line.startswith("listening "):
                    self.multiaddr = line.split(" ", 1)[1].strip()
                    return self
        except queue.Empty:
            why = self._error_text()
            self.stop()
            raise RuntimeError(f"{self.name} printed no 'listening' line within {self.startup_timeout:g} s: "
                               f"{why}") from None
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._stderr.close()

    def _error_text(self) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode("utf-8", "replace")[-2000:] or "(no stderr)"
        except Exception:
            return "(stderr unavailable)"


class DemoNode(ServedNode):
    """`olane node --tools demo` on 127.0.0.1 in its own process; stopped on exit.
    ServedNode serves the bench tool only, so only the start differs."""

    command = ("-m", "console.cli", "node", "--tools", "demo", "--listen", "/ip4/127.0.0.1/tcp/0")
    name = "demo node"


class DemoAndSqliteNode(DemoNode):
    """The demo and sqlite tools: the console bench's table-view run queries sqlite."""

    command = ("-m", "console.cli", "node", "--tools", "demo,sqlite", "--listen", "/ip4/127.0.0.1/tcp/0")


@dataclass
class Row:
    """One measured figure: printed as a table line and kept for --json."""

    section: str
    name: str
    figures: dict[str, Any]
    text: str
    target: str = ""
    passed: bool | None = None  # None: no target

    @property
    def verdict(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "MISS")


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        line = f"  {row.text}"
        if row.target:
            line = f"{line:<98} {row.target:<20} {row.verdict}"
        print(line.rstrip(), flush=True)
        return row


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def percentile_ms(values: list[float], p: float) -> float:
    """`percentile` of durations in seconds, in milliseconds."""
    return percentile(values, p) * 1000


async def wait_until(predicate, timeout: float, what: str) -> None:
    """(asyncio: the console benches) Poll `predicate` until it is true; TimeoutError
    naming `what` after `timeout` seconds."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


def narrate(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def is_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(KeyboardInterrupt) is not None
    return False
