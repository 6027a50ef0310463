"""`olane network up`: a local network in one command. A leader in this process
and N `olane node` processes joined to it on 127.0.0.1, the tool library spread
over them (node i serves one tool at `o://<tool><i>`; every third node nests
under the one before it, so some sit two deep: `o://leader/sqlite1/files2`).

Nodes are processes of their own so that an operator can stop or kill one and
watch the console mark it stale, then gone. Parents start before their
children (a child registers through its parent). stdout gets one line,
`listening <leader multiaddr>`, once every node has registered; stderr a line
per node with its pid. SIGINT or SIGTERM stops the nodes first (each sends
`notify node:stopping` and `remove`), then the leader; a node that does not end
within `STOP_WAIT` s is killed. (`local_network`, for `olane console --network`,
runs this command as a child that gets SIGTERM should the console die: PR_SET_PDEATHSIG.)"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import click
import trio

STOP_WAIT = 10.0
START_WAIT = 60.0


@dataclass
class Planned:
    name: str  # the tool it serves
    address: str  # its own (flat) address, o://demo0
    parent: str  # o://leader or the full address of an earlier node
    depth: int

    @property
    def full(self) -> str:
        return f"{self.parent}/{self.address[4:]}"


def plan(count: int, tool_names: tuple[str, ...]) -> list[Planned]:
    out: list[Planned] = []
    for i in range(count):
        name = tool_names[i % len(tool_names)]
        parent = out[-1] if i % 3 == 2 and out else None
        out.append(Planned(name, f"o://{name}{i}", parent.full if parent else "o://leader",
                           parent.depth + 1 if parent else 1))
    return out


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def olane_command() -> list[str]:
    exe = Path(sys.executable).with_name("olane")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "console.cli"]


async def _start_node(p: Planned, lma: str, logs: Path) -> tuple[trio.Process, str]:
    log = open(logs / f"{p.address[4:]}.log", "wb")
    proc = await trio.lowlevel.open_process(
        [*olane_command(), "node", "--tools", p.name, "--address", p.address, "--leader", lma, "--parent", p.parent,
         "--listen", "/ip4/127.0.0.1/tcp/0"],
        stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
        # its own session: a closed terminal's SIGHUP (which a node takes as "reread the allow
        # file") reaches only us, and we stop the nodes. (No PDEATHSIG: trio forks from a
        # worker thread, whose exit would fire it.)
        start_new_session=True)
    log.close()
    buffer = b""
    with trio.move_on_after(START_WAIT):
        while b"\n" not in buffer:
            data = await proc.stdout.receive_some(4096)
            if not data:
                break
            buffer += data
    line = buffer.split(b"\n", 1)[0].decode(errors="replace")
    if not line.startswith("listening "):
        raise RuntimeError(f"{p.full} did not start (see {logs / (p.address[4:] + '.log')})")
    return proc, line.split(" ", 1)[1].strip()


async def _stop(procs: list[trio.Process]) -> None:
    """SIGINT to each node (children first), wait, kill what is left."""
    with trio.CancelScope(shield=True):
        for proc in reversed(procs):
            if proc.returncode is None:
                try:
                    proc.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass
        with trio.move_on_after(STOP_WAIT):
            for proc in procs:
                await proc.wait()
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def network_up(count: int, *, ttl: float = 30.0, heartbeat: float = 5.0) -> None:
    from node_runtime.leader import Leader
    from tool_library import TOOL_NAMES

    planned = plan(count, TOOL_NAMES)
    logs = Path(tempfile.mkdtemp(prefix="olane-network-"))

    async def up() -> None:
        procs: list[trio.Process] = []
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async with Leader(ttl=ttl, heartbeat=heartbeat) as lead:
                lma = lead.listen_addrs[0]
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(_start_all, planned, lma, logs, procs)
                        async for _ in signals:  # Ctrl-C while starting, or after
                            nursery.cancel_scope.cancel()
                            break
                finally:
                    await _stop(procs)
                click.echo("stopped", err=True)

    async def _start_all(planned, lma, logs, procs) -> None:
        for depth in sorted({p.depth for p in planned}):
            async with trio.open_nursery() as nursery:
                for p in (p for p in planned if p.depth == depth):
                    nursery.start_soon(_one, p, lma, logs, procs)
        print(f"listening {lma}", flush=True)
        click.echo(f"leader o://leader and {len(procs)} nodes up (logs in {logs}); Ctrl-C stops them all", err=True)

    async def _one(p, lma, logs, procs) -> None:
        proc, ma = await _start_node(p, lma, logs)
        procs.append(proc)
        click.echo(f"node {p.full} pid {proc.pid} {ma}", err=True)

    try:
        trio.run(up)
    except BaseException as exc:  # a node that did not start: say which, after stopping the rest
        failed = _first(exc, RuntimeError)
        if failed is None:
            raise
        click.echo(f"error: {failed}", err=True)
        sys.exit(1)


def _first(exc: BaseException, kind: type) -> BaseException | None:
    if isinstance(exc, kind):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _first(inner, kind)
        if found is not None:
            return found
    return None


@contextmanager
def local_network(count: int) -> Iterator[str]:
    """`olane network up --nodes COUNT` as a child process while the block runs (the
    console's `--network`); yields the leader's multiaddr. Its narrative goes to a log file:
    the console has the terminal."""
    import threading

    log_path = Path(tempfile.mkdtemp(prefix="olane-network-")) / "network-up.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*olane_command(), "network", "up", "--nodes", str(count)], stdout=subprocess.PIPE,
                                stderr=log, stdin=subprocess.DEVNULL, text=True, preexec_fn=_die_with_parent)
    try:
        found: list[str] = []

        def read() -> None:
            for line in proc.stdout:
                if line.startswith("listening "):
                    found.append(line.split(" ", 1)[1].strip())
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(START_WAIT)
        if not found:
            raise click.ClickException(f"the local network did not start (see {log_path})")
        click.echo(f"local network up: leader {found[0]} (log: {log_path})", err=True)
        yield found[0]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(STOP_WAIT + 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
