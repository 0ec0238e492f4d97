"""OpenTelemetry tracing of calls, only when the ``otel`` extra is installed and used.

`build_tracer` decides at start whether this process traces at all; nothing here imports
OpenTelemetry unless it does (the implementation lives in ``_otel``). The call pipeline talks to
the `CallTracer` and `CallSpan` interfaces below:

>>> tracer = build_tracer(settings)           # None: no tracing, skip every hook
>>> span = tracer.start_call("add", "e-1", "http", request.headers)
>>> with span:                                 # the span is current while the function runs
...     outcome = await run()
>>> span.finish(outcome.kind, outcome.error)
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import Literal, Protocol

from .settings import Settings

__all__ = ["CallSpan", "CallTracer", "build_tracer", "current_trace_ids"]

logger = logging.getLogger(__name__)

_IMPLEMENTATION = "metatwin_functions._otel"
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

SpanKind = Literal["server", "consumer"]


class CallSpan(Protocol):
    """The span of one call: a context manager that makes it current, then `finish`."""

    def __enter__(self) -> CallSpan: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def finish(self, outcome: str, error: BaseException | str | None = None) -> None:
        """End the span with the call's ``outcome``; anything but success marks it ERROR."""


class CallTracer(Protocol):
    """Starts the span of each call and carries the trace into outgoing messages."""

    def start_call(
        self,
        function_name: str,
        execution_id: str,
        trigger: str,
        carrier: Mapping[str, str] | None,
        kind: SpanKind | None = None,
    ) -> CallSpan:
        """Start the call's span, a child of the carrier's ``traceparent`` if it has one.

        ``trigger`` is the transport: ``http``, ``stream``, ``websocket``, ``amqp`` or
        ``schedule``. ``kind`` defaults to CONSUMER for ``amqp``, SERVER otherwise.
        """

    def inject(self, headers: dict[str, str]) -> None:
        """Add ``traceparent`` (and ``tracestate``) of the current span to ``headers``."""

    def shutdown(self) -> None:
        """Flush and stop the exporter this tracer started (no-op for the global provider)."""


def build_tracer(settings: Settings) -> CallTracer | None:
    """The tracer of this process, or None when calls are not traced.

    - The ``otel`` extra is not installed: None, and nothing of OpenTelemetry is imported.
    - ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set: an SDK
      provider exporting over OTLP/HTTP in batches, configured by the standard ``OTEL_*``
      variables (``OTEL_SERVICE_NAME`` defaults to the deployment id). It also becomes the global
      provider unless the application set one, so spans made inside functions are exported too.
    - Otherwise the application's own global provider if it set one; None if it did not (a
      no-op provider would cost every call a span object and propagate nothing).

    When a tracer is returned, JSON log lines written under a span carry its ids.
    """
    if importlib.util.find_spec("opentelemetry") is None:
        return None
    exporting = any(os.environ.get(name) for name in _ENDPOINT_VARIABLES)
    if not exporting and not _global_provider_possible():
        return None
    try:
        from . import _otel
    except ImportError as exc:  # the API without the SDK or the exporter
        logger.warning("Tracing is off: the otel extra is incomplete (%s)", exc)
        return None
    tracer = _otel.sdk_tracer(settings) if exporting else _otel.global_tracer()
    if tracer is not None:
        _otel.install_log_hook()
    return tracer


def _global_provider_possible() -> bool:
    # An application that set a provider has imported the API already; the variable below lets
    # the API load one from an entry point on first use. Either way we must look; else we need not.
    return "opentelemetry.trace" in sys.modules or bool(
        os.environ.get("OTEL_PYTHON_TRACER_PROVIDER")
    )


def current_trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span in lowercase hex, None without one."""
    implementation = sys.modules.get(_IMPLEMENTATION)
    if implementation is None:  # no tracer was ever built: no span of ours can be current
        return None
    ids: tuple[str, str] | None = implementation.current_trace_ids()
    return ids
