"""`olane node`, `olane call` and `olane stream` as a user runs them: real processes,
real libp2p on 127.0.0.1, exit codes and output formats as documented."""
from __future__ import annotations

import json
import re
import signal
import subprocess

import pytest

from node_runtime.host import peer_id_for_seed
from process_helpers import OLANE, start_node, stop_process


def olane(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([OLANE, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo_node():
    proc, ma = start_node("--tools", "demo", "--seed", "cli-test-node")
    try:
        yield ma
    finally:
        stop_process(proc)


def test_node_prints_one_listening_line_and_exits_zero_on_signals():
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc, ma = start_node("--tools", "demo", "--seed", "olane-interop-test")
        assert ma.startswith("/ip4/127.0.0.1/tcp/")
        assert ma.endswith("/p2p/12D3KooWJDGRb5kxCsDY34e6czgLs7RzGBQaJWJCfCoPT6d8m1ab")
        code = stop_process(proc, sig)
        rest = proc.stdout.read()
        assert code == 0, proc.stderr.read()
        assert rest == ""  # nothing on stdout but the one line


def test_call_prints_the_result_as_one_json_document(demo_node):
    out = olane("call", demo_node, "get_items", "--address", "o://demo", "--params", '{"count": 3}')
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["total"] == 3 and len(result["items"]) == 3


def test_call_without_address_uses_the_only_tool_the_node_serves(demo_node):
    out = olane("call", demo_node, "ping")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"message": "Pong!"}


def test_stream_prints_a_line_per_chunk_then_the_final(demo_node):
    out = olane("stream", demo_node, "stream_items", "--params", '{"count": 5, "delayMs": 0}')
    assert out.returncode == 0, out.stderr
    lines = [json.loads(l) for l in out.stdout.splitlines()]
    assert [l["seq"] for l in lines[:-1]] == [1, 2, 3, 4, 5]
    assert lines[0]["data"]["id"] == 1
    assert lines[-1]["chunks"] == 5 and "final" in lines[-1]


def test_error_answers_exit_1_with_code_and_name_on_stderr(demo_node):
    out = olane("call", demo_node, "no_such_method")
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.strip() == "error 4011 INVALID_ACTION: Selected method does not exist"
    out = olane("stream", demo_node, "stream_with_error", "--params", '{"failAt": 3, "delayMs": 0}')
    assert out.returncode == 1
    chunks = [json.loads(l) for l in out.stdout.splitlines()]
    assert [c["seq"] for c in chunks] == [1, 2, 3][: len(chunks)] and len(chunks) >= 1
    assert out.stderr.startswith("error 4")


def test_unreachable_node_exits_2():
    ma = "/ip4/127.0.0.1/tcp/1/p2p/" + peer_id_for_seed("nobody")
    out = olane("call", ma, "ping", "--timeout", "5")
    assert out.returncode == 2
    assert out.stderr.startswith("error 4014 FAILED_TO_DIAL_TARGET")
    out = olane("call", "not-a-multiaddr", "ping")
    assert out.returncode == 2


def test_several_tools_without_address_exits_2_listing_them():
    proc, ma = start_node("--tools", "demo,metrics")
    try:
        out = olane("call", ma, "ping")
        assert out.returncode == 2
        assert "o://demo" in out.stderr and "o://metrics" in out.stderr
        assert "o://reuse" not in out.stderr
        ok = olane("call", ma, "ping", "--address", "o://metrics")
        assert ok.returncode == 0 and json.loads(ok.stdout) == {"message": "Pong!"}
    finally:
        stop_process(proc)


def test_stream_timing_reports_time_to_first_chunk_on_stderr(demo_node):
    out = olane("stream", demo_node, "stream_items", "--params", '{"count": 2, "delayMs": 0}', "--timing")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 3  # stdout stays data
    assert re.fullmatch(r"first chunk \d+\.\d ms after the request was written; 2 chunks in \d+\.\d ms\n", out.stderr)
