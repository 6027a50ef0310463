"""Turning a method's parameter metadata (olane `oParameter`) into form fields and
the operator's text back into typed values, with the validation messages the
form shows inline. Plain Python."""
from __future__ import annotations

import json
from typing import Any

CHOICE, BOOLEAN, NUMBER, STRING, JSON = "choice", "boolean", "number", "string", "json"


def field_kind(param: dict[str, Any]) -> str:
    if param.get("options") or (param.get("structure") or {}).get("enum"):
        return CHOICE
    kind = str(param.get("type") or "any").lower()
    if kind == "boolean":
        return BOOLEAN
    if kind in ("number", "integer"):
        return NUMBER
    if kind == "string":
        return STRING
    return JSON  # object, array, any: typed as JSON


def options(param: dict[str, Any]) -> list[Any]:
    return list(param.get("options") or (param.get("structure") or {}).get("enum") or [])


def has_default(param: dict[str, Any]) -> bool:
    return "defaultValue" in param and param["defaultValue"] is not None


def text_for(param: dict[str, Any], value: Any) -> str:
    """How a value is written in the field of this parameter."""
    if value is None:
        return ""
    kind = field_kind(param)
    if kind == STRING and isinstance(value, str):
        return value
    if kind == NUMBER and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def placeholder(param: dict[str, Any]) -> str:
    examples = param.get("exampleValues") or []
    if examples:
        return "e.g. " + text_for(param, examples[0])
    kind = field_kind(param)
    return {NUMBER: "a number", STRING: "text", JSON: "JSON value"}.get(kind, "")


def parse(param: dict[str, Any], raw: Any) -> Any:
    """The operator's entry -> the value sent; ValueError with a short message.
    An empty entry means "not given" (returns None)."""
    kind = field_kind(param)
    if kind == BOOLEAN:
        return bool(raw)
    if kind == CHOICE:
        return raw
    text = "" if raw is None else str(raw)
    if text.strip() == "":
        if param.get("required"):
            raise ValueError("required")
        return None
    if kind == NUMBER:
        try:
            number = float(text)
        except ValueError:
            raise ValueError("must be a number") from None
        value: Any = int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
        structure = param.get("structure") or {}
        if structure.get("minimum") is not None and value < structure["minimum"]:
            raise ValueError(f"must be at least {structure['minimum']}")
        if structure.get("maximum") is not None and value > structure["maximum"]:
            raise ValueError(f"must be at most {structure['maximum']}")
        return value
    if kind == STRING:
        return text
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    expected = str(param.get("type") or "any").lower()
    if expected == "object" and not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    if expected == "array" and not isinstance(value, list):
        raise ValueError("must be a JSON array")
    return value


def collect(parameters: list[dict[str, Any]], entries: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(values to send, errors by parameter name)."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for param in parameters:
        name = param["name"]
        try:
            value = parse(param, entries.get(name))
        except ValueError as exc:
            errors[name] = str(exc)
            continue
        if value is not None:
            values[name] = value
    return values, errors
