"""What `FunctionTestClient` hands back: typed views of the ``/exec`` and ``/ready`` answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MetaTwinFunctionsError
from ..response_views import ExecMetadataViews

if TYPE_CHECKING:
    from werkzeug.datastructures import Headers

__all__ = ["CallFailedError", "CallResponse", "ReadyResponse"]


class CallFailedError(MetaTwinFunctionsError, AssertionError):
    """`CallResponse.raise_for_error` on a call that did not succeed: a test failure."""

    def __init__(self, response: CallResponse) -> None:
        super().__init__(
            f"call failed with HTTP {response.status_code}, errorKind "
            f"{response.error_kind!r}: {response.error}"
        )
        self.response = response


@dataclass(frozen=True, slots=True)
class CallResponse(ExecMetadataViews):
    """One ``/exec`` answer as the platform receives it.

    Attributes:
        status_code: HTTP status: 200 for every call that ran (success or not); 401, 403, 409,
            413, 422, 429 or 503 for a call refused before its function ran.
        success: The body's ``success``.
        result: The function's return value as JSON decoded it (None on failure).
        error: The human-readable error (None on success).
        metadata: The body's ``metadata`` (``executionId``, ``durationMs``, ``errorKind``...).
        headers: The response's headers, names case-insensitive (``Retry-After``...).
        body: The whole JSON body.
    """

    status_code: int
    success: bool
    result: Any
    error: str | None
    metadata: dict[str, Any]
    headers: Headers = field(repr=False)
    body: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, status_code: int, body: dict[str, Any], headers: Headers) -> CallResponse:
        """Build it from a decoded ``/exec`` body; `ValueError` if the body is not that shape."""
        missing = [key for key in ("success", "result", "error", "metadata") if key not in body]
        if missing:
            raise ValueError(f"not an /exec answer (missing {', '.join(missing)}): {body!r}")
        return cls(
            status_code=status_code,
            success=bool(body["success"]),
            result=body["result"],
            error=body["error"],
            metadata=dict(body["metadata"] or {}),
            headers=headers,
            body=body,
        )

    def raise_for_error(self) -> CallResponse:
        """Return self if the call succeeded, else raise `CallFailedError` saying why."""
        if not (self.success and self.status_code == 200):
            raise CallFailedError(self)
        return self


@dataclass(frozen=True, slots=True)
class ReadyResponse:
    """The ``/ready`` answer.

    Attributes:
        status_code: 200 once started, 503 while starting or draining.
        body: The JSON body (``status``, ``functions``, ``rabbitmq_connected``...).
    """

    status_code: int
    body: dict[str, Any]

    @property
    def status(self) -> str:
        """``ready``, ``starting``, ``draining`` or ``stopped``."""
        return str(self.body.get("status"))

    @property
    def functions(self) -> list[str]:
        """The names served."""
        return list(self.body.get("functions") or [])

    @property
    def is_ready(self) -> bool:
        """True when the server takes calls."""
        return self.status_code == 200 and self.status == "ready"
