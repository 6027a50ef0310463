"""The seed's streaming examples (`examples/streaming-tool-example.ts`) as one tool
at `o://demo`, with the seed's method names, parameter names, defaults and chunk
shapes, plus a `delayMs` on every stream.

Timing contract: chunk n (1-based) of a stream with `delayMs` = d is yielded at
start + n * d (the seed sleeps before each yield). Deadlines are computed from
the start time with `trio.sleep_until`, so a slow consumer or a busy node delays
a chunk without shifting all the later ones. `delayMs` = 0 means no sleep at all
(as fast as the runtime and the consumer allow).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import trio

from node_runtime import ErrorCode, Incoming, OlaneError, Param, Request, StreamEnd, Tool, tool_method

MAX_UNARY_ITEMS = 10_000  # 10k items is ~0.8 MB: well inside one 16 MiB frame
MAX_STREAM_COUNT = 10_000_000
MAX_DELAY_MS = 60_000


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Pacer:
    """Deadlines on a grid from one start time: chunk n is due at start + n * delay."""

    def __init__(self, delay_ms: float) -> None:
        self.delay = delay_ms / 1000.0
        self.start = trio.current_time()

    async def wait_for(self, n: int) -> None:
        if self.delay > 0:  # 0: no checkpoint at all, the runtime's own are enough
            await trio.sleep_until(self.start + n * self.delay)


_DELAY = {"description": "milliseconds between two chunks (0: as fast as possible)", "minimum": 0,
          "maximum": MAX_DELAY_MS}


class DemoTool(Tool):
    """The seed's example tool: items, text, query batches, progress and a failing stream."""

    address = "o://demo"
    description = "The seed's streaming examples: items, text, query batches, progress, and a stream that fails."

    @tool_method(
        "Returns `count` items at once (the non-streaming counterpart of stream_items): {items, total}.",
        params={"count": Param("how many items", examples=[3, 10], minimum=0, maximum=MAX_UNARY_ITEMS)},
        category="demo",
        examples=[{"count": 3}],
    )
    async def _tool_get_items(self, request: Request, count: int = 10) -> dict[str, Any]:
        now = _now()
        items = [{"id": i + 1, "name": f"Item {i + 1}", "timestamp": now} for i in range(count)]
        return {"items": items, "total": count}

    @tool_method(
        "Bidirectional: yields each chunk the caller sends back as it arrives, with its count: {count, data}. "
        "The final frame says how many: {count}.",
        category="demo",
    )
    async def _tool_echo_stream(self, request: Request, incoming: Incoming):
        count = 0
        async for data in incoming:
            count += 1
            yield {"count": count, "data": data}
        yield StreamEnd({"count": count})

    @tool_method(
        "Client streaming: the caller sends numbers (or {value: number}); once it ends, answers {total, count}.",
        category="demo",
    )
    async def _tool_sum_stream(self, request: Request, incoming: Incoming) -> dict[str, Any]:
        total: float = 0
        count = 0
        async for data in incoming:
            value = data.get("value") if isinstance(data, dict) else data
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise OlaneError(ErrorCode.INVALID_PARAMETERS, f"chunk {count + 1} is not a number: {data!r}"[:200])
            total += value
            count += 1
        return {"total": total, "count": count}

    @tool_method(
        "Streams `count` items, one chunk each `delayMs`: {id, name, data, timestamp, progress}.",
        params={
            "count": Param("how many items", examples=[5, 100], minimum=0, maximum=MAX_STREAM_COUNT),
            "delayMs": Param(examples=[0, 100], **_DELAY),
        },
        category="demo",
        examples=[{"count": 5, "delayMs": 100}],
    )
    async def _tool_stream_items(self, request: Request, count: int = 10, delayMs: int = 100):
        pacer = _Pacer(delayMs)
        for i in range(1, count + 1):
            await pacer.wait_for(i)
            # the seed's example file says `name`, its README `data`: both, same text
            yield {"id": i, "name": f"Item {i}", "data": f"Item {i}", "timestamp": _now(),
                   "progress": i / count * 100}

    @tool_method(
        "Streams `text` in pieces of `chunkSize` characters, LLM style: {text, delta, position, isComplete}. "
        "`delta` repeats `text` so that the final frame ({message}) holds the whole text, as in TypeScript olane.",
        params={
            "text": Param("the text to stream", examples=["Hello from olane, one piece at a time."]),
            "chunkSize": Param("characters per chunk", examples=[5, 10], minimum=1, maximum=1_000_000),
            "delayMs": Param(examples=[0, 50], **_DELAY),
        },
        category="demo",
        examples=[{"text": "Hello from olane, one piece at a time.", "chunkSize": 5}],
    )
    async def _tool_stream_text(self, request: Request, text: str = "Default streaming text...",
                                chunkSize: int = 10, delayMs: int = 50):
        pacer = _Pacer(delayMs)
        for n, position in enumerate(range(0, len(text), chunkSize), start=1):
            await pacer.wait_for(n)
            piece = text[position:position + chunkSize]
            yield {"text": piece, "delta": piece, "position": position,
                   "isComplete": position + chunkSize >= len(text)}

    @tool_method(
        "Simulates a paginated database query: `total` records (seed: 50) in batches of `batchSize`: "
        "{records: [{id, data, query}], offset, batchSize, hasMore}. The last batch may be shorter.",
        params={
            "query": Param("any text; it is echoed in every record", examples=["SELECT * FROM users"]),
            "batchSize": Param("records per batch", examples=[10, 25], minimum=1, maximum=100_000),
            "total": Param("how many records the simulated query has", examples=[50, 1000], minimum=0,
                           maximum=MAX_STREAM_COUNT),
            "delayMs": Param(examples=[0, 100], **_DELAY),
        },
        category="demo",
        examples=[{"query": "SELECT * FROM users", "batchSize": 10}],
    )
    async def _tool_stream_query(self, request: Request, query: str, batchSize: int = 10, total: int = 50,
                                 delayMs: int = 100):
        pacer = _Pacer(delayMs)
        for n, offset in enumerate(range(0, total, batchSize), start=1):
            await pacer.wait_for(n)
            records = [{"id": i, "data": f"Record {i}", "query": query}
                       for i in range(offset + 1, min(offset + batchSize, total) + 1)]
            yield {"records": records, "offset": offset, "batchSize": len(records),
                   "hasMore": offset + batchSize < total}

    @tool_method(
        "Streams progress of a simulated task, one step per chunk: "
        "{taskName, currentStep, totalSteps, progress (0-100), estimatedTimeRemaining ('4.9s'), status}; "
        "status is 'running', then 'complete' on the last step.",
        params={
            "taskName": Param("a label repeated in every chunk", examples=["Processing", "Data import"]),
            "totalSteps": Param("how many steps", examples=[20, 100], minimum=1, maximum=MAX_STREAM_COUNT),
            "delayMs": Param(examples=[0, 100], **_DELAY),
        },
        category="demo",
        examples=[{"taskName": "Data import", "totalSteps": 20, "delayMs": 100}],
    )
    async def _tool_stream_progress(self, request: Request, taskName: str = "Processing", totalSteps: int = 100,
                                    delayMs: int = 100):
        pacer = _Pacer(delayMs)
        for step in range(1, totalSteps + 1):
            await pacer.wait_for(step)
            remaining = (totalSteps - step) * delayMs / 1000
            yield {
                "taskName": taskName,
                "currentStep": step,
                "totalSteps": totalSteps,
                "progress": round(step / totalSteps * 100),
                "estimatedTimeRemaining": f"{remaining:.1f}s",
                "status": "complete" if step == totalSteps else "running",
            }

    @tool_method(
        "Streams items 0 .. count-1 ({id, message}) and fails at item `failAt` (-1, or >= count: never). "
        "Exactly `failAt` chunks (ids 0 .. failAt-1) arrive, then error 4001 "
        "'Intentional error at item <failAt>' with details {failAt, chunksSent}.",
        params={
            "failAt": Param("index of the item that fails (-1: none)", examples=[3, 5, -1]),
            "count": Param("how many items without a failure", examples=[10], minimum=0, maximum=MAX_STREAM_COUNT),
            "delayMs": Param(examples=[0, 100], **_DELAY),
        },
        category="demo",
        examples=[{"failAt": 5}],
    )
    async def _tool_stream_with_error(self, request: Request, failAt: int = -1, count: int = 10, delayMs: int = 100):
        pacer = _Pacer(delayMs)
        for i in range(count):
            if i == failAt:
                # 4001 UNKNOWN is what a TypeScript tool's thrown Error becomes on the wire
                raise OlaneError(ErrorCode.UNKNOWN, f"Intentional error at item {i}",
                                 {"failAt": failAt, "chunksSent": i})
            await pacer.wait_for(i + 1)
            yield {"id": i, "message": f"Item {i} processed successfully"}
