"""The guards of the call pipeline: auth, idempotency, traffic limits, metrics and tracing.

Each is off unless configured, and costs nothing then: `CallGuards` holds ``None`` in its slot and
the pipeline's fast path skips it. The pieces are built once per runtime by `CallGuards.build`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING

from .answers import Answer
from .auth import Authenticator, authorize, build_authenticator
from .context import Principal
from .envelope import ExecRequest
from .errors import IdempotencyConflictError
from .idempotency import (
    Acquired,
    Conflict,
    IdempotencyStore,
    InMemoryIdempotencyStore,
    Stored,
    build_idempotency_store,
    call_fingerprint,
    replayed_body,
)
from .invocation import CallOutcome
from .limits import TrafficLimits
from .registry import FunctionRegistry, FunctionSpec
from .settings import Settings
from .tracing import CallSpan, CallTracer

if TYPE_CHECKING:
    from .metrics import CallMetrics
    from .pipeline import CallMeta

__all__ = ["SCHEDULER", "CallGuards", "CallObservation", "check_guard_settings"]

SCHEDULER = Principal("metatwin-functions:scheduler")
"""The caller of schedule ticks (``current_execution().caller``) when authentication is on."""

Invoke = Callable[[ExecRequest, Principal | None, "CallMeta"], Awaitable[CallOutcome]]

logger = logging.getLogger("metatwin_functions.calls")


def check_guard_settings(settings: Settings, registry: FunctionRegistry) -> None:
    """Raise `ConfigurationError` now for auth or limit settings that cannot work."""
    build_authenticator(settings)
    TrafficLimits(settings, registry)


class CallObservation:
    """Metrics and the span of one call: a context manager around the function's run.

    The span is current inside it, so log lines and spans made by the function belong to the
    call's trace; `finish` records the outcome. A class, not a generator: it runs on every call.
    """

    __slots__ = (
        "_function",
        "_label",
        "_metrics",
        "_span",
        "_started",
        "_tracer",
        "outcome",
        "trace",
    )

    def __init__(
        self,
        function: str,
        metrics: CallMetrics | None,
        span: CallSpan | None,
        tracer: CallTracer | None = None,
    ) -> None:
        self._function = function
        self._metrics = metrics
        self._span = span
        self._tracer = tracer
        self._started = time.perf_counter()
        self._label: str | None = None
        self.outcome: CallOutcome | None = None
        #: The span's W3C trace context, for the events the call publishes (None untraced).
        self.trace: dict[str, str] | None = None
        if metrics is not None:
            metrics.call_started(function)

    def __enter__(self) -> CallObservation:
        if self._span is not None:
            self._span.__enter__()
            if self._tracer is not None:
                headers: dict[str, str] = {}
                self._tracer.inject(headers)
                self.trace = headers or None
        return self

    def finish(self, outcome: CallOutcome) -> None:
        """Record how the call ended."""
        self.outcome = outcome

    def replayed(self) -> None:
        """The call was answered without running: a stored answer or a joined duplicate."""
        self._label = "replayed"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        span = self._span
        if span is not None:
            span.__exit__(exc_type, exc, traceback)
        outcome = self.outcome
        label = self._label or ("cancelled" if outcome is None else outcome.outcome)
        if span is not None:
            error: BaseException | str | None = None
            if outcome is not None and outcome.error is not None:
                error = outcome.error.__cause__ or outcome.error.message
            span.finish(label, error if outcome is not None or self._label else exc)
        if self._metrics is not None:
            duration = time.perf_counter() - self._started
            self._metrics.call_finished(self._function, label, duration)


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
        tracer: CallTracer | None = None,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.tracer = tracer
        self.authenticator: Authenticator | None = build_authenticator(settings)
        self.idempotency = (
            build_idempotency_store(settings) if idempotency_store is None else idempotency_store
        )
        if settings.idempotency_ttl == 0:
            self.idempotency = None
        # The per-process store is called without its coroutines on every call (see guarded).
        self._local_store = (
            self.idempotency if isinstance(self.idempotency, InMemoryIdempotencyStore) else None
        )
        limits = TrafficLimits(settings, registry)
        self.limits = limits if limits.enabled else None
        #: executionIds of the streams running now (a duplicate of one is a conflict).
        self.streaming: set[str] = set()

    @property
    def saturated(self) -> bool:
        """True while the process-wide concurrency limit is reached."""
        return self.limits is not None and self.limits.saturated

    async def authenticate(self, request: ExecRequest, meta: CallMeta) -> Principal | None:
        """The caller, or None when auth is off; raises `UnauthorizedError`."""
        if self.authenticator is None or meta.trusted:
            return None
        if meta.trigger == "schedule":
            # a tick comes from the deployment itself, never from a client.
            return SCHEDULER
        principal: Principal = await self.authenticator.authenticate(
            meta.authorization, meta.api_key
        )
        return principal

    async def guarded(
        self, request: ExecRequest, caller: Principal | None, meta: CallMeta, invoke: Invoke
    ) -> Answer:
        """Run ``invoke`` behind authorization, idempotency and the traffic limits."""
        spec = self.registry.get(request.function_name, request.version)
        if spec is None:  # answered as not found; nothing to reserve or limit
            missing = await invoke(request, caller, meta)
            return Answer(200, missing.body, trace=missing.trace)
        # A schedule tick (the deployment's own) and an AMQP message (the broker's permissions
        # guard the queue) run whatever roles the function has.
        if spec.roles and not meta.trusted and meta.trigger != "schedule":
            authorize(caller, spec)  # without auth configured, such a function is closed
        if meta.sink is not None and request.execution_id:
            return await self._streamed(spec, request, caller, meta, invoke)
        if request.execution_id in self.streaming:
            # A plain call cannot join a stream (its items went to another reader).
            raise IdempotencyConflictError(
                f"executionId '{request.execution_id}' is streaming; a stream is neither "
                "joined nor replayed: use another executionId"
            )
        store = self.idempotency
        if store is None or not request.execution_id:
            unguarded, _ = await self._limited(spec, request, caller, meta, invoke)
            return unguarded
        execution_id = request.execution_id
        fingerprint = call_fingerprint(
            spec.name, spec.version, request.args, None if caller is None else caller.subject
        )
        local = self._local_store
        while True:
            if local is not None:
                reservation = local.reserve_now(execution_id, fingerprint)
            else:
                reservation = await store.reserve(execution_id, fingerprint)
            if isinstance(reservation, Acquired):
                break
            if isinstance(reservation, Stored):
                trace = self._replayed(request, meta, "stored answer")
                return Answer(200, replayed_body(reservation.body), trace=trace)
            if isinstance(reservation, Conflict):
                raise IdempotencyConflictError(
                    f"executionId '{execution_id}' was already used for another call "
                    "(another function, other arguments or another caller)"
                )
            joined = await reservation.wait()  # the same call is running: join it
            if joined is not None:
                trace = self._replayed(request, meta, "joined the running call")
                return Answer(200, joined, trace=trace)
            # It ended without an answer (cancelled): reserve again.
        answer: Answer | None = None
        outcome: CallOutcome | None = None
        try:
            answer, outcome = await self._limited(spec, request, caller, meta, invoke)
        finally:
            # Always completed, so that waiters never hang; a refusal (429) is not an answer
            # for them: they reserve again and meet the limits themselves.
            succeeded = outcome is not None and outcome.error is None
            body = answer.body if outcome is not None and answer is not None else None
            if local is not None:
                local.complete_now(execution_id, fingerprint, body, store=succeeded)
            else:
                await store.complete(execution_id, fingerprint, body, store=succeeded)
        return answer

    async def _streamed(
        self,
        spec: FunctionSpec,
        request: ExecRequest,
        caller: Principal | None,
        meta: CallMeta,
        invoke: Invoke,
    ) -> Answer:
        # A stream cannot be replayed (its items are gone) nor joined (they went to another
        # reader): streams bypass the idempotency store, and the id of a stream still running,
        # on either stream transport, is a conflict. Once it ends, the id may stream again.
        execution_id = request.execution_id
        if execution_id in self.streaming:
            raise IdempotencyConflictError(
                f"executionId '{execution_id}' is already streaming; a stream is neither "
                "joined nor replayed: use another executionId"
            )
        self.streaming.add(execution_id)
        try:
            answer, _ = await self._limited(spec, request, caller, meta, invoke)
        finally:
            self.streaming.discard(execution_id)
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
            return Answer(200, outcome.body, trace=outcome.trace), outcome
        lease = limits.acquire(spec)  # raises the 429s
        try:
            outcome = await invoke(request, caller, meta)
        finally:
            lease.release()
        return Answer(200, outcome.body, trace=outcome.trace), outcome

    def _replayed(self, request: ExecRequest, meta: CallMeta, how: str) -> dict[str, str] | None:
        # Counted, spanned and logged as a call of its own, whose outcome is "replayed".
        with self.observe_call(request, meta) as observed:
            observed.replayed()
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "Function '%s' not run again for a retry (%s)",
                    request.function_name,
                    how,
                    extra={
                        "status": "replayed",
                        "execution_id": request.execution_id,
                        "function_name": request.function_name,
                    },
                )
        return observed.trace

    def observe_call(self, request: ExecRequest, meta: CallMeta) -> CallObservation:
        """Metrics and (when tracing is on) the span around one call."""
        tracer = self.tracer
        span = None
        if tracer is not None:
            carrier = None
            if meta.traceparent is not None:
                carrier = {"traceparent": meta.traceparent}
                if meta.tracestate is not None:
                    carrier["tracestate"] = meta.tracestate
            span = tracer.start_call(
                request.function_name, request.execution_id, meta.trigger, carrier
            )
        return CallObservation(request.function_name, self.metrics, span, tracer)

    async def aclose(self) -> None:
        """Release what the guards hold (the JWKS refresh, the span exporter)."""
        if self.authenticator is not None:
            await self.authenticator.aclose()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.shutdown)  # flushes spans over the network
        close = getattr(self.metrics, "close", None)
        if close is not None:
            close()

    def rejected(self, kind: str) -> None:
        """Count a refused request."""
        if self.metrics is not None:
            self.metrics.rejected(kind)
