"""What the pipeline hands back to a transport: status, headers and a ready JSON body.

Every answer, success or refusal, has the ``/exec`` shape; the builders here are the only place
the refusal bodies are written, so every transport answers alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_json

from .envelope import failure_body
from .errors import CallRejectedError, EnvelopeError, ErrorKind

__all__ = [
    "Answer",
    "body_timeout_answer",
    "envelope_error_answer",
    "http_error_body",
    "internal_error_body",
    "rejection_answer",
    "too_large_answer",
]


@dataclass(frozen=True, slots=True)
class Answer:
    """One response: HTTP status (200 for every call that ran), extra headers, JSON body."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    #: The ``errorKind`` of a refusal (None for calls that ran: see the body's metadata).
    rejected: ErrorKind | None = None
    #: W3C trace context of the call's span (``traceparent``...), for the events it publishes.
    trace: dict[str, str] | None = None


def rejection_answer(error: CallRejectedError, execution_id: str | None) -> Answer:
    """The answer to a call refused before its function ran (401, 403, 409, 429, 503)."""
    body = failure_body(error.message, {"executionId": execution_id, "errorKind": error.kind})
    return Answer(error.status, body, error.headers, error.kind)


def envelope_error_answer(
    error: EnvelopeError, status: int = 422, kind: ErrorKind = "invalid_envelope"
) -> Answer:
    """The 422 (or 413) answer: the response envelope with what is wrong."""
    metadata: dict[str, Any] = {
        "executionId": error.execution_id,
        "errorKind": kind,
        "problems": error.problems,
    }
    body = to_json({"success": False, "result": None, "error": str(error), "metadata": metadata})
    return Answer(status, body, {}, kind)


def too_large_answer(limit: int) -> Answer:
    """The 413 answer, saying what the limit is."""
    problem = f"body is larger than the limit of {limit} bytes"
    return envelope_error_answer(EnvelopeError([problem]), 413, "too_large")


def body_timeout_answer(timeout: float) -> Answer:
    """The 408 answer for a body that did not arrive in time."""
    message = f"The request body did not arrive within {timeout:g} seconds"
    body = failure_body(message, {"executionId": None, "errorKind": "body_timeout"})
    return Answer(408, body, {"Connection": "close"}, "body_timeout")


def http_error_body(message: str) -> bytes:
    """The JSON body for an HTTP error of another path (404, 405, ...)."""
    return failure_body(message, {"executionId": None, "errorKind": "http_error"})


def internal_error_body() -> bytes:
    """The JSON body of a 500: no detail, the logs have the stack trace."""
    return failure_body(
        "Internal server error", {"executionId": None, "errorKind": "internal_error"}
    )
