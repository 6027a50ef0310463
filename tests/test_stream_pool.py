"""Stream reuse for short calls (issue 14, item 3), over real libp2p on 127.0.0.1:
calls in sequence share pooled streams (the node counts the streams it served),
a cancelled call's stream is reset and never handed to the next call, the pool
is bounded, and a stream the node closed is replaced without the caller noticing."""
from __future__ import annotations

import trio

from node_runtime import Client, Limits, Node, Request, Tool

from trio_helpers import run_trio


async def wait_until(predicate, what: str, timeout: float = 5.0) -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"not within {timeout} s: {what}")


class Pooled(Tool):
    address = "o://pooled"

    def __init__(self) -> None:
        super().__init__()
        self.started = 0
        self.stopped = 0
        self.release = trio.Event()

    async def _tool_tag(self, request: Request, tag: str = ""):
        return {"tag": tag}

    async def _tool_hold(self, request: Request, tag: str = ""):
        """Answers `tag` once released; counts its starts and its ends (a reset stops it)."""
        self.started += 1
        try:
            await self.release.wait()
            return {"tag": tag}
        finally:
            self.stopped += 1


def test_sequential_calls_reuse_streams_and_a_cancelled_call_never_returns_to_the_pool():
    async def body():
        tool = Pooled()
        async with Node([tool]) as node, Client(limits=Limits(pooled_streams_per_peer=3)) as client:
            ma = node.listen_addrs[0]
            served = lambda: node.metrics.streams_total  # noqa: E731 - streams the node has been opened
            for k in range(40):
                assert await client.use("o://pooled", "tag", {"tag": f"t{k}"}, via=ma, timeout=10) == {"tag": f"t{k}"}
            # the codec probe (identify) and 40 calls, on one stream
            assert served() == 1
            assert client.peers.streams_opened == 1 and client.peers.streams_reused == 40
            assert client.peers.pooled_streams() == 1

            # a cancelled call: its stream is reset (the tool stops), not pooled
            with trio.CancelScope() as scope:
                async def cancel_once_running() -> None:
                    await wait_until(lambda: tool.started == 1, "the held call runs on the node")
                    scope.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cancel_once_running)
                    await client.use("o://pooled", "hold", {"tag": "cancelled"}, via=ma, timeout=10)
            assert scope.cancelled_caught
            assert client.peers.pooled_streams() == 0
            await wait_until(lambda: tool.stopped == 1, "the node stops the cancelled call's tool")
            tool.release.set()
            assert await client.use("o://pooled", "tag", {"tag": "next"}, via=ma, timeout=10) == {"tag": "next"}
            assert served() == 2  # a new stream for it

            # concurrent calls each take their own stream; at most 3 stay pooled
            results = {}

            async def call(k: int) -> None:
                results[k] = await client.use("o://pooled", "hold", {"tag": f"c{k}"}, via=ma, timeout=10)

            async with trio.open_nursery() as nursery:
                for k in range(6):
                    nursery.start_soon(call, k)
            assert results == {k: {"tag": f"c{k}"} for k in range(6)}
            assert client.peers.pooled_streams() == 3
            # idle pooled streams hold nothing on the node: no request, no busy connection
            assert node.metrics.snapshot()["activeRequests"] == 0
            assert client.peer_id not in node.streams.peers()

    run_trio(body)


def test_a_stream_the_node_closes_is_replaced_by_a_new_one_for_the_next_call():
    async def body():
        async with Node([Pooled()], limits=Limits(idle_stream_timeout=0.3)) as node, Client() as client:
            ma = node.listen_addrs[0]
            assert await client.use("o://pooled", "tag", {"tag": "a"}, via=ma, timeout=10) == {"tag": "a"}
            assert client.peers.pooled_streams() == 1 and node.metrics.streams_total == 1
            await wait_until(lambda: node.metrics.idle_streams_closed == 1, "the node resets the idle stream")
            await trio.sleep(0.05)  # its reset reaches the client
            assert await client.use("o://pooled", "tag", {"tag": "b"}, via=ma, timeout=10) == {"tag": "b"}
            assert node.metrics.streams_total == 2
            assert client.peers.streams_reused == 1  # only the call after identify; the reset one was dropped

    run_trio(body)


def test_pooled_streams_are_retired_after_their_idle_timeout_and_pooling_can_be_off():
    async def body():
        async with Node([Pooled()]) as node, \
                Client(limits=Limits(pooled_stream_idle_timeout=0.2)) as retiring, \
                Client(limits=Limits(pooled_streams_per_peer=0)) as unpooled:
            ma = node.listen_addrs[0]
            await retiring.use("o://pooled", "tag", via=ma, timeout=10)
            assert retiring.peers.pooled_streams() == 1
            await wait_until(lambda: retiring.peers.pooled_streams() == 0, "the idle pooled stream is retired")
            await wait_until(lambda: node.metrics.active_streams == 0, "the node sees it end")
            for _ in range(3):
                await unpooled.use("o://pooled", "tag", via=ma, timeout=10)
            assert unpooled.peers.streams_opened == 4 and unpooled.peers.streams_reused == 0

    run_trio(body)


def test_first_calls_racing_to_a_new_peer_ask_identify_once():
    class Items(Tool):
        address = "o://items"

        async def _tool_items(self, request: Request, count: int = 3):
            for i in range(count):
                yield {"i": i}

    async def body():
        async with Node([Items()]) as node, Client() as client:
            ma = node.listen_addrs[0]
            got = []

            async def call() -> None:
                got.append([c async for c in client.use_streaming("o://items", "items", via=ma, timeout=10)])

            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(call)
            assert got == [[{"i": 0}, {"i": 1}, {"i": 2}]] * 5
            assert node.metrics.requests_total == 6  # five calls and one identify
            assert client.peers.codecs_learned() == {(node.peer_id, "/o/items"): "msgpack"}

    run_trio(body)
