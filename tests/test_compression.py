"""Compressed answers (docs/protocol-extensions.md, "Compressed regions") over real
libp2p nodes on 127.0.0.1 and a real SQLite file: the same rows in far fewer
bytes, and never a compressed byte toward a caller that did not ask."""
from __future__ import annotations

import orjson
import pytest
import trio

from node_runtime import Client, Node, StreamingCall
from node_runtime.compression import REGION, Inflater
from node_runtime.framing import FrameDecoder, frame
from tool_library.demo import DemoTool
from tool_library.sample_data import build_sample_db
from tool_library.sqlite_tool import SqliteTool

from trio_helpers import run_trio

ORDERS = "SELECT * FROM orders"


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("compression") / "sample.db"
    build_sample_db(path)
    return path


async def _rows(call) -> list:
    rows = []
    async for chunk in call:
        rows.extend(chunk.get("rows") or ())
    return rows


def test_compressed_and_plain_queries_give_identical_rows_in_a_third_of_the_bytes(sample_db):
    async def body():
        async with Node([SqliteTool(db_path=sample_db), DemoTool()]) as node, Client() as client:
            ma = node.listen_addrs[0]
            plain = client.use_streaming("o://sqlite", "query", {"sql": ORDERS}, via=ma, compress=False, timeout=60)
            plain_rows = await _rows(plain)
            packed = client.use_streaming("o://sqlite", "query", {"sql": ORDERS}, via=ma, compress="zstd", timeout=60)
            packed_rows = await _rows(packed)
            assert len(plain_rows) == 120_000 and packed_rows == plain_rows
            assert packed.final == {**plain.final, "elapsedMs": packed.final["elapsedMs"]}
            assert packed.compressed and not plain.compressed
            assert plain.wire_bytes == plain.data_bytes
            # the target: at most 35% of the uncompressed wire bytes
            assert packed.wire_bytes <= 0.35 * plain.wire_bytes, (packed.wire_bytes, plain.wire_bytes)
            assert packed.data_bytes > 2 * packed.wire_bytes
            # a unary answer, compressed when asked
            unary = StreamingCall(client, "o://demo", "get_items", {"count": 2000}, via=ma, first_frame_timeout=10,
                                  idle_timeout=10, codec=None, streaming=False, compress="zstd")
            items = (await unary.result())["items"]
            assert [(i["id"], i["name"]) for i in items] == [(i, f"Item {i}") for i in range(1, 2001)]
            assert unary.wire_bytes < unary.data_bytes / 4
            # small chunks compress together: a text stream in 2-character pieces
            text = "the quick brown fox jumps over the lazy dog " * 50
            small = client.use_streaming("o://demo", "stream_text", {"text": text, "chunkSize": 2, "delayMs": 0},
                                         via=ma, compress="zstd", timeout=30)
            pieces = [c["delta"] async for c in small]
            assert "".join(pieces) == text and small.wire_bytes < small.data_bytes / 4

    run_trio(body, timeout=90)


def test_no_compressed_byte_toward_a_caller_that_did_not_ask(sample_db):
    """A node that compresses by default: a TypeScript-shaped caller and a client
    that said no get plain frames; one stream shared by a request that asked and one
    that did not carries both, each as asked."""
    from libp2p.custom_types import TProtocol

    def envelope(rid: str, sql: str, extra: dict | None = None) -> bytes:
        params = {"_connectionId": "c", "_requestMethod": "route", "_callerAddress": "o://ts",
                  "_isStreaming": True, "address": "o://sqlite",
                  "payload": {"method": "query", "params": {"sql": sql, "_isStreaming": True}}, **(extra or {})}
        return frame(orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "route", "params": params}))

    async def read_all(stream) -> list[bytes]:
        decoder = FrameDecoder()
        payloads: list[bytes] = []
        with trio.fail_after(30):
            while not payloads or b'"_last":true' not in payloads[-1]:
                payloads += decoder.feed(await stream.read(1 << 16))
        return payloads

    async def body():
        async with Node([SqliteTool(db_path=sample_db)], compress="zstd") as node, \
                Client(compress=False) as refusing, Client() as accepting:
            ma = node.listen_addrs[0]
            # a caller that sent no _compress (TypeScript olane): every payload is a plain JSON frame
            peer = await refusing.peers.peer_at(ma)
            stream = await refusing.host.new_stream(peer, [TProtocol("/o/sqlite")])
            await stream.write(envelope("ts-1", "SELECT * FROM orders LIMIT 3000"))
            payloads = await read_all(stream)
            await stream.reset()
            assert len(payloads) > 3 and all(p[:1] == b"{" for p in payloads)
            assert REGION not in b"".join(payloads)  # not one region byte anywhere
            # our client that said no: wire bytes are the data bytes
            call = refusing.use_streaming("o://sqlite", "query", {"sql": "SELECT * FROM orders LIMIT 3000"}, via=ma)
            rows = await _rows(call)
            assert not call.compressed and call.wire_bytes == call.data_bytes
            # our client by default accepts, and this node compresses by default
            again = accepting.use_streaming("o://sqlite", "query", {"sql": "SELECT * FROM orders LIMIT 3000"},
                                            via=ma)
            assert await _rows(again) == rows and again.compressed and again.wire_bytes < again.data_bytes / 2

            # one stream, two requests: "a" asked for zstd, "b" did not
            stream = await refusing.host.new_stream(peer, [TProtocol("/o/sqlite")])
            await stream.write(envelope("a", "SELECT * FROM orders LIMIT 2000", {"_compress": "zstd"})
                               + envelope("b", "SELECT * FROM orders LIMIT 2000"))
            inflater = Inflater(1 << 24, 1 << 25)
            decoder = FrameDecoder()
            plain_ids, packed_ids, done = [], [], set()
            with trio.fail_after(30):
                while len(done) < 2:
                    for p in decoder.feed(await stream.read(1 << 16)):
                        if p[:1] == b"{":
                            inner, into = [p], plain_ids
                        else:
                            inner, into = inflater.expand([p]), packed_ids
                        for q in inner:
                            message = orjson.loads(q)
                            into.append(message["id"])
                            if message["result"]["_last"]:
                                done.add(message["id"])
            await stream.reset()
            assert set(plain_ids) == {"b"} and set(packed_ids) == {"a"}
            assert plain_ids.count("b") == packed_ids.count("a")  # the same answer, each as asked

    run_trio(body, timeout=90)
