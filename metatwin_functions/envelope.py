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
    "MAX_EXECUTION_ID_LENGTH",
    "MAX_FUNCTION_NAME_LENGTH",
    "MAX_VERSION_LENGTH",
    "ExecRequest",
    "exec_request_from",
    "failure_body",
    "parse_exec_request",
    "serialize_result",
    "success_body",
]


MAX_EXECUTION_ID_LENGTH = 1024
MAX_FUNCTION_NAME_LENGTH = 256
MAX_VERSION_LENGTH = 64


@dataclass(frozen=True, slots=True)
class ExecRequest:
    """A valid ``POST /exec`` envelope."""

    execution_id: str
    function_name: str
    args: dict[str, Any]
    #: The exact version asked for, or None for the highest.
    version: str | None = None


def parse_exec_request(body: bytes | str) -> ExecRequest:
    """Parse and check an ``/exec`` body, raising `EnvelopeError` with every problem found."""
    try:
        data = from_json(body, cache_strings="keys")
    except ValueError as exc:
        raise EnvelopeError([f"body is not valid JSON ({exc})"]) from None
    return exec_request_from(data)


def exec_request_from(data: Any) -> ExecRequest:
    """Check an already decoded envelope (e.g. a WebSocket frame), as `parse_exec_request` does."""
    if not isinstance(data, dict):
        raise EnvelopeError([f"body must be a JSON object, got {_json_type(data)}"])

    problems: list[str] = []
    execution_id = data.get("executionId")
    if execution_id is None and "executionId" not in data:
        problems.append("'executionId' is required")
    elif not isinstance(execution_id, str):
        problems.append(f"'executionId' must be a string, got {_json_type(execution_id)}")
        execution_id = None
    elif len(execution_id) > MAX_EXECUTION_ID_LENGTH:
        problems.append(
            f"'executionId' is longer than {MAX_EXECUTION_ID_LENGTH} characters "
            f"({len(execution_id)})"
        )
        execution_id = None  # not echoed: a megabyte id must not travel back, nor into logs
    function_name = data.get("functionName")
    if function_name is None and "functionName" not in data:
        problems.append("'functionName' is required")
    elif not isinstance(function_name, str):
        problems.append(f"'functionName' must be a string, got {_json_type(function_name)}")
    elif len(function_name) > MAX_FUNCTION_NAME_LENGTH:
        problems.append(
            f"'functionName' is longer than {MAX_FUNCTION_NAME_LENGTH} characters "
            f"({len(function_name)})"
        )
    args = data.get("args")
    if args is None:
        args = {}
    elif not isinstance(args, dict):
        problems.append(f"'args' must be a JSON object, got {_json_type(args)}")
    version = data.get("version")
    if version is not None and not isinstance(version, str):
        problems.append(f"'version' must be a string, got {_json_type(version)}")
    elif version is not None and len(version) > MAX_VERSION_LENGTH:
        # Not echoed in a not-found message: no request floods an answer or a log line.
        problems.append(f"'version' is longer than {MAX_VERSION_LENGTH} characters")
    if problems:
        raise EnvelopeError(problems, execution_id)
    return ExecRequest(execution_id, function_name, args, version)  # type: ignore[arg-type]


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
