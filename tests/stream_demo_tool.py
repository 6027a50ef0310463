"""The tools of the TypeScript peer that recorded shared/wire (o://stream-demo), in Python,
so our server's answers can be compared with the recorded ones."""
from __future__ import annotations

from node_runtime import Request, Tool, tool_method


class StreamDemoTool(Tool):
    address = "o://stream-demo"

    async def _tool_echo(self, request: Request, message: str = ""):
        return {"message": message, "params": request.params}

    async def _tool_stream_items(self, request: Request, count: int = 3):
        for i in range(1, count + 1):
            yield {"id": i, "data": f"Item {i}", "delta": f"i{i};"}

    async def _tool_stream_items_gen(self, request: Request, count: int = 2):
        # the TypeScript node fails on `async *` tools (4001); ours streams them
        for i in range(1, count + 1):
            yield {"id": i, "data": f"Item {i}"}

    async def _tool_stream_fail(self, request: Request):
        yield {"n": 1}
        yield {"n": 2}
        raise RuntimeError("mid-stream failure")

    @tool_method("Call the caller back over the connection it opened (/o/reuse).")
    async def _tool_call_back(self, request: Request, callerAddress: str, callerTransports: list):
        answer = request.node.use_streaming(
            callerAddress, "echo", {"message": "from-ts-peer"}, via=callerTransports[0],
            protocol="/o/reuse", first_frame_timeout=10, idle_timeout=10, codec="json",
        )
        await answer.result()
        response = dict(answer.final_response.raw["result"])
        return {"callerResponse": response}


class RawClientTool(Tool):
    """What the recording's Python client answered when called back."""

    address = "o://py-client"

    async def _tool_echo(self, request: Request, message: str = ""):
        return {"message": message, "handledBy": "raw-client"}
