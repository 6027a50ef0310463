"""The console sees a network: the plain-Python picture (entries -> nested nodes,
states, joins and leaves), and the real app on a real leader with real nodes
joining, leaving and going stale while it watches (Pilot)."""
from __future__ import annotations

import os

import trio

from console.core.network import GONE, REACHABLE, STALE, Network
from console.core.session import ConsoleSession
from console.widgets.node_tree import MethodRef, NodeTree
from console_helpers import running_console, start_call, wait_for
from node_runtime import ErrorCode, Node, OlaneError, Request, Tool
from node_runtime.joining import joined, nest
from node_runtime.leader import Leader
from stream_demo_tool import StreamDemoTool


def entry(address, peer="p", protocols=None, at=1):
    return {"peerId": peer, "address": address, "staticAddress": "o://" + address.rsplit("/", 1)[-1],
            "protocols": protocols if protocols is not None else ["/o/" + address[4:], "/o/reuse"],
            "transports": [{"value": f"/ip4/127.0.0.1/tcp/1/p2p/{peer}", "type": "libp2p"}], "registeredAt": at}


def test_network_nests_nodes_diffs_polls_and_keeps_gone_nodes_a_while():
    now = [0.0]
    net = Network("leader-peer", gone_keep=10, clock=lambda: now[0])
    first = net.update([
        entry("o://leader/registry", "leader-peer"),  # the registry's own entry: not a node
        entry("o://leader/alpha/beta", "b"), entry("o://leader/alpha", "a"),
        entry("o://leader/lab", "l", ["/o/leader/lab", "/o/leader/lab/demo", "/o/leader/lab/sqlite", "/o/demo",
                                      "/o/reuse", "/ipfs/id/1.0.0"]),
        entry("o://solo", "s"),
    ])
    assert sorted(first.joined) == ["o://leader/alpha", "o://leader/alpha/beta", "o://leader/lab", "o://solo"]
    assert [n.address for n in net.children()] == ["o://leader/alpha", "o://leader/lab", "o://solo"]
    assert [n.address for n in net.children("o://leader/alpha")] == ["o://leader/alpha/beta"]
    assert net.nodes["o://leader/lab"].tool_addresses() == ["o://leader/lab", "o://leader/lab/demo",
                                                            "o://leader/lab/sqlite"]
    assert net.hops("o://leader/alpha/beta") == ["o://leader", "o://leader/alpha"]
    assert net.hops("o://leader/lab/demo") == ["o://leader"]
    assert net.node_of("o://leader/lab/sqlite").address == "o://leader/lab"
    assert {n.address for n in net.due(5)} == set(net.nodes)  # never checked: all due
    assert net.mark("o://leader/alpha", True) and net.nodes["o://leader/alpha"].state == REACHABLE
    assert not net.mark("o://leader/alpha", True)  # no change, nothing to redraw
    assert net.mark("o://solo", False, "no answer to ping (TIMEOUT)") and net.nodes["o://solo"].state == STALE
    assert "o://leader/alpha" not in {n.address for n in net.due(5)}
    assert not net.update([entry("o://leader/alpha/beta", "b"), entry("o://leader/alpha", "a"),
                           entry("o://leader/lab", "l", net.nodes["o://leader/lab"].protocols), entry("o://solo", "s")])
    now[0] = 3
    left = net.update([entry("o://leader/alpha", "a"), entry("o://leader/lab", "l",
                                                              net.nodes["o://leader/lab"].protocols)])
    assert sorted(left.left) == ["o://leader/alpha/beta", "o://solo"]
    assert net.nodes["o://solo"].state == GONE and not net.mark("o://solo", True)  # gone stays gone
    assert net.counts()[GONE] == 2
    now[0] = 5  # beta back, from another process (new peer id): its methods are listed again
    net.nodes["o://leader/alpha/beta"].listed = True
    back = net.update([entry("o://leader/alpha", "a"), entry("o://leader/alpha/beta", "b2", at=2)])
    assert back.back == ["o://leader/alpha/beta"] and "o://leader/lab" in back.left
    assert net.nodes["o://leader/alpha/beta"].listed is False and net.nodes["o://leader/alpha/beta"].peer_id == "b2"
    now[0] = 13.5  # solo gone for 10.5 s: out of the picture; lab (gone at 5) still shown
    assert net.prune() == ["o://solo"] and "o://leader/lab" in net.nodes


class PlainTypeScriptLike(Tool):
    """What a plain TypeScript node answers: no method list (4003), methods that work."""

    address = "o://plain"

    async def _tool_handshake(self, request: Request):
        raise OlaneError(ErrorCode.NOT_IMPLEMENTED, "Method not implemented")

    async def _tool_echo(self, request: Request, message: str = ""):
        return {"echo": message}


async def serve_member(tools, lma, parent, started: list, stop: trio.Event, task_status=trio.TASK_STATUS_IGNORED):
    """(trio, on the console's side) a node joined to the leader until `stop`; leaves cleanly."""
    tools, units = nest(tools, parent)
    try:
        async with Node(tools) as node:
            async with joined(node, lma, parent=parent, units=units, heartbeat=3600):
                started.append(node)
                await stop.wait()
    finally:
        started.append(None)  # one None per member that ended


async def _poke(session, target):
    session.poll_network(target)  # wake the watch (trio side), so the shorter interval applies


async def test_the_console_watches_a_network_as_nodes_join_go_stale_and_leave():
    session = ConsoleSession(embedded=False, network_poll=0.3, network_check=0.5, network_gone_keep=1.5,
                             heartbeat_timeout=2.0)
    async with running_console(session=session, wait_connected=False) as (app, pilot):
        bridge = app.bridge
        ready, leader_stop = [], trio.Event()

        async def run_leader():
            async with Leader(ttl=3600, heartbeat=3600) as leader:
                ready.append(leader)
                await leader_stop.wait()

        bridge.submit(run_leader)
        await wait_for(pilot, lambda: ready, what="the leader")
        leader = ready[0]
        lma = leader.listen_addrs[0]
        members, stops = [], {name: trio.Event() for name in ("alpha", "beta", "plain")}
        try:
            bridge.submit(serve_member, [StreamDemoTool("o://alpha")], lma, "o://leader", members, stops["alpha"])
            await wait_for(pilot, lambda: len(members) == 1, what="alpha joined")
            assert members[0] is not None
            await bridge.call(session.add_target, lma)  # as adding a node in the app does
            target = session.targets[0]
            assert target.network is not None and target.label.startswith("leader ")
            tree = app.query_one(NodeTree)
            await wait_for(pilot, lambda: tree.network_nodes().get("o://leader/alpha")
                           and tree.network_nodes()["o://leader/alpha"].state == REACHABLE, what="alpha in the tree")

            # joins appear without pressing refresh: nested two deep, and a node with no method list
            bridge.submit(serve_member, [StreamDemoTool("o://beta")], lma, "o://leader/alpha", members, stops["beta"])
            bridge.submit(serve_member, [PlainTypeScriptLike()], lma, "o://leader", members, stops["plain"])
            await wait_for(pilot, lambda: {"o://leader/alpha/beta", "o://leader/plain"} <= set(tree.network_nodes())
                           and all(n.state == REACHABLE for n in tree.network_nodes().values()), timeout=15,
                           what="beta and plain in the tree, reachable")
            rows = {n.data[2].address: n for n in tree._walk() if isinstance(n.data, tuple) and n.data[0] == "netnode"}
            assert rows["o://leader/alpha/beta"].parent is rows["o://leader/alpha"]  # nested as addresses nest
            assert rows["o://leader/alpha"].parent.data is target
            methods = {(n.data.address, n.data.method.name, n.data.method.typed_by_hand) for n in tree._walk()
                       if isinstance(n.data, MethodRef)}
            assert ("o://leader/alpha/beta", "stream_items", False) in methods
            assert ("o://leader/plain", "", True) in methods  # type a method by hand (handshake said 4003)
            plain = target.tool("o://leader/plain")
            assert plain.methods == {} and "4003" in plain.listing_error  # its own handshake answered, routed
            assert session.errors == []

            # a call to a nested address goes through the leader; its pane names the hops
            record = start_call(app, "o://leader/alpha/beta", "stream_items", {"count": 50}, target)
            await wait_for(pilot, lambda: record.state.ended, what="the routed stream")
            assert record.state.value == "completed" and record.count == 50 and record.check.gaps == 0
            assert record.route == ["o://leader", "o://leader/alpha"]
            await pilot.pause(0.2)
            route = app.current_view.query_one(".call-route")
            assert "via o://leader -> o://leader/alpha" in str(route.render())
            # its tab names the node reached (every routed tab would name the same leader)
            assert str(app.call_tabs.get_tab(f"call-{record.number}").label).endswith("stream_items #1 · beta")

            # an entry whose node does not answer (a process killed without a word): stale,
            # while the registry still lists it
            from node_runtime.host import peer_id_for_seed

            ghost = peer_id_for_seed(seed="a node that is not there")

            async def commit_ghost():
                await session.client.use("o://registry", "commit", {
                    "peerId": ghost, "address": "o://leader/ghost", "staticAddress": "o://ghost",
                    "protocols": ["/o/leader/ghost"],
                    "transports": [{"value": f"/ip4/127.0.0.1/tcp/9/p2p/{ghost}", "type": "libp2p"}]},
                    via=lma, protocol="/o/leader", timeout=5)

            session.network_poll = 3600  # from the next wait on: only `r` reads the registry
            await pilot.pause(0.5)
            await bridge.call(commit_ghost)
            tree.focus()
            tree.cursor_line = 0  # the leader's row
            await pilot.press("r")  # on demand
            await wait_for(pilot, lambda: tree.network_nodes().get("o://leader/ghost")
                           and tree.network_nodes()["o://leader/ghost"].state == STALE, timeout=15, what="ghost stale")
            session.network_poll = 0.3
            await bridge.call(_poke, session, target)
            if os.environ.get("OLANE_SCREENSHOT"):  # docs/console-network.svg is taken here
                await pilot.pause(0.3)
                app.save_screenshot(os.environ["OLANE_SCREENSHOT"])

            # a node that stops (notify + remove) shows gone, then disappears
            stops["beta"].set()
            await wait_for(pilot, lambda: tree.network_nodes().get("o://leader/alpha/beta") is not None
                           and tree.network_nodes()["o://leader/alpha/beta"].state == GONE, timeout=10,
                           what="beta gone")
            await wait_for(pilot, lambda: "o://leader/alpha/beta" not in tree.network_nodes(), timeout=10,
                           what="beta out of the tree")
            assert tree.network_nodes()["o://leader/alpha"].state == REACHABLE
        finally:
            for stop in stops.values():
                stop.set()
            started = sum(1 for m in members if m is not None)
            await wait_for(pilot, lambda: members.count(None) >= started, timeout=10, what="the members stopped")
            leader_stop.set()
            await pilot.pause(0.2)
