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
from .auth import Authenticator, authorize, build_authenticator
from .context import Principal
from .envelope import ExecRequest
from .errors import IdempotencyConflictError
from .idempotency import (
    Acquired,
    Conflict,
    IdempotencyStore,
    Stored,
    build_idempotency_store,
    call_fingerprint,
    replayed_body,
)
from .invocation import CallOutcome
from .limits import TrafficLimits
from .registry import FunctionRegistry, FunctionSpec
from .settings import Settings

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
    """Auth, idempotency, limits, metrics and tracing of one runtime (each None when off).

    Args:
        registry: The functions served (their roles and limits).
        settings: Where each guard reads whether it is on.
        idempotency_store: A store to use instead of the per-process one (e.g. a shared one).
        metrics: Where calls and refusals are counted.
    """

    def __init__(
        self,
        registry: FunctionRegistry,
        settings: Settings,
        *,
        idempotency_store: IdempotencyStore | None = None,
        metrics: CallMetrics | None = None,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.authenticator: Authenticator | None = build_authenticator(settings)
        self.idempotency = (
            build_idempotency_store(settings) if idempotency_store is None else idempotency_store
        )
        if settings.idempotency_ttl == 0:
            self.idempotency = None
        limits = TrafficLimits(settings, registry)
        self.limits = limits if limits.enabled else None
        self.tracer: Any = None

    @property
    def saturated(self) -> bool:
        """True while the process-wide concurrency limit is reached."""
        return self.limits is not None and self.limits.saturated

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
        spec = self.registry.get(request.function_name)
        if spec is None:  # answered as not found; nothing to reserve or limit
            missing = await invoke(request, caller, meta)
            return Answer(200, missing.body)
        if spec.roles:
            authorize(caller, spec)  # without auth configured, such a function is closed
        store = self.idempotency
        if store is None or not request.execution_id:
            unguarded, _ = await self._limited(spec, request, caller, meta, invoke)
            return unguarded
        execution_id = request.execution_id
        fingerprint = call_fingerprint(
            spec.name, request.version, request.args, None if caller is None else caller.subject
        )
        while True:
            reservation = await store.reserve(execution_id, fingerprint)
            if isinstance(reservation, Acquired):
                break
            if isinstance(reservation, Stored):
                self._replayed(spec.name)
                return Answer(200, replayed_body(reservation.body))
            if isinstance(reservation, Conflict):
                raise IdempotencyConflictError(
                    f"executionId '{execution_id}' was already used for another call "
                    "(another function, other arguments or another caller)"
                )
            joined = await reservation.wait()  # the same call is running: join it
            if joined is not None:
                return Answer(200, joined)
            # It ended without an answer (cancelled): reserve again.
        answer: Answer | None = None
        outcome: CallOutcome | None = None
        try:
            answer, outcome = await self._limited(spec, request, caller, meta, invoke)
        finally:
            # Always completed, so that waiters never hang; a refusal (429) is not an answer
            # for them: they reserve again and meet the limits themselves.
            succeeded = outcome is not None and outcome.error is None
            joinable = outcome is not None and answer is not None
            await store.complete(
                execution_id,
                fingerprint,
                answer.body if joinable and answer is not None else None,
                store=succeeded,
            )
        return answer

    async def _limited(
        self,
        spec: FunctionSpec,
        request: ExecRequest,
        caller: Principal | None,
        meta: CallMeta,
        invoke: Invoke,
    ) -> tuple[Answer, CallOutcome]:
        limits = self.limits
        if limits is None:
            outcome = await invoke(request, caller, meta)
            return Answer(200, outcome.body), outcome
        lease = limits.acquire(spec)  # raises the 429s
        try:
            outcome = await invoke(request, caller, meta)
        finally:
            lease.release()
        return Answer(200, outcome.body), outcome

    def _replayed(self, function: str) -> None:
        if self.metrics is not None:
            self.metrics.call_finished(function, "replayed", 0.0)

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

    async def aclose(self) -> None:
        """Release what the guards hold (the JWKS refresh)."""
        if self.authenticator is not None:
            await self.authenticator.aclose()

    def rejected(self, kind: str) -> None:
        """Count a refused request."""
        if self.metrics is not None:
            self.metrics.rejected(kind)
