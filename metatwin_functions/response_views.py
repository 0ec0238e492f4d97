"""The ``metadata`` of an ``/exec`` answer, read the same way by the client and the test kit."""

from __future__ import annotations

from typing import Any

__all__ = ["ExecMetadataViews"]


class ExecMetadataViews:
    """Typed views of ``metadata`` for a class that has a ``metadata`` dict."""

    __slots__ = ()

    metadata: dict[str, Any]

    @property
    def execution_id(self) -> str | None:
        """``metadata.executionId``: the request's, echoed."""
        value = self.metadata.get("executionId")
        return value if isinstance(value, str) else None

    @property
    def error_kind(self) -> str | None:
        """``metadata.errorKind`` of a failure (``not_found``, ``timeout``...), else None."""
        value = self.metadata.get("errorKind")
        return value if isinstance(value, str) else None

    @property
    def error_code(self) -> str | None:
        """``metadata.errorCode`` where the platform defines one (``MTF-EXECUTION-002``...)."""
        value = self.metadata.get("errorCode")
        return value if isinstance(value, str) else None

    @property
    def duration_ms(self) -> float | None:
        """``metadata.durationMs``: how long the function ran."""
        value = self.metadata.get("durationMs")
        return float(value) if isinstance(value, int | float) else None

    @property
    def replayed(self) -> bool:
        """True when the answer is a stored one, given again for a retry of its executionId."""
        return self.metadata.get("replayed") is True
