"""The call in progress, visible to user code and to every log line written during a call."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ExecutionContext", "Principal", "current_execution"]


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


_current: ContextVar[ExecutionContext | None] = ContextVar("metatwin_execution", default=None)


def current_execution() -> ExecutionContext | None:
    """The call being served by this task or thread, or ``None`` outside a call.

    Works in ``async def`` functions and in plain ``def`` functions run on the thread pool.
    """
    return _current.get()
