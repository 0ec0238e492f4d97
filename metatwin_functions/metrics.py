"""Prometheus metrics of a function service: the hooks the call pipeline calls, and ``/metrics``.

`PrometheusMetrics` counts calls, refusals and events in plain numbers on the event loop (see
`call_figures`: a call costs a few dict and integer operations, no lock), and hands them to
prometheus-client only when ``/metrics`` is scraped, through its own `CollectorRegistry` (two apps
in one process do not clash) with prometheus-client's process, platform and GC collectors.
Nothing of prometheus-client is imported before that (or before `PrometheusMetrics.prepare`, which
the runtime runs in a thread once serving has started), so start-up does not pay for it.
Figures that are states rather than counts (sync threads busy, broker connected, last healthy
event) are read from callables at scrape time. Under ``PROMETHEUS_MULTIPROC_DIR`` the counts, the
histogram and the in-flight gauge are aggregated over every process of the server
(prometheus-client's multiprocess mode, `metrics_multiprocess`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Final, Protocol

from .call_figures import CallFigures, FunctionFigures
from .registry import FunctionRegistry
from .settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from .metrics_multiprocess import MultiprocessFigures

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


def multiprocess_mode() -> bool:
    """True when prometheus-client's multiprocess mode is on (as it decides it, by variable)."""
    # prometheus-client still reads the lower-case spelling too (deprecated).
    legacy = "prometheus_multiproc_dir"
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get(legacy))


class PrometheusMetrics:
    """`CallMetrics` exposed in Prometheus' formats by `exposition`.

    Args:
        registry: the functions served; only their names are used as ``function`` labels.
        settings: the deployment id and whether events are configured.
        sync_threads_busy: plain ``def`` calls running, deadline passed or not.
        rabbitmq_connected: whether the broker connection is up right now.
        last_healthy_timestamp: Unix time of the last delivered healthy event, None if none yet.

    `collector_registry` is the prometheus-client registry scraped: register your own metrics
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
        self._settings = settings
        self._sync_threads_busy = sync_threads_busy
        self._rabbitmq_connected = rabbitmq_connected
        self._last_healthy_timestamp = last_healthy_timestamp
        self._registry: CollectorRegistry | None = None
        self._registry_lock = threading.Lock()
        events = tuple((event, result) for event in EVENTS for result in EVENT_RESULTS)
        self.multiprocess = multiprocess_mode()
        self._shared: MultiprocessFigures | None = None
        if self.multiprocess:
            from .metrics_multiprocess import MultiprocessFigures

            shared = self._shared = MultiprocessFigures(
                registry,
                prefix=PREFIX,
                unknown=UNKNOWN_FUNCTION,
                outcomes=OUTCOMES,
                buckets=DURATION_BUCKETS,
                reasons=REJECTION_REASONS,
                events=events,
            )
            self.call_started = shared.call_started  # type: ignore[method-assign]
            self.call_finished = shared.call_finished  # type: ignore[method-assign]
            self.rejected = shared.rejected  # type: ignore[method-assign]
            self.event_published = shared.event_published  # type: ignore[method-assign]
            return
        self._figures = CallFigures(
            PREFIX, DURATION_BUCKETS, OUTCOMES, reasons=REJECTION_REASONS, events=events
        )
        self._by_name = {
            name: self._figures.function(name) for name in [*registry.names, UNKNOWN_FUNCTION]
        }

    def _figures_of(self, name: str) -> FunctionFigures:
        figures = self._by_name.get(name)
        if figures is None:
            # Registered after start-up (rare): its own figures; anything else is unknown.
            key = name if name in self._functions else UNKNOWN_FUNCTION
            figures = self._by_name[key] = self._figures.function(key)
        return figures

    def call_started(self, function: str) -> None:
        """Count ``function`` in flight (under ``<unknown>`` if it is not registered)."""
        self._figures_of(function).in_flight += 1

    def call_finished(self, function: str, outcome: str, duration: float) -> None:
        """Count the call under ``outcome`` and observe its duration; ends `call_started`."""
        self._figures.finished(self._figures_of(function), outcome, duration)

    def rejected(self, reason: str) -> None:
        """Count a request refused before any call began."""
        self._figures.reject(reason)

    def event_published(self, event: str, result: str) -> None:
        """Count one publication of ``event`` that ended ``delivered``/``failed``/``unroutable``."""
        self._figures.published(event, result)

    @property
    def collector_registry(self) -> CollectorRegistry:
        """The registry scraped (built, and prometheus-client imported, on first use)."""
        if self._registry is None:
            with self._registry_lock:
                if self._registry is None:
                    self._registry = self._build_registry()
        return self._registry

    def prepare(self) -> None:
        """Import prometheus-client and build the registry now (the runtime does it in a
        thread once serving has started), so the first scrape is as quick as the others."""
        _ = self.collector_registry

    def _build_registry(self) -> CollectorRegistry:
        from prometheus_client import CollectorRegistry
        from prometheus_client.gc_collector import GCCollector
        from prometheus_client.platform_collector import PlatformCollector
        from prometheus_client.process_collector import ProcessCollector

        collectors = CollectorRegistry()
        if self.multiprocess:
            from prometheus_client.multiprocess import MultiProcessCollector

            MultiProcessCollector(collectors)  # type: ignore[no-untyped-call]
        else:
            collectors.register(self._figures)
        ProcessCollector(registry=collectors)
        PlatformCollector(registry=collectors)
        GCCollector(registry=collectors)
        collectors.register(
            _StateCollector(
                self._settings,
                sync_threads_busy=self._sync_threads_busy,
                rabbitmq_connected=self._rabbitmq_connected,
                last_healthy_timestamp=self._last_healthy_timestamp,
            )
        )
        return collectors

    def close(self) -> None:
        """At the end of serving: under multiprocess mode, drop this process's live gauges."""
        if self._shared is not None:
            self._shared.close()

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape body and its content type: OpenMetrics if ``accept`` asks for it."""
        from prometheus_client.exposition import choose_encoder

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
        from prometheus_client.core import GaugeMetricFamily

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
