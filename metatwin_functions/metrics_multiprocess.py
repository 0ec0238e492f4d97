"""prometheus-client's own metric objects, for its multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``).

Under the ``hypercorn -w N`` command line each worker process counts into shared files, and a
scrape of any worker reads them all back. One process counts in plain numbers instead (see
`call_figures`): the locked objects cost several times more per call.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.multiprocess import mark_process_dead

from .registry import FunctionRegistry

__all__ = ["MultiprocessFigures"]


class _FunctionChildren:
    """The labelled children of one ``function`` label value, resolved once."""

    __slots__ = ("calls", "duration", "in_flight", "name")

    def __init__(
        self,
        name: str,
        calls: Counter,
        duration: Histogram,
        in_flight: Gauge,
        outcomes: tuple[str, ...],
    ) -> None:
        self.name = name
        self.calls = {outcome: calls.labels(name, outcome) for outcome in outcomes}
        self.duration = duration.labels(name)
        self.in_flight = in_flight.labels(name)


class MultiprocessFigures:
    """The `CallMetrics` hooks, recorded into prometheus-client's shared-file values."""

    def __init__(
        self,
        registry: FunctionRegistry,
        *,
        prefix: str,
        unknown: str,
        outcomes: tuple[str, ...],
        buckets: tuple[float, ...],
        reasons: tuple[str, ...],
        events: tuple[tuple[str, str], ...],
    ) -> None:
        self._functions = registry
        self._outcomes = outcomes
        # Never registered in a registry: they write to the shared files, and the scrape reads
        # those files back through a MultiProcessCollector.
        self._calls = Counter(
            f"{prefix}_calls",
            "Calls by function and outcome.",
            ("function", "outcome"),
            registry=None,
        )
        self._duration = Histogram(
            f"{prefix}_call_duration_seconds",
            "Duration of calls, from admission to the answer.",
            ("function",),
            buckets=buckets,
            registry=None,
        )
        self._in_flight = Gauge(
            f"{prefix}_calls_in_flight",
            "Calls running now.",
            ("function",),
            multiprocess_mode="livesum",
            registry=None,
        )
        self._rejected = Counter(
            f"{prefix}_requests_rejected",
            "Requests refused before any function ran, by reason.",
            ("reason",),
            registry=None,
        )
        self._events = Counter(
            f"{prefix}_events_published",
            "Events published to RabbitMQ, by event and result.",
            ("event", "result"),
            registry=None,
        )
        self._children = {name: self._new_children(name) for name in [*registry.names, unknown]}
        self._unknown = self._children[unknown]
        self._rejections = {reason: self._rejected.labels(reason) for reason in reasons}
        self._published = {key: self._events.labels(*key) for key in events}

    def _new_children(self, name: str) -> _FunctionChildren:
        return _FunctionChildren(name, self._calls, self._duration, self._in_flight, self._outcomes)

    def _function(self, name: str) -> _FunctionChildren:
        children = self._children.get(name)
        if children is not None:
            return children
        # Registered after start-up (rare): its own children; anything else is unknown.
        if name in self._functions:
            children = self._children[name] = self._new_children(name)
            return children
        return self._unknown

    def call_started(self, function: str) -> None:
        """Count ``function`` in flight."""
        self._function(function).in_flight.inc()

    def call_finished(self, function: str, outcome: str, duration: float) -> None:
        """Count the call under ``outcome`` and observe its duration."""
        children = self._function(function)
        children.in_flight.dec()
        children.duration.observe(duration)
        counter = children.calls.get(outcome)
        if counter is None:
            counter = children.calls[outcome] = self._calls.labels(children.name, outcome)
        counter.inc()

    def rejected(self, reason: str) -> None:
        """Count a request refused before any call began."""
        counter = self._rejections.get(reason)
        if counter is None:
            counter = self._rejections[reason] = self._rejected.labels(reason)
        counter.inc()

    def event_published(self, event: str, result: str) -> None:
        """Count one publication of an event."""
        counter = self._published.get((event, result))
        if counter is None:
            counter = self._published[event, result] = self._events.labels(event, result)
        counter.inc()

    def close(self) -> None:
        """At the end of serving: drop this process's live gauges from the shared files."""
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
