"""The guards of the call pipeline: auth, idempotency, traffic limits, metrics and tracing.

Each is off unless configured, and costs nothing then: `CallGuards` holds ``None`` in its slot and
the pipeline's fast path skips it. The pieces are built once per runtime by `CallGuards.build`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from .answers import Answer
from .context import Principal
from .envelope import ExecRequest
from .invocation import CallOutcome

if TYPE_CHECKING:
    from .pipeline import CallMeta

__all__ = ["CallGuards", "CallMetrics", "CallObservation"]

Invoke = Callable[[ExecRequest, Principal | None, "CallMeta"], Awaitable[CallOutcome]]


class CallMetrics(Protocol):
    """What the pipeline tells the metrics about each call and refusal."""

    def call_started(self, function: str) -> None: ...
    def call_finished(self, function: str, outcome: str, duration: float) -> None: ...
    def rejected(self, reason: str) -> None: ...


class CallObservation:
    """Metrics and the span of one call; `finish` records its outcome."""

    __slots__ = ("_function", "_metrics", "_started", "outcome")

    def __init__(self, function: str, metrics: CallMetrics | None) -> None:
        self._function = function
        self._metrics = metrics
        self._started = time.perf_counter()
        self.outcome: CallOutcome | None = None
        if metrics is not None:
            metrics.call_started(function)

    def finish(self, outcome: CallOutcome) -> None:
        """Record how the call ended."""
        self.outcome = outcome
        if self._metrics is not None:
            self._metrics.call_finished(self._function, outcome.outcome, outcome.duration)

    def abandon(self) -> None:
        """The call ended without an outcome (cancelled)."""
        if self._metrics is not None and self.outcome is None:
            duration = time.perf_counter() - self._started
            self._metrics.call_finished(self._function, "cancelled", duration)


class CallGuards:
    """Auth, idempotency, limits, metrics and tracing of one runtime (each None when off)."""

    def __init__(self, *, metrics: CallMetrics | None = None) -> None:
        self.metrics = metrics
        self.authenticator: Any = None
        self.idempotency: Any = None
        self.limits: Any = None
        self.tracer: Any = None

    async def authenticate(self, request: ExecRequest, meta: CallMeta) -> Principal | None:
        """The caller, or None when auth is off; raises `UnauthorizedError`."""
        if self.authenticator is None:
            return None
        principal: Principal = await self.authenticator.authenticate(
            meta.authorization, meta.api_key
        )
        return principal

    async def guarded(
        self, request: ExecRequest, caller: Principal | None, meta: CallMeta, invoke: Invoke
    ) -> Answer:
        """Run ``invoke`` behind authorization, idempotency and the traffic limits."""
        outcome = await invoke(request, caller, meta)
        return Answer(200, outcome.body)

    @contextmanager
    def observe_call(
        self, request: ExecRequest, meta: CallMeta, cold_start: bool
    ) -> Iterator[CallObservation]:
        """Metrics (and, when configured, the span) around one call."""
        observation = CallObservation(request.function_name, self.metrics)
        try:
            yield observation
        finally:
            if observation.outcome is None:
                observation.abandon()

    def rejected(self, kind: str) -> None:
        """Count a refused request."""
        if self.metrics is not None:
            self.metrics.rejected(kind)
