"""Per-call cost of metrics and tracing, and what importing them costs at start-up.

    PYTHONPATH=. python benchmarks/observability.py

Micro-benchmarks (timeit, best of 5): the figures are CPU microseconds per call on this machine,
to compare with the ~260 us of CPU a whole ``/exec`` call costs.
"""

from __future__ import annotations

import re
import subprocess
import sys
import timeit
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from metatwin_functions import FunctionRegistry, Settings
from metatwin_functions._otel import OtelCallTracer
from metatwin_functions.metrics import PrometheusMetrics

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def per_call_us(action: Callable[[], object], number: int = 50_000) -> float:
    return min(timeit.repeat(action, number=number, repeat=5)) / number * 1e6


def import_ms(module: str, after: str = "") -> float:
    """Import time of ``module`` in a fresh interpreter (``-X importtime``), ``after`` imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"{after}; import {module}".lstrip("; ")],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in reversed(result.stderr.splitlines()):
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$", line)
        if match and match.group(2) == module:
            return int(match.group(1)) / 1000
    raise RuntimeError(f"{module} not in the import-time report")


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def main() -> None:
    functions = FunctionRegistry()
    functions.register(lambda: 1, name="add")
    metrics = PrometheusMetrics(
        functions,
        Settings(_env_file=None),  # type: ignore[call-arg]
        sync_threads_busy=lambda: 0,
        rabbitmq_connected=lambda: True,
        last_healthy_timestamp=lambda: None,
    )

    def metrics_call() -> None:
        metrics.call_started("add")
        metrics.call_finished("add", "success", 0.0123)

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Discard()))
    tracer = OtelCallTracer(provider, owned=True)

    def span_call(carrier: dict[str, str] | None) -> None:
        span = tracer.start_call("add", "e-1", "http", carrier)
        with span:
            pass
        span.finish("success")

    with_parent = {"traceparent": TRACEPARENT}
    figures = {
        "metrics hooks per call": per_call_us(metrics_call) - per_call_us(lambda: None),
        "span per call, no traceparent": per_call_us(lambda: span_call(None)),
        "span per call, with traceparent": per_call_us(lambda: span_call(with_parent)),
        "scrape, text format, 1 function": per_call_us(lambda: metrics.exposition(None), 200),
    }
    for label, micros in figures.items():
        print(f"{label:34} {micros:8.2f} us")
    tracer.shutdown()
    package = "import metatwin_functions"
    for module, after in (
        ("prometheus_client", ""),
        ("metatwin_functions", ""),
        ("metatwin_functions.metrics", package),
        ("metatwin_functions._otel", package),
        ("opentelemetry.exporter.otlp.proto.http.trace_exporter", package),
    ):
        print(
            f"import {module} {'after the package' if after else 'alone'}: "
            f"{import_ms(module, after):.1f} ms"
        )


if __name__ == "__main__":
    main()
