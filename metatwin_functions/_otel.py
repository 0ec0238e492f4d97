"""The OpenTelemetry implementation of `tracing.CallTracer`; imported only by `build_tracer`.

Only the API is imported here at module level; the SDK and the OTLP exporter are imported when
`sdk_tracer` configures them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import logs
from .settings import Settings
from .tracing import CallSpan
from .tracing import SpanKind as KindName

SCOPE = "metatwin_functions"
#: Our transports mapped to the OpenTelemetry FaaS ``faas.trigger`` values.
FAAS_TRIGGERS: Final = {
    "http": "http",
    "stream": "http",
    "websocket": "http",
    "amqp": "pubsub",
    "schedule": "timer",
}
#: Outcomes that are not failures: the call answered ``success: true``.
SUCCESSFUL_OUTCOMES: Final = frozenset({"success", "replayed"})
_KINDS: Final = {"server": SpanKind.SERVER, "consumer": SpanKind.CONSUMER}

# The first call of the process is the cold start, whichever tracer sees it.
_coldstart = True


class _CarrierGetter(Getter[Mapping[str, Any]]):
    """Reads a header whatever its case: HTTP header objects and plain AMQP header dicts alike."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None and isinstance(carrier, dict):
            lowered = key.lower()
            value = next((v for k, v in carrier.items() if k.lower() == lowered), None)
        if value is None:
            return None
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        return [str(value)]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


_GETTER = _CarrierGetter()


class OtelCallSpan:
    """One call's span; entering it makes it the current span of the context."""

    __slots__ = ("_finished", "_span", "_token")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._token: object | None = None
        self._finished = False

    def __enter__(self) -> CallSpan:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self._token = None
        if exc is not None and not self._finished:
            # The pipeline turns failures into outcomes; only a cancellation or our own bug
            # gets here, and the span must still end.
            cancelled = isinstance(exc, asyncio.CancelledError)
            self.finish("cancelled" if cancelled else "internal_error", exc)

    def finish(self, outcome: str, error: BaseException | str | None = None) -> None:
        """End the span with ``metatwin.outcome``; a failure sets status ERROR (once only)."""
        if self._finished:
            return
        self._finished = True
        span = self._span
        span.set_attribute("metatwin.outcome", outcome)
        if outcome not in SUCCESSFUL_OUTCOMES:
            span.set_attribute("error.type", outcome)
            if isinstance(error, BaseException):
                span.record_exception(error)
            description = outcome if error is None else f"{outcome}: {error}"
            span.set_status(Status(StatusCode.ERROR, description))
        span.end()


class OtelCallTracer:
    """`tracing.CallTracer` on an OpenTelemetry tracer provider."""

    def __init__(self, provider: trace.TracerProvider, *, owned: bool = False) -> None:
        from . import __version__  # the package is fully imported by the time this runs

        self._provider = provider
        self._owned = owned
        self._tracer = provider.get_tracer(SCOPE, __version__)

    def start_call(
        self,
        function_name: str,
        execution_id: str,
        trigger: str,
        carrier: Mapping[str, str] | None,
        kind: KindName | None = None,
    ) -> CallSpan:
        """Start the call's span, the child of the carrier's ``traceparent`` if it has one."""
        global _coldstart
        coldstart, _coldstart = _coldstart, False
        # No traceparent: a new trace (the root context, not whatever span happens to be current).
        parent = Context() if carrier is None else propagate.extract(carrier, getter=_GETTER)
        if kind is None:
            kind = "consumer" if trigger == "amqp" else "server"
        span = self._tracer.start_span(
            function_name,
            context=parent,
            kind=_KINDS[kind],
            attributes={
                "faas.invocation_id": execution_id,
                "faas.trigger": FAAS_TRIGGERS.get(trigger, "other"),
                "faas.coldstart": coldstart,
            },
        )
        return OtelCallSpan(span)

    def inject(self, headers: dict[str, str]) -> None:
        """Add ``traceparent`` (and ``tracestate``) of the current span to ``headers``."""
        propagate.inject(headers)

    def shutdown(self) -> None:
        """Flush the spans not exported yet and stop the exporter, if this tracer started one."""
        logs.trace_ids_hook = None
        if self._owned:
            shutdown = getattr(self._provider, "shutdown", None)
            if shutdown is not None:
                shutdown()


def current_trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span in lowercase hex, None without one."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return trace.format_trace_id(span_context.trace_id), trace.format_span_id(span_context.span_id)


def install_log_hook() -> None:
    """Let the log filter add the current trace ids to each record."""
    logs.trace_ids_hook = current_trace_ids


def sdk_tracer(settings: Settings) -> OtelCallTracer | None:
    """A tracer on a new SDK provider exporting over OTLP/HTTP, set up by ``OTEL_*`` variables."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if _service_name_configured() else {SERVICE_NAME: settings.deployment_id}
    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME; TracerProvider reads
    # OTEL_TRACES_SAMPLER*, the processor OTEL_BSP_*, the exporter OTEL_EXPORTER_OTLP_*.
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # Spans that functions make with trace.get_tracer(...) then reach the same exporter.
        trace.set_tracer_provider(provider)
    return OtelCallTracer(provider, owned=True)


def global_tracer() -> OtelCallTracer | None:
    """A tracer on the application's global provider; None if it set none (no-op)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return OtelCallTracer(provider)


def _service_name_configured() -> bool:
    if os.environ.get("OTEL_SERVICE_NAME"):
        return True
    resource_attributes = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    return any(
        item.split("=", 1)[0].strip() == "service.name" for item in resource_attributes.split(",")
    )
