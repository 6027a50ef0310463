"""Networks over real libp2p on 127.0.0.1: a leader, nodes nested under it and
under each other, calls by address routed through relays that pass on every
chunk, cancellation through relays, expiry, a leader restart."""
from __future__ import annotations

import json
from contextlib import AsyncExitStack
from functools import partial

import pytest
import trio

from node_runtime import Client, Node, OlaneError, Request, Tool, codec
from node_runtime.framing import FrameDecoder, frame
from node_runtime.joining import joined, nest
from node_runtime.leader import Leader
from node_runtime.messages import chunk_frame, final_frame, parse_request, route_request
from node_runtime.registry import Registry
from stream_demo_tool import StreamDemoTool
from trio_helpers import trio_test


class CountTool(Tool):
    """Streams 1..count; `forever` streams until cancelled and records that its finally ran."""

    address = "o://count"

    def __init__(self, address=None):
        super().__init__(address)
        self.stopped = trio.Event()
        self.produced = 0

    async def _tool_count(self, request: Request, count: int = 10, pad: int = 0):
        padding = "x" * pad
        for i in range(1, count + 1):
            self.produced += 1
            yield {"n": i, "pad": padding} if pad else {"n": i}

    async def _tool_forever(self, request: Request):
        try:
            i = 0
            while True:
                i += 1
                yield {"n": i}
                await trio.sleep(0.01)
        finally:
            self.stopped.set()

    async def _tool_fail(self, request: Request):
        yield {"n": 1}
        raise RuntimeError("far failure")

    async def _tool_blobs(self, request: Request, count: int = 3):
        for i in range(count):
            yield {"blob": bytes([i, 0xFF])}


async def start_network(stack: AsyncExitStack, *, ttl: float = 30, heartbeat: float = 10, leader_kw=None):
    """A leader, alpha under it, beta under alpha (a CountTool two deep)."""
    leader = await stack.enter_async_context(Leader(ttl=ttl, heartbeat=heartbeat, **(leader_kw or {})))
    lma = leader.listen_addrs[0]
    tools, units = nest([StreamDemoTool("o://alpha")])
    alpha = await stack.enter_async_context(Node(tools))
    await stack.enter_async_context(joined(alpha, lma, units=units, heartbeat=0.5))
    count = CountTool("o://beta")
    tools, units = nest([count], parent="o://leader/alpha")
    beta = await stack.enter_async_context(Node(tools))
    await stack.enter_async_context(joined(beta, lma, parent="o://leader/alpha", units=units, heartbeat=0.5))
    client = await stack.enter_async_context(Client(leader=lma))
    return leader, alpha, beta, count, client


@trio_test(60)
async def test_nested_addresses_are_registered_and_routed():
    async with AsyncExitStack() as stack:
        leader, alpha, beta, _, client = await start_network(stack)
        assert alpha.address.value == "o://leader/alpha"
        assert beta.address.value == "o://leader/alpha/beta"
        with trio.fail_after(10):
            for address in ("o://leader/alpha", "o://alpha"):
                assert (await client.use(address, "echo", {"message": "hi"}))["message"] == "hi"
            for address in ("o://leader/alpha/beta", "o://beta"):  # two relays: leader -> alpha -> beta
                assert [c["n"] async for c in client.use_streaming(address, "count", {"count": 3})] == [1, 2, 3]
            entries = await client.use("o://registry", "find_all", {})
            assert {e["address"] for e in entries} >= {"o://leader/alpha", "o://leader/alpha/beta"}
            assert await client.use("o://leader/registry", "search", {"staticAddress": "o://beta"}) == \
                await client.use("o://registry", "search", {"staticAddress": "o://beta", "address": "o://leader/alpha/beta"})
        assert "o://leader/alpha" in leader.node.router.children
        assert "o://leader/alpha/beta" in alpha.router.children


@trio_test(120)
async def test_ten_thousand_chunks_through_two_relays_arrive_in_order():
    async with AsyncExitStack() as stack:
        _, _, _, _, client = await start_network(stack)
        n = 10_000
        seen, sequences = [], []
        with trio.fail_after(90):
            call = client.use_streaming("o://leader/alpha/beta", "count", {"count": n})
            async for response in call.responses():
                if not response.last:
                    seen.append(response.data["n"])
                    sequences.append(response.sequence)
        assert seen == list(range(1, n + 1))
        assert sequences == list(range(1, n + 1))  # _sequence survives both relays
        assert call.final_response.raw["result"]["_chunks"] == n
        # compressed toward the caller by the first relay (the hops behind it answer it plain)
        with trio.fail_after(30):
            packed = client.use_streaming("o://leader/alpha/beta", "count", {"count": 2000}, compress="zstd")
            assert [c["n"] async for c in packed] == list(range(1, 2001))
        assert packed.compressed and packed.wire_bytes < packed.data_bytes / 3


@trio_test(60)
async def test_a_msgpack_caller_gets_msgpack_through_relays():
    """The relays send the envelope on in the caller's codec to hops known to speak it
    (each parent learned its child's when it pinged it back), so bytes arrive as bytes,
    as directly; over JSON hops they would arrive as base64 text."""
    async with AsyncExitStack() as stack:
        _, _, beta, _, client = await start_network(stack)
        with trio.fail_after(10):
            direct = [c["blob"] async for c in client.use_streaming(
                "o://leader/alpha/beta", "blobs", {}, via=beta.listen_addrs[0], protocol="/o/leader/alpha/beta")]
            call = client.use_streaming("o://leader/alpha/beta", "blobs", {})
            relayed = [c["blob"] async for c in call]
        assert call.wire_codec == "msgpack"
        assert direct == relayed == [b"\x00\xff", b"\x01\xff", b"\x02\xff"]


async def _typescript_like_hop(stream, sent: list[bytes]) -> None:
    """Answer one request as a TypeScript node writes JSON (spaces, escaped non-ASCII),
    with a frame of another request among them; `sent` gets what was written."""
    decoder = FrameDecoder()
    payloads = []
    while not payloads:
        payloads = decoder.feed(await stream.read(65536))
    req = parse_request(codec.decode(payloads[0])[0])
    frames = [frame(json.dumps(chunk_frame(req, {"text": f"caf\u00e9 {i}"}, i)).encode()) for i in (1, 2)]
    frames.insert(1, frame(json.dumps({"jsonrpc": "2.0", "id": "another", "result": {"_last": True}}).encode()))
    frames.append(frame(json.dumps(final_frame(req, {"done": True}, sequence=3, chunks=2)).encode()))
    sent.extend(frames)
    await stream.write(b"".join(frames))
    with trio.move_on_after(5):
        try:
            await stream.read(1)
        except Exception:
            pass


@trio_test(60)
async def test_a_relay_passes_frames_on_as_the_next_hop_wrote_them():
    """A JSON caller reads the next hop's frames byte for byte (not re-encoded), but
    for the frame of another request, which the relay drops; it ends at the final frame."""
    from libp2p.custom_types import TProtocol

    from node_runtime.addresses import Address

    sent: list[bytes] = []
    async with AsyncExitStack() as stack:
        hop = await stack.enter_async_context(Node([], listen=["/ip4/127.0.0.1/tcp/0"]))
        hop.host.set_stream_handler(TProtocol("/o/tslike"), partial(_typescript_like_hop, sent=sent))
        relay = await stack.enter_async_context(Node([CountTool("o://relay")], listen=["/ip4/127.0.0.1/tcp/0"]))
        relay.router.add_child("o://tslike", hop.listen_addrs[0:1])
        client = await stack.enter_async_context(Client(codec="json"))
        with trio.fail_after(10):
            peer = await client.peers.peer_at(relay.listen_addrs[0])
            stream = await client.peers.open_stream(peer, Address("o://relay"), "/o/relay")
            envelope = route_request("o://tslike", "anything", {}, request_id="r1", connection_id="c1",
                                     caller_address="o://caller", streaming=True)
            await stream.write(frame(codec.encode(envelope, "json")))
            got, decoder, last = b"", FrameDecoder(), False
            while not last:
                data = await stream.read(65536)
                got += data
                last = any(codec.decode(p)[0]["result"]["_last"] for p in decoder.feed(data))
        assert got == sent[0] + sent[2] + sent[3]
        assert relay.router.relayed == 1
        await stream.reset()


@trio_test(60)
async def test_errors_keep_success_false_through_relays():
    async with AsyncExitStack() as stack:
        _, _, _, _, client = await start_network(stack)
        with trio.fail_after(10):
            call = client.use_streaming("o://beta", "fail", {})
            with pytest.raises(OlaneError):
                async for _ in call.responses():
                    pass
            assert call.chunks == 1
            with pytest.raises(OlaneError) as missing:
                await client.use("o://leader/alpha/beta", "no_such_method", {})
            assert missing.value.code == 4011
            with pytest.raises(OlaneError) as nobody:
                await client.use("o://leader/nobody", "echo", {})
            assert nobody.value.code == 4002 and nobody.value.message == "o://leader/nobody node not found."
            with pytest.raises(OlaneError) as unknown:
                await client.use("o://nobody", "echo", {})
            assert unknown.value.code == 4002


@trio_test(60)
async def test_error_frame_relayed_unchanged():
    async with AsyncExitStack() as stack:
        _, _, _, _, client = await start_network(stack)
        with trio.fail_after(10):
            call = client.use_streaming("o://leader/alpha/beta", "no_such_method", {})
            with pytest.raises(OlaneError):
                await call.result()
        # the terminal frame reaches the caller as the far node sent it: success false
        assert call.error.code == 4011


@trio_test(60)
async def test_cancel_at_the_first_hop_frees_the_far_tool_within_a_second():
    async with AsyncExitStack() as stack:
        _, _, beta, count, client = await start_network(stack)
        beta_ma = beta.listen_addrs[0]
        with trio.fail_after(10):
            call = client.use_streaming("o://leader/alpha/beta", "forever", {})
            got = 0
            async for _ in call:
                got += 1
                if got == 5:
                    break  # leaving resets the stream at the leader
        with trio.fail_after(1):
            await count.stopped.wait()  # the far generator's finally ran
            while True:
                metrics = await client.use("o://leader/alpha/beta", "get_metrics", {}, via=beta_ma,
                                           protocol="/o/leader/alpha/beta")
                if metrics["activeRequests"] == 0:
                    break
                await trio.sleep(0.02)


@trio_test(60)
async def test_a_slow_caller_slows_the_far_tool():
    """Backpressure end to end: while the caller reads nothing, the far tool stops
    producing (the relays read only what the caller's writer takes)."""
    async with AsyncExitStack() as stack:
        _, _, beta, count, client = await start_network(stack)
        with trio.fail_after(30):
            # 4 KiB chunks: each hop's stream buffers at most its Yamux window (16 MiB), the
            # relays themselves one read and their writer's buffer
            call = client.use_streaming("o://leader/alpha/beta", "count", {"count": 1_000_000, "pad": 4096})
            async with call:
                await call.next_response()
                last = -1
                while count.produced != last:  # until the far tool is parked
                    last = count.produced
                    await trio.sleep(0.5)
                assert count.produced < 100_000  # 3 hops x 16 MiB of 4 KiB chunks is ~12,000
                assert beta.metrics.snapshot()["activeRequests"] == 1
                for _ in range(2000):  # reading again lets it go on
                    await call.next_response()
                with trio.fail_after(10):
                    while count.produced == last:
                        await trio.sleep(0.05)


@trio_test(60)
async def test_a_killed_node_drops_out_of_the_registry_within_the_expiry():
    async with AsyncExitStack() as stack:
        leader = await stack.enter_async_context(Leader(ttl=1.5, heartbeat=0.3))
        lma = leader.listen_addrs[0]
        client = await stack.enter_async_context(Client(leader=lma))
        tools, units = nest([CountTool("o://gone")])
        node = Node(tools)
        await node.__aenter__()
        registry = Registry()
        registry.commit({"peerId": node.peer_id, "address": "o://leader/gone", "staticAddress": "o://gone",
                         "transports": [{"value": t, "type": "libp2p"} for t in node.transports()]})
        with trio.fail_after(10):
            await client.use("o://registry", "commit", registry.find_all()[0])
            assert await client.use("o://registry", "search", {"address": "o://leader/gone"})
        await trio.sleep(2)  # longer than the ttl, but the node answers the heartbeat: it stays
        with trio.fail_after(10):
            assert await client.use("o://registry", "search", {"address": "o://leader/gone"})
        await node.__aexit__(None, None, None)  # gone without a word (no remove)
        with trio.fail_after(1.5 + 0.3 + 5 + 2):
            while await client.use("o://registry", "search", {"address": "o://leader/gone"}, timeout=5):
                await trio.sleep(0.1)


@trio_test(60)
async def test_a_stopping_node_notifies_and_removes_itself():
    async with AsyncExitStack() as stack:
        leader = await stack.enter_async_context(Leader())
        lma = leader.listen_addrs[0]
        client = await stack.enter_async_context(Client(leader=lma))
        tools, units = nest([CountTool("o://brief")])
        with trio.fail_after(20):
            async with Node(tools) as node:
                async with joined(node, lma, units=units):
                    assert await client.use("o://registry", "search", {"address": "o://leader/brief"})
                    assert "o://leader/brief" in leader.node.router.children
            assert await client.use("o://registry", "search", {"address": "o://leader/brief"}) == []
            assert "o://leader/brief" not in leader.node.router.children
            answer = await client.use("o://registry", "remove", {"peerId": "12D3KooWNobody"})
            assert answer["success"] is False and answer["removed"] == 0


@trio_test(90)
async def test_nodes_survive_a_leader_restart(tmp_path):
    """Same seed and port, no SQLite file: the nodes notice they are not listed
    and register again within seconds; routing works again."""
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        stop_first = trio.Event()

        async def first_leader(task_status=trio.TASK_STATUS_IGNORED):
            async with Leader(seed="leader-restart-test") as first:
                task_status.started(first.listen_addrs[0])
                await stop_first.wait()

        lma = await nursery.start(first_leader)
        port_listen = lma.split("/p2p/")[0]
        tools, units = nest([CountTool("o://stayer")])
        node = await stack.enter_async_context(Node(tools))
        membership = await stack.enter_async_context(joined(node, lma, units=units, heartbeat=0.3))
        assert membership.registrations == 1
        stop_first.set()
        await trio.sleep(0.5)
        second = await stack.enter_async_context(Leader(seed="leader-restart-test", listen=[port_listen]))
        assert second.listen_addrs[0] == lma
        with trio.fail_after(15):
            while not second.registry.search(address="o://leader/stayer"):
                await trio.sleep(0.1)
        client = await stack.enter_async_context(Client(leader=lma))
        with trio.fail_after(10):
            while True:
                try:
                    got = [c["n"] async for c in client.use_streaming("o://leader/stayer", "count", {"count": 3})]
                    break
                except OlaneError as exc:  # py-libp2p now and then refuses the first stream of a fresh connection
                    assert exc.code == 4014
                    await trio.sleep(0.2)
            assert got == [1, 2, 3]
        assert membership.registrations >= 2


@trio_test(60)
async def test_registry_survives_a_leader_restart_with_its_sqlite_file(tmp_path):
    path = tmp_path / "registry.sqlite"
    async with AsyncExitStack() as stack:
        tools, units = nest([CountTool("o://kept")])
        node = await stack.enter_async_context(Node(tools))
        async with Leader(registry_path=path) as first:
            lma = first.listen_addrs[0]
            async with Client(leader=lma) as client:
                with trio.fail_after(10):
                    await client.use("o://registry", "commit", {
                        "peerId": node.peer_id, "address": "o://leader/kept", "staticAddress": "o://kept",
                        "protocols": ["/o/leader/kept", "/o/kept"],
                        "transports": [{"value": t, "type": "libp2p"} for t in node.transports()]})
        async with Leader(registry_path=path) as second:
            assert second.registry.search(address="o://leader/kept")
            async with Client(leader=second.listen_addrs[0]) as client:
                with trio.fail_after(10):  # routed from the persisted entry alone (no child_register since)
                    got = [c["n"] async for c in client.use_streaming("o://leader/kept", "count", {"count": 2})]
                    assert got == [1, 2]
                    got = [c["n"] async for c in client.use_streaming("o://kept", "count", {"count": 2})]
                    assert got == [1, 2]


@trio_test(60)
async def test_several_tools_of_one_node_are_each_reachable():
    async with AsyncExitStack() as stack:
        leader = await stack.enter_async_context(Leader())
        lma = leader.listen_addrs[0]
        tools, units = nest([CountTool("o://lab/count"), StreamDemoTool("o://lab/demo")])
        assert [u.value for u in units] == ["o://leader/lab"]
        node = await stack.enter_async_context(Node(tools))
        await stack.enter_async_context(joined(node, lma, units=units))
        client = await stack.enter_async_context(Client(leader=lma))
        with trio.fail_after(10):
            assert (await client.use("o://leader/lab", "ping", {}))["message"] == "Pong!"
            assert (await client.use("o://leader/lab/demo", "echo", {"message": "x"}))["message"] == "x"
            assert [c["n"] async for c in client.use_streaming("o://leader/lab/count", "count", {"count": 2})] == [1, 2]
            assert (await client.use("o://demo", "echo", {"message": "y"}))["message"] == "y"  # static, via registry


def test_registry_search_has_no_duplicates_and_expires():
    now = [0.0]
    registry = Registry(clock=lambda: now[0])
    registry.commit({"peerId": "p1", "address": "o://leader/a", "staticAddress": "o://a", "protocols": ["/o/a"]})
    registry.commit({"peerId": "p2", "address": "o://leader/b", "staticAddress": "o://b", "protocols": ["/o/b"]})
    assert [e["peerId"] for e in registry.search("o://a", "o://leader/a", ["/o/a"])] == ["p1"]
    assert registry.search() == []
    now[0] = 10
    registry.touch("p2", "o://leader/b")
    now[0] = 20
    assert [e["peerId"] for e in registry.expire(15)] == ["p1"]
    assert [e["peerId"] for e in registry.find_all()] == ["p2"]
    assert registry.remove("nobody") == 0 and registry.remove("p2") == 1


def test_cli_leader_node_call_and_network(tmp_path):
    """Real processes: `olane leader`, `olane node --leader`, `olane call/stream` by address
    through the leader and `--direct`, `olane network --json`; a killed node expires."""
    import json as _json
    import signal
    import subprocess
    import time

    from process_helpers import OLANE, olane, read_listening_line, start_node, stop_process

    data = {"OLANE_DATA_DIR": str(tmp_path)}
    leader = subprocess.Popen([OLANE, "leader", "--listen", "/ip4/127.0.0.1/tcp/0", "--ttl", "2", "--heartbeat", "0.3",
                               "--registry", str(tmp_path / "reg.sqlite")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**__import__("os").environ, **data})
    node = None
    try:
        lma = read_listening_line(leader)
        node, _ = start_node("--tools", "demo", "--leader", lma, env=data)
        done = olane("call", lma, "ping", "--address", "o://leader/demo", env=data)
        assert done.returncode == 0, done.stderr
        assert _json.loads(done.stdout) == {"message": "Pong!"}
        done = olane("stream", lma, "stream_items", "--address", "o://demo", "--params", '{"count": 3, "delayMs": 1}',
                     env=data)
        assert done.returncode == 0, done.stderr
        assert [_json.loads(line).get("seq") for line in done.stdout.splitlines()] == [1, 2, 3, None]
        done = olane("call", lma, "ping", "--address", "o://leader/demo", "--direct", env=data)
        assert done.returncode == 0, done.stderr
        rows = _json.loads(olane("network", lma, "--json", env=data).stdout)
        demo = [r for r in rows if r["address"] == "o://leader/demo"]
        assert demo and demo[0]["reachable"] and demo[0]["staticAddress"] == "o://demo" and demo[0]["transports"]
        stop_process(node, signal.SIGKILL)
        deadline = time.monotonic() + 20  # ttl 2 s + heartbeat, generously
        while any(r["address"] == "o://leader/demo"
                  for r in _json.loads(olane("network", lma, "--json", env=data).stdout)):
            assert time.monotonic() < deadline, "the killed node is still listed"
            time.sleep(0.3)
    finally:
        if node is not None:
            stop_process(node)
        stop_process(leader)


def test_network_up_prints_the_leader_lists_nested_nodes_and_stops_every_process_when_its_terminal_closes(tmp_path):
    """`olane network up --nodes 3`: a leader and 3 node processes (one two deep); `olane network
    --json` lists them reachable; the SIGHUP a closed terminal sends its process group stops
    every node process (nodes take SIGHUP as "reread the allow file", so `network up` keeps them
    in their own sessions and stops them itself; Ctrl-C's SIGINT takes the same path)."""
    import json as _json
    import os
    import re
    import signal
    import subprocess

    from process_helpers import OLANE, olane, read_listening_line, stop_process

    env = {**os.environ, "OLANE_DATA_DIR": str(tmp_path)}
    up = subprocess.Popen([OLANE, "network", "up", "--nodes", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env, start_new_session=True)  # no terminal Ctrl-C reaches the nodes
    narrative = ""
    try:
        lma = read_listening_line(up, timeout=90)
        done = olane("network", lma, "--json", env=env)
        assert done.returncode == 0, done.stderr
        rows = {r["address"]: r for r in _json.loads(done.stdout)}
        nodes = {"o://leader/demo0", "o://leader/sqlite1", "o://leader/sqlite1/files2"}
        assert nodes <= set(rows), rows.keys()
        assert all(rows[a]["reachable"] for a in nodes)
        assert len({rows[a]["peerId"] for a in nodes}) == 3  # three processes
        os.killpg(up.pid, signal.SIGHUP)  # what a closed terminal sends its foreground group
        assert up.wait(30) == 0
        narrative = up.stderr.read()
        pids = [int(p) for p in re.findall(r"^node o://\S+ pid (\d+) ", narrative, re.M)]
        assert len(pids) == 3, narrative
        for pid in pids:  # gone (reaped by network up), not merely told to stop
            assert not os.path.exists(f"/proc/{pid}") or "olane" not in open(f"/proc/{pid}/cmdline").read()
    finally:
        stop_process(up)
        _kill_listed_nodes(up, narrative)


def _kill_listed_nodes(up, narrative: str) -> None:
    """After a failure: the node processes `network up` said it started (in `narrative`,
    its stderr, when already read) must not outlive the test."""
    import os
    import re
    import signal

    if not narrative:
        try:
            narrative = up.stderr.read() if not up.stderr.closed else ""
        except ValueError:
            narrative = ""
    for pid in re.findall(r"^node o://\S+ pid (\d+) ", narrative or "", re.M):
        try:
            if "olane" in open(f"/proc/{pid}/cmdline").read():
                os.kill(int(pid), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass
