"""olane error codes (PROTOCOL.md section 6) and the one exception type that carries them."""
from __future__ import annotations

from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    UNKNOWN = 4001
    NOT_FOUND = 4002
    NOT_IMPLEMENTED = 4003
    NOT_CONFIGURED = 4004
    NOT_AUTHORIZED = 4005
    MISSING_PARAMETERS = 4006
    INVALID_PARAMETERS = 4007
    INVALID_RESPONSE = 4008
    INVALID_REQUEST = 4009
    INVALID_STATE = 4010
    INVALID_ACTION = 4011
    INVALID_CREDENTIALS = 4012
    TRANSPORT_NOT_SUPPORTED = 4013
    FAILED_TO_DIAL_TARGET = 4014
    INVALID_CAPABILITY = 4015
    CONNECTION_LIMIT_REACHED = 4016
    TIMEOUT = 4017
    INTERNAL_ERROR = 4018
    SEND_FAILED = 4019
    RECEIVE_FAILED = 4020


def code_name(code: int) -> str:
    """`4011` -> `"INVALID_ACTION"`; unknown codes read as `"CODE_<n>"`."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"CODE_{code}"


class OlaneError(Exception):
    """An olane error: a code from 4001-4020, a message, optional details.

    Raised by tools to answer with an error frame, and by clients when an
    error frame (or a local failure such as a timeout) ends a request.
    """

    def __init__(self, code: int, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.details = details

    @property
    def name(self) -> str:
        return code_name(self.code)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out

    @classmethod
    def from_wire(cls, error: Any) -> "OlaneError":
        if not isinstance(error, dict):
            return cls(ErrorCode.UNKNOWN, str(error))
        code = error.get("code")
        try:
            code = int(code)
        except (TypeError, ValueError):
            code = ErrorCode.UNKNOWN
        return cls(code, str(error.get("message", "")), error.get("details"))

    def __str__(self) -> str:
        return f"{self.code} {self.name}: {self.message}"

    def __repr__(self) -> str:
        return f"OlaneError({self.code}, {self.message!r})"
