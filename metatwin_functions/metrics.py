"""Prometheus metrics of a function service: the hooks the call pipeline calls, and ``/metrics``.

`PrometheusMetrics` keeps its own `CollectorRegistry` (two apps in one process do not clash) and
precomputes the labelled children of every registered function, so that a call costs two dict
lookups and four lock-protected additions (a few microseconds). Figures that are states rather
than counts (sync threads busy, broker connected, last healthy event) are read from callables at
scrape time. Under ``PROMETHEUS_MULTIPROC_DIR`` the counts, the histogram and the in-flight gauge
are aggregated over every process of the server (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Final, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .call_figures import CallFigures, FunctionFigures
from .registry import FunctionRegistry
from .settings import Settings

__all__ = ["CallMetrics", "NullMetrics", "PrometheusMetrics"]

PREFIX: Final = "metatwin_functions"
UNKNOWN_FUNCTION: Final = "<unknown>"
OUTCOMES: Final = (
    "success",
    "execution_failed",
    "timeout",
    "invalid_arguments",
    "not_found",
    "result_not_serializable",
    "result_too_large",
    "cancelled",
    "replayed",
)
REJECTION_REASONS: Final = (
    "invalid_envelope",
    "too_large",
    "unavailable",
    "unauthorized",
    "forbidden",
    "concurrency_limited",
    "rate_limited",
    "idempotency_conflict",
)
EVENTS: Final = ("started", "healthy", "execution_completed")
EVENT_RESULTS: Final = ("delivered", "failed", "unroutable")
#: 5 ms to the 300 s ceiling of any timeout.
DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip


class CallMetrics(Protocol):
    """What the call pipeline and the events service report; every hook must be cheap."""

    def call_started(self, function: str) -> None:
        """A call of ``function`` (as requested, registered or not) begins."""

    def call_finished(self, function: str, outcome: str, duration: float) -> None:
        """The call begun by `call_started` ended with ``outcome`` after ``duration`` seconds."""

    def rejected(self, reason: str) -> None:
        """A request was refused before any call began (``reason`` is its error kind)."""

    def event_published(self, event: str, result: str) -> None:
        """An event (``started``, ``healthy``, ``execution_completed``) was published."""


class NullMetrics:
    """`CallMetrics` that records nothing (``CRBR_METRICS_ENABLED=false``)."""

    def call_started(self, function: str) -> None:
        """Record nothing."""

    def call_finished(self, function: str, outcome: str, duration: float) -> None:
        """Record nothing."""

    def rejected(self, reason: str) -> None:
        """Record nothing."""

    def event_published(self, event: str, result: str) -> None:
        """Record nothing."""


class _FunctionFigures:
    """The labelled children of one ``function`` label value, resolved once."""

    __slots__ = ("calls", "duration", "in_flight", "name")

    def __init__(self, name: str, calls: Counter, duration: Histogram, in_flight: Gauge) -> None:
        self.name = name
        self.calls = {outcome: calls.labels(name, outcome) for outcome in OUTCOMES}
        self.duration = duration.labels(name)
        self.in_flight = in_flight.labels(name)


class PrometheusMetrics:
    """`CallMetrics` recorded with prometheus-client, exposed by `exposition`.

    Args:
        registry: the functions served; only their names are used as ``function`` labels.
        settings: the deployment id and whether events are configured.
        sync_threads_busy: plain ``def`` calls running, deadline passed or not.
        rabbitmq_connected: whether the broker connection is up right now.
        last_healthy_timestamp: Unix time of the last delivered healthy event, None if none yet.

    ``collector_registry`` is the prometheus-client registry scraped: register your own metrics
    there to serve them on the same ``/metrics``.
    """

    def __init__(
        self,
        registry: FunctionRegistry,
        settings: Settings,
        *,
        sync_threads_busy: Callable[[], int],
        rabbitmq_connected: Callable[[], bool],
        last_healthy_timestamp: Callable[[], float | None],
    ) -> None:
        self._functions = registry
        # prometheus-client chose shared-file values when it was imported, by the same variable.
        self.multiprocess = values.ValueClass is not values.MutexValue
        # The metric objects are never registered in the global REGISTRY: in one process they go
        # into our own registry, under multiprocess mode they write to the shared files only and
        # the scrape reads those files back.
        self._calls = Counter(
            f"{PREFIX}_calls",
            "Calls by function and outcome.",
            ("function", "outcome"),
            registry=None,
        )
        self._duration = Histogram(
            f"{PREFIX}_call_duration_seconds",
            "Duration of calls, from admission to the answer.",
            ("function",),
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self._in_flight = Gauge(
            f"{PREFIX}_calls_in_flight",
            "Calls running now.",
            ("function",),
            multiprocess_mode="livesum",
            registry=None,
        )
        self._rejected = Counter(
            f"{PREFIX}_requests_rejected",
            "Requests refused before any function ran, by reason.",
            ("reason",),
            registry=None,
        )
        self._events = Counter(
            f"{PREFIX}_events_published",
            "Events published to RabbitMQ, by event and result.",
            ("event", "result"),
            registry=None,
        )
        self._figures = {
            name: _FunctionFigures(name, self._calls, self._duration, self._in_flight)
            for name in [*registry.names, UNKNOWN_FUNCTION]
        }
        self._unknown = self._figures[UNKNOWN_FUNCTION]
        self._rejections = {reason: self._rejected.labels(reason) for reason in REJECTION_REASONS}
        self._published = {
            (event, result): self._events.labels(event, result)
            for event in EVENTS
            for result in EVENT_RESULTS
        }

        self.collector_registry = CollectorRegistry()
        if self.multiprocess:
            MultiProcessCollector(self.collector_registry)  # type: ignore[no-untyped-call]
        else:
            # One process: calls are counted in plain numbers on the event loop (see
            # `call_figures`), several times cheaper than the locked metric objects.
            self._fast = CallFigures(PREFIX, DURATION_BUCKETS, OUTCOMES)
            self._fast_figures = {
                name: self._fast.function(name) for name in [*registry.names, UNKNOWN_FUNCTION]
            }
            self.call_started = self._fast_started  # type: ignore[method-assign]
            self.call_finished = self._fast_finished  # type: ignore[method-assign]
            self.collector_registry.register(self._fast)
            self.collector_registry.register(self._rejected)
            self.collector_registry.register(self._events)
        ProcessCollector(registry=self.collector_registry)
        PlatformCollector(registry=self.collector_registry)
        GCCollector(registry=self.collector_registry)
        self.collector_registry.register(
            _StateCollector(
                settings,
                sync_threads_busy=sync_threads_busy,
                rabbitmq_connected=rabbitmq_connected,
                last_healthy_timestamp=last_healthy_timestamp,
            )
        )

    def _function(self, name: str) -> _FunctionFigures:
        figures = self._figures.get(name)
        if figures is not None:
            return figures
        # Registered after start-up (rare): give it its own children; anything else is unknown.
        if name in self._functions:
            figures = _FunctionFigures(name, self._calls, self._duration, self._in_flight)
            self._figures[name] = figures
            return figures
        return self._unknown

    def _fast_figures_of(self, name: str) -> FunctionFigures:
        figures = self._fast_figures.get(name)
        if figures is None:
            key = name if name in self._functions else UNKNOWN_FUNCTION
            figures = self._fast_figures[key] = self._fast.function(key)
        return figures

    def _fast_started(self, function: str) -> None:
        self._fast_figures_of(function).in_flight += 1

    def _fast_finished(self, function: str, outcome: str, duration: float) -> None:
        self._fast.finished(self._fast_figures_of(function), outcome, duration)

    def call_started(self, function: str) -> None:
        """Count ``function`` in flight (under ``<unknown>`` if it is not registered)."""
        self._function(function).in_flight.inc()

    def call_finished(self, function: str, outcome: str, duration: float) -> None:
        """Count the call under ``outcome`` and observe its duration; ends `call_started`."""
        figures = self._function(function)
        figures.in_flight.dec()
        figures.duration.observe(duration)
        counter = figures.calls.get(outcome)
        if counter is None:
            # Outcomes come from the SDK's own vocabulary, never from a caller: still counted.
            counter = figures.calls[outcome] = self._calls.labels(figures.name, outcome)
        counter.inc()

    def rejected(self, reason: str) -> None:
        """Count a request refused before any call began."""
        counter = self._rejections.get(reason)
        if counter is None:
            counter = self._rejections[reason] = self._rejected.labels(reason)
        counter.inc()

    def event_published(self, event: str, result: str) -> None:
        """Count one publication of ``event`` that ended ``delivered``/``failed``/``unroutable``."""
        counter = self._published.get((event, result))
        if counter is None:
            counter = self._published[event, result] = self._events.labels(event, result)
        counter.inc()

    def close(self) -> None:
        """At the end of serving: under multiprocess mode, drop this process's live gauges."""
        if self.multiprocess:
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape body and its content type: OpenMetrics if ``accept`` asks for it."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.collector_registry), content_type


class _StateCollector:
    """Gauges read at scrape time from the runtime's own state, and the info metric."""

    def __init__(
        self,
        settings: Settings,
        *,
        sync_threads_busy: Callable[[], int],
        rabbitmq_connected: Callable[[], bool],
        last_healthy_timestamp: Callable[[], float | None],
    ) -> None:
        from . import __version__  # the package is fully imported by the time this runs

        self._version = __version__
        self._deployment_id = settings.deployment_id
        self._events_configured = settings.events_configured
        self._sync_threads_busy = sync_threads_busy
        self._rabbitmq_connected = rabbitmq_connected
        self._last_healthy_timestamp = last_healthy_timestamp

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            f"{PREFIX}_info",
            "Version and deployment of this function service.",
            labels=("version", "deployment_id"),
        )
        info.add_metric((self._version, self._deployment_id), 1)
        yield info
        yield GaugeMetricFamily(
            f"{PREFIX}_sync_threads_busy",
            "Plain def calls running on threads, including those past their deadline.",
            value=self._sync_threads_busy(),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_rabbitmq_connected",
            "1 while the broker connection is up, else 0.",
            value=1 if self._rabbitmq_connected() else 0,
        )
        healthy = GaugeMetricFamily(
            f"{PREFIX}_last_healthy_event_timestamp_seconds",
            "Unix time of the last healthy event the broker confirmed (0: none yet).",
        )
        last = self._last_healthy_timestamp()
        # Without events there is nothing to alert on; with events, "never" must look stale.
        if last is not None or self._events_configured:
            healthy.add_metric((), 0.0 if last is None else last)
        yield healthy
