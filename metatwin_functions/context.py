"""The call in progress, visible to user code and to every log line written during a call."""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["ExecutionContext", "Principal", "current_execution"]


class ProgressSink(Protocol):
    """Where a streamed call's progress goes (see `streaming.StreamSink`); thread-safe."""

    def progress(self, fraction: float, message: str | None) -> None:
        """Queue one progress object for the caller; never blocks."""


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: who it is, its roles, and (for a JWT) the verified claims."""

    subject: str
    roles: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """Identifies the call being served, and who asked for it."""

    execution_id: str
    function_name: str
    caller: Principal | None = None
    _sink: ProgressSink | None = field(default=None, repr=False, compare=False)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Tell a stream or WebSocket caller how far the call is, from 0.0 to 1.0.

        Callable from ``async def`` and plain ``def`` functions (any thread). Ignored on plain
        ``/exec``, which answers once. Progress is advisory: when the caller reads too slowly
        for its queue, a progress object is dropped rather than slowing the function down.

        Raises:
            ValueError: ``fraction`` is not a number from 0 to 1.
            TypeError: ``message`` is not a string or None.
        """
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, int | float)
            or not math.isfinite(fraction)
            or not 0 <= fraction <= 1
        ):
            raise ValueError(f"progress fraction must be a number from 0 to 1, got {fraction!r}")
        if message is not None and not isinstance(message, str):
            raise TypeError(f"progress message must be a string or None, got {message!r}")
        if self._sink is not None:
            self._sink.progress(float(fraction), message)


_current: ContextVar[ExecutionContext | None] = ContextVar("metatwin_execution", default=None)


def current_execution() -> ExecutionContext | None:
    """The call being served by this task or thread, or ``None`` outside a call.

    Works in ``async def`` functions and in plain ``def`` functions run on the thread pool.
    """
    return _current.get()
