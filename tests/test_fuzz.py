"""Fuzzing a real `olane node --tools demo` process over real libp2p streams (issue 8, item 8).

Hypothesis draws batches of hostile frames (benchmarks/fuzz_frames.py: JSON with wrong types in every
envelope field, msgpack, garbage, 100..100,000 levels of nesting, lone surrogates raw and escaped, huge
ids and numbers, truncated frames, bad varints). After every batch a fresh client must get `Pong!` and
the process must still run; a bad frame must fail only its own request (a ping pipelined after it on
the same stream is answered). Derandomized with a bounded number of examples: the same frames every
run, in well under a minute on a healthy node. When the node dies, the batch is replayed frame by
frame on fresh nodes and the failure names the one frame that ends it.
"""
from __future__ import annotations

import collections
import subprocess
import threading

import pytest
import trio
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from benchmarks.fuzz_frames import (GENERATORS, BatchOutcome, exception_line, Fuzzed, RandomChooser, Target, find_killer,
                                    hypothesis_batch, ping_fresh, send_batch, wait_dead)
from node_runtime import Client
from process_helpers import start_node, stop_process
from trio_helpers import run_trio

BATCH = 100
EXAMPLES = 24  # x BATCH frames, plus one pipelined ping per batch
MIN_FRAMES = 2_000


class NodeProcess(Target):
    """`olane node --tools demo` in its own process: a crash shows as the process ending."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.multiaddr = ""

    def restart(self) -> None:
        self.stop()
        self.proc, self.multiaddr = start_node("--tools", "demo")
        # keep draining stderr, so a node writing a long traceback never blocks on a full pipe
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)
        threading.Thread(target=self._drain, args=(self.proc, self._stderr), daemon=True).start()

    @staticmethod
    def _drain(proc: subprocess.Popen, lines: collections.deque) -> None:
        try:
            for line in proc.stderr:
                lines.append(line)
        except (ValueError, OSError):
            pass

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def exit_reason(self) -> str:
        if self.proc is None or self.proc.poll() is None:
            return ""
        try:
            self.proc.wait(1)
        except subprocess.TimeoutExpired:
            pass
        return f"exit {self.proc.returncode}: {exception_line(list(self._stderr))}"


@pytest.fixture
def node():
    target = NodeProcess()
    target.restart()
    try:
        yield target
    finally:
        target.stop()


def _killer_report(target: Target, frames: list[Fuzzed]) -> str:
    found = run_trio(lambda: find_killer(target, frames), timeout=240)
    if found is None:
        return "no single frame of the batch ends the node on its own"
    f, why = found
    return f"the node is ended by {f.describe(300)}\n  -> {why}"


def test_fuzzed_frames_never_end_the_node(node):
    stats = {"frames": 0, "batches": 0, "undecodable": 0}

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), print_blob=False, verbosity=Verbosity.quiet)
    @given(st.data())
    def batch(data):
        frames = hypothesis_batch(data, BATCH)
        n = stats["batches"] + 1
        ping_id = f"fz-ping-{n}"

        async def go():
            out = None
            try:
                async with Client() as c:
                    peer = await c.peers.peer_at(node.multiaddr)
                    out = await send_batch(c, peer, frames, timeout=10, ping_id=ping_id)
            except Exception as exc:  # the node went away under us: judged below
                if out is None:
                    out = BatchOutcome(send_errors=[f"{type(exc).__name__}: {exc}"])
            # the exception that ends a node may land just after the pipelined ping's answer
            await wait_dead(node, 0.2)
            alive = await ping_fresh(node.multiaddr, timeout=10)
            return out, alive

        out, (answered, why, _) = run_trio(go, timeout=60)
        stats["frames"] += out.sent
        stats["batches"] = n
        stats["undecodable"] += out.undecodable_answers
        if not node.alive() or not answered or not out.ping_answered:
            state = (f"process ended ({node.exit_reason()})" if not node.alive()
                     else f"fresh ping: {'ok' if answered else why}; pipelined ping answered: {out.ping_answered}"
                          f" {out.send_errors}")
            raise AssertionError(f"batch {n} of {BATCH} frames: {state}\n{_killer_report(node, frames)}")

    batch()
    assert stats["frames"] >= MIN_FRAMES, stats
    assert stats["undecodable"] == 0, f"the node wrote frames that do not decode: {stats}"
    assert node.alive()


def _one_of_each(seed: int = 8) -> list[Fuzzed]:
    """Two intact frames from every generator (those that keep framing in step)."""
    ch = RandomChooser(seed)
    out: list[Fuzzed] = []
    for gen, _ in GENERATORS:
        got = 0
        for _ in range(50):
            f = gen(ch)
            if f.intact and len(f.wire) < 4 * 1024 * 1024:
                out.append(f)
                got += 1
                if got == 2:
                    break
    return out


def test_a_bad_frame_fails_only_its_own_request(node):
    """[bad frame, ping] on one stream: the ping pipelined after the bad frame gets its answer."""
    frames = _one_of_each()
    assert len(frames) >= 40

    async def go():
        failures = []
        async with Client() as c:
            peer = await c.peers.peer_at(node.multiaddr)
            for n, f in enumerate(frames):
                out = await send_batch(c, peer, [f], timeout=10, ping_id=f"after-{n}")
                if not out.ping_answered or await wait_dead(node, 0.05):
                    await wait_dead(node, 2.0)  # a dying node takes a moment to exit
                    failures.append((f, out))
                    break
        return failures

    failures = run_trio(go, timeout=120)
    if failures:
        f, out = failures[0]
        dead = not node.alive()
        detail = node.exit_reason() if dead else f"the node is still running; {out.send_errors}"
        pytest.fail(f"a ping pipelined after frame {frames.index(f) + 1} of {len(frames)}, {f.describe(300)}, "
                    f"was not answered ({detail})\n"
                    f"{_killer_report(node, frames[:frames.index(f) + 1]) if dead else ''}")
    assert node.alive()
