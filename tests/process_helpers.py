"""Starting and always stopping the processes tests run (olane nodes and scripts)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

OLANE = str(Path(sys.executable).with_name("olane"))


def read_listening_line(proc: subprocess.Popen, timeout: float = 30) -> str:
    """Wait (with a deadline) for the process to print `listening <multiaddr>`; return the multiaddr."""
    result: list[str] = []

    def reader() -> None:
        for line in proc.stdout:
            if line.startswith("listening "):
                result.append(line.split(" ", 1)[1].strip())
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    if not result:
        stop_process(proc)
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"no 'listening' line within {timeout} s; stderr: {err[-2000:]}")
    return result[0]


def olane(*args: str, timeout: float = 60, env: dict | None = None, input: str | None = None
          ) -> subprocess.CompletedProcess:
    """`olane ARGS` run to its end (killed past `timeout`), its output captured as text;
    `env` adds to this process's environment, `input` is its stdin."""
    return subprocess.run([OLANE, *args], capture_output=True, text=True, timeout=timeout, input=input,
                          env={**os.environ, **env} if env else None)


def start_node(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`olane node ARGS` on 127.0.0.1, a random port; returns (process, multiaddr)."""
    proc = subprocess.Popen(
        [OLANE, "node", "--listen", "/ip4/127.0.0.1/tcp/0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
    )
    return proc, read_listening_line(proc)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(5)
    return proc.returncode
