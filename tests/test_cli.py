"""`olane node`, `olane call` and `olane stream` as a user runs them: real processes,
real libp2p on 127.0.0.1, exit codes and output formats as documented."""
from __future__ import annotations

import json
import re
import signal
import subprocess

import pytest

from node_runtime.host import peer_id_for_seed
from process_helpers import OLANE, olane, start_node, stop_process


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


# --- bad input, identities (issue 8, items 6 and 7) -----------------------------------------

SLOW_STREAM = '{"count": 1000, "delayMs": 200}'


def start_cli(*args: str) -> subprocess.Popen:
    # Ctrl-C as a terminal sends it: a suite started in the background of a
    # non-interactive shell inherits SIGINT ignored, and Python keeps it so
    return subprocess.Popen([OLANE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def first_line(proc: subprocess.Popen, timeout: float = 30) -> str:
    """The first stdout line of a running process, waited for with a deadline."""
    import threading

    lines: list[str] = []
    t = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not lines or not lines[0]:
        stop_process(proc)
        raise AssertionError(f"no output within {timeout} s; stderr: {proc.stderr.read()[-2000:]}")
    return lines[0]


@pytest.mark.parametrize("bad, why", [
    ("{count: 3,}", "not JSON"),
    ("[1,2]", "must be a JSON object"),
    ('"text"', "must be a JSON object"),
    ("3", "must be a JSON object"),
    ("", "not JSON"),
])
def test_bad_params_exit_2_with_one_line(demo_node, bad, why):
    for command in ("call", "stream"):
        out = olane(command, demo_node, "get_items", "--params", bad)
        assert out.returncode == 2, out.stderr
        assert out.stdout == ""
        lines = out.stderr.splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith("error: --params: ") and why in lines[0]


def test_stream_into_head_exits_quietly(demo_node):
    cmd = f"{OLANE} stream {demo_node} stream_items --params '{{\"count\": 100000, \"delayMs\": 0}}' | head -1"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in out.stderr and "Exception" not in out.stderr, out.stderr
    assert out.stderr == ""
    assert out.returncode == 0  # with pipefail: olane's own exit code counts too
    assert json.loads(out.stdout)["seq"] == 1


def test_ctrl_c_during_a_stream_exits_130_quietly(demo_node):
    proc = start_cli("stream", demo_node, "stream_items", "--params", SLOW_STREAM)
    try:
        assert json.loads(first_line(proc))["seq"] == 1
        code = stop_process(proc, signal.SIGINT)
    finally:
        stop_process(proc)
    err = proc.stderr.read()
    assert code == 130, err
    assert "Traceback" not in err and err == ""


def test_ctrl_c_during_a_call_exits_130_quietly(demo_node):
    # the call prints nothing until the end: wait until the node runs it (get_metrics lists it)
    proc = start_cli("call", demo_node, "stream_items", "--params", SLOW_STREAM, "--seed", "cli-ctrl-c")
    try:
        wait_for_active_request(demo_node, peer_id_for_seed("cli-ctrl-c"))
        code = stop_process(proc, signal.SIGINT)
    finally:
        stop_process(proc)
    err = proc.stderr.read()
    assert code == 130, err
    assert "Traceback" not in err and err == ""


def wait_for_active_request(ma: str, peer: str, deadline_s: float = 30) -> dict:
    """Poll the node's get_metrics (bounded) until a request from `peer` is running."""
    import time

    deadline = time.monotonic() + deadline_s
    seen = None
    while time.monotonic() < deadline:
        out = olane("call", ma, "get_metrics")
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout)["requests"]
        for request in seen:
            if request["peer"] == peer:
                return request
    raise AssertionError(f"no request from {peer} within {deadline_s} s; running: {seen}")


def test_call_on_a_streaming_method_says_how_many_chunks_it_did_not_show(demo_node):
    out = olane("call", demo_node, "stream_items", "--params", '{"count": 4, "delayMs": 0}')
    assert out.returncode == 0, out.stderr
    assert "final" not in out.stdout and json.loads(out.stdout) is not None
    assert "4 chunks not shown" in out.stderr and "olane stream" in out.stderr
    unary = olane("call", demo_node, "get_items", "--params", '{"count": 2}')
    assert unary.returncode == 0 and unary.stderr == ""


def test_an_unknown_parameter_warns_and_the_call_still_runs(demo_node):
    out = olane("call", demo_node, "get_items", "--params", '{"count": 2, "cuont": 5}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["total"] == 2
    warning = out.stderr.strip()
    assert warning.startswith("warning: get_items") and "cuont" in warning and "count" in warning
    out = olane("stream", demo_node, "stream_items", "--params", '{"count": 1, "delayMs": 0, "colour": 1}')
    assert out.returncode == 0 and "colour" in out.stderr
    quiet = olane("call", demo_node, "get_items", "--params", '{"count": 2}')
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_wrong_peer_id_in_the_multiaddr_names_both_ids(demo_node):
    actual = demo_node.rsplit("/p2p/", 1)[1]
    claimed = peer_id_for_seed("someone-else")
    addr = demo_node.rsplit("/p2p/", 1)[0]
    out = olane("call", f"{addr}/p2p/{claimed}", "ping", "--timeout", "10")
    assert out.returncode == 2
    assert out.stderr.strip() == (f"error 4014 FAILED_TO_DIAL_TARGET: the peer at {addr} is {actual}, "
                                  f"not {claimed}")


def test_id_prints_the_peer_id_of_a_seed():
    out = olane("id", "--seed", "olane-interop-test")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "12D3KooWJDGRb5kxCsDY34e6czgLs7RzGBQaJWJCfCoPT6d8m1ab"
    both = olane("id")
    assert both.returncode == 2 and len(both.stderr.splitlines()) == 1


def test_a_new_key_round_trips_through_id_node_and_call(tmp_path, demo_node):
    import os
    import stat

    key = tmp_path / "node.key"
    made = olane("id", "--new-key", str(key))
    assert made.returncode == 0, made.stderr
    peer = made.stdout.strip()
    assert peer.startswith("12D3KooW")
    text = key.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", text), text
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    again = olane("id", "--new-key", str(key))  # never overwrites
    assert again.returncode == 2 and key.read_text().strip() == text
    assert olane("id", "--key", str(key)).stdout.strip() == peer
    assert olane("id", "--new-key", str(tmp_path / "other.key")).stdout.strip() != peer

    proc, ma = start_node("--tools", "demo", "--key", str(key))
    try:
        assert ma.endswith(f"/p2p/{peer}")
    finally:
        stop_process(proc)

    # the same key as a caller identity: the node sees that peer id
    caller = start_cli("stream", demo_node, "stream_items", "--params", SLOW_STREAM, "--key", str(key))
    try:
        first_line(caller)
        assert wait_for_active_request(demo_node, peer)["method"] == "stream_items"
    finally:
        stop_process(caller, signal.SIGINT)


def test_a_seed_gives_the_caller_a_stable_identity(demo_node):
    caller = start_cli("stream", demo_node, "stream_items", "--params", SLOW_STREAM, "--seed", "cli-caller")
    try:
        first_line(caller)
        assert wait_for_active_request(demo_node, peer_id_for_seed("cli-caller"))["method"] == "stream_items"
    finally:
        stop_process(caller, signal.SIGINT)


def test_bad_identity_options_exit_2_with_one_line(tmp_path, demo_node):
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    for args in (["--key", str(bad)], ["--key", str(tmp_path / "missing.key")],
                 ["--seed", "x", "--key", str(bad)]):
        out = olane("call", demo_node, "ping", *args)
        assert out.returncode == 2, out.stderr
        assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("error: --key: ")
    out = olane("node", "--key", str(bad))
    assert out.returncode == 2 and out.stderr.startswith("error: --key: ")


def test_stream_timing_reports_time_to_first_chunk_on_stderr(demo_node):
    out = olane("stream", demo_node, "stream_items", "--params", '{"count": 2, "delayMs": 0}', "--timing")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 3  # stdout stays data
    assert re.fullmatch(r"first chunk \d+\.\d ms after the request was written; 2 chunks in \d+\.\d ms\n", out.stderr)
