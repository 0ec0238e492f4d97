"""The call in progress, visible to user code and to every log line written during a call."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["ExecutionContext", "current_execution"]


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """Identifies the call being served."""

    execution_id: str
    function_name: str


_current: ContextVar[ExecutionContext | None] = ContextVar("metatwin_execution", default=None)


def current_execution() -> ExecutionContext | None:
    """The call being served by this task or thread, or ``None`` outside a call.

    Works in ``async def`` functions and in plain ``def`` functions run on the thread pool.
    """
    return _current.get()
