"""The JSON-RPC messages olane speaks (PROTOCOL.md sections 5, 6 and 9): route
envelopes and bare requests in, chunk / final / error frames out."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from .errors import ErrorCode, OlaneError

ROUTE = "route"


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class IncomingRequest:
    """One request as a server sees it, envelope unwrapped."""

    id: Any
    method: str  # the tool method to run
    params: dict[str, Any]  # what the tool sees
    envelope: bool  # arrived as a `route` envelope
    address: str | None = None  # the envelope's final target
    connection_id: str = ""
    caller_address: str | None = None
    streaming_requested: bool = False

    @property
    def terminal_method(self) -> str:
        """`_requestMethod` of final frames: `route` for envelopes, else the method."""
        return ROUTE if self.envelope else self.method


def _check_id(value: Any, what: str, max_bytes: int) -> None:
    """Ids are echoed in every answer: only short strings and integers (or null)."""
    if value is None or (type(value) is int and -(2**63) <= value < 2**64):
        return
    if type(value) is str:
        if len(value) > max_bytes:
            raise OlaneError(ErrorCode.INVALID_REQUEST, f"{what} is {len(value)} characters, over the limit of {max_bytes}")
        return
    raise OlaneError(ErrorCode.INVALID_REQUEST, f"{what} must be a string or an integer, not {type(value).__name__}")


def parse_request(message: dict[str, Any], max_id_bytes: int = 1024) -> IncomingRequest:
    """Read a request frame. Raises OlaneError 4009 when it is not one."""
    if "method" not in message:
        raise OlaneError(ErrorCode.INVALID_REQUEST, "frame has no method")
    method = message.get("method")
    req_id = message.get("id")
    _check_id(req_id, "id", max_id_bytes)
    params = message.get("params")
    if params is None:
        params = {}
    if not isinstance(method, str) or not isinstance(params, dict):
        raise OlaneError(ErrorCode.INVALID_REQUEST, "method must be a string and params an object")
    if method == ROUTE and isinstance(params.get("payload"), dict):
        payload = params["payload"]
        inner_method = payload.get("method")
        inner_params = payload.get("params") or {}
        if not isinstance(inner_method, str) or not isinstance(inner_params, dict):
            raise OlaneError(ErrorCode.INVALID_REQUEST, "route payload needs a method and object params")
        connection_id = params.get("_connectionId") or ""
        _check_id(connection_id, "_connectionId", max_id_bytes)
        address = params.get("address")
        if address is not None and type(address) is not str:
            raise OlaneError(ErrorCode.INVALID_REQUEST, "params.address must be a string")
        caller = params.get("_callerAddress")
        seen = {"_connectionId": connection_id, "_requestMethod": inner_method}
        seen.update(inner_params)
        return IncomingRequest(
            id=req_id,
            method=inner_method,
            params=seen,
            envelope=True,
            address=address,
            connection_id=connection_id,
            caller_address=caller if type(caller) is str else None,
            streaming_requested=bool(params.get("_isStreaming") or inner_params.get("_isStreaming")),
        )
    connection_id = params.get("_connectionId") or ""
    _check_id(connection_id, "_connectionId", max_id_bytes)
    return IncomingRequest(
        id=req_id,
        method=method,
        params=params,
        envelope=False,
        connection_id=connection_id,
        streaming_requested=bool(params.get("_isStreaming")),
    )


def _result(req: IncomingRequest, body: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req.id, "result": body}


def chunk_frame(req: IncomingRequest, data: Any, sequence: int) -> dict[str, Any]:
    return _result(
        req,
        {
            "id": req.id,
            "data": data,
            "success": True,
            "_last": False,
            "_isStreaming": True,
            "_requestMethod": req.method,
            "_connectionId": req.connection_id,
            "_sequence": sequence,
        },
    )


def final_frame(
    req: IncomingRequest, data: Any, *, sequence: int | None = None, chunks: int | None = None
) -> dict[str, Any]:
    body = {
        "id": req.id,
        "data": data,
        "success": True,
        "_last": True,
        "_isStreaming": False,
        "_requestMethod": req.terminal_method,
        "_connectionId": req.connection_id,
    }
    if sequence is not None:
        body["_sequence"] = sequence
        body["_chunks"] = chunks
    return _result(req, body)


def error_frame(
    req: IncomingRequest, error: OlaneError, *, sequence: int | None = None, chunks: int | None = None
) -> dict[str, Any]:
    wire = error.to_wire()
    body = {
        "id": req.id,
        "data": {"error": wire},
        "error": wire,
        "success": False,
        "_last": True,
        "_isStreaming": False,
        "_requestMethod": req.terminal_method,
        "_connectionId": req.connection_id,
    }
    if sequence is not None:
        body["_sequence"] = sequence
        body["_chunks"] = chunks
    return _result(req, body)


def unreadable_frame_error(error: OlaneError, req_id: Any = None) -> dict[str, Any]:
    """The answer to a frame that could not be read as a request at all."""
    req = IncomingRequest(id=req_id, method="", params={}, envelope=False)
    return error_frame(req, error)


def route_request(
    address: str,
    method: str,
    params: dict[str, Any] | None,
    *,
    request_id: str,
    connection_id: str,
    caller_address: str,
    streaming: bool,
) -> dict[str, Any]:
    """The `route` envelope a client sends (the shape TypeScript clients send)."""
    inner = dict(params or {})
    if streaming:
        inner["_isStreaming"] = True
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": ROUTE,
        "params": {
            "_connectionId": connection_id,
            "_requestMethod": ROUTE,
            "_callerAddress": caller_address,
            "_isStreaming": streaming,
            "address": address,
            "payload": {"method": method, "params": inner},
        },
    }


@dataclass
class Response:
    """One response frame as a client reads it."""

    id: Any
    data: Any
    last: bool
    error: OlaneError | None
    sequence: int | None
    chunks: int | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    size: int = 0  # payload bytes on the wire


def parse_response(message: dict[str, Any]) -> Response:
    result = message.get("result")
    if not isinstance(result, dict):
        if "error" in message:  # a non-olane JSON-RPC error: still terminal
            return Response(message.get("id"), None, True, OlaneError.from_wire(message["error"]), None, None, message)
        raise OlaneError(ErrorCode.INVALID_RESPONSE, "response frame has no result object")
    error = result.get("error")
    return Response(
        id=message.get("id", result.get("id")),
        data=result.get("data"),
        last=bool(result.get("_last", False)),
        error=OlaneError.from_wire(error) if error else None,
        sequence=result.get("_sequence"),
        chunks=result.get("_chunks"),
        raw=message,
    )
