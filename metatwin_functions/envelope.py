"""The ``/exec`` wire format: parsing a request body and writing a response body.

Sans-IO: bytes in, bytes out, no web framework. JSON is read and written by pydantic-core, which
also converts what JSON cannot hold as is (datetime, UUID, Decimal, models, dataclasses, sets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticSerializationError, from_json, to_json

from .errors import EnvelopeError

__all__ = [
    "EnvelopeError",
    "ExecRequest",
    "envelope_error_body",
    "failure_body",
    "parse_exec_request",
    "serialize_result",
    "success_body",
]


@dataclass(frozen=True, slots=True)
class ExecRequest:
    """A valid ``POST /exec`` envelope."""

    execution_id: str
    function_name: str
    args: dict[str, Any]


def parse_exec_request(body: bytes | str) -> ExecRequest:
    """Parse and check an ``/exec`` body, raising `EnvelopeError` with every problem found."""
    try:
        data = from_json(body, cache_strings="keys")
    except ValueError as exc:
        raise EnvelopeError([f"body is not valid JSON ({exc})"]) from None
    if not isinstance(data, dict):
        raise EnvelopeError([f"body must be a JSON object, got {_json_type(data)}"])

    problems: list[str] = []
    execution_id = data.get("executionId")
    if execution_id is None and "executionId" not in data:
        problems.append("'executionId' is required")
    elif not isinstance(execution_id, str):
        problems.append(f"'executionId' must be a string, got {_json_type(execution_id)}")
        execution_id = None
    function_name = data.get("functionName")
    if function_name is None and "functionName" not in data:
        problems.append("'functionName' is required")
    elif not isinstance(function_name, str):
        problems.append(f"'functionName' must be a string, got {_json_type(function_name)}")
    args = data.get("args")
    if args is None:
        args = {}
    elif not isinstance(args, dict):
        problems.append(f"'args' must be a JSON object, got {_json_type(args)}")
    if problems:
        raise EnvelopeError(problems, execution_id)
    return ExecRequest(execution_id, function_name, args)  # type: ignore[arg-type]


def envelope_error_body(error: EnvelopeError) -> bytes:
    """The 422 body: the response envelope with ``success: false`` and what is wrong."""
    return to_json(
        {
            "success": False,
            "result": None,
            "error": str(error),
            "metadata": {
                "executionId": error.execution_id,
                "errorKind": "invalid_request",
                "problems": error.problems,
            },
        }
    )


def success_body(result_json: bytes, metadata: dict[str, Any]) -> bytes:
    """A success response around an already serialized result."""
    return b"".join(
        (
            b'{"success":true,"result":',
            result_json,
            b',"error":null,"metadata":',
            to_json(metadata),
            b"}",
        )
    )


def failure_body(message: str, metadata: dict[str, Any]) -> bytes:
    """A failure response."""
    return to_json({"success": False, "result": None, "error": message, "metadata": metadata})


def serialize_result(value: Any) -> bytes:
    """JSON for a function's return value; raises `ValueError` saying why it cannot be."""
    try:
        # NaN and infinities have no JSON form; write null (as pydantic models do), never "NaN".
        return to_json(value, inf_nan_mode="null")
    except PydanticSerializationError as exc:
        raise ValueError(str(exc)) from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
