"""Tracing: one span per call, W3C context continued and injected, ids in JSON log lines."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from metatwin_functions import Settings, configure_logging, logs
from metatwin_functions._otel import OtelCallTracer
from metatwin_functions._otel import current_trace_ids as otel_trace_ids
from metatwin_functions.tracing import build_tracer, current_trace_ids

ROOT = Path(__file__).resolve().parent.parent
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    yield spans
    spans.shutdown()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    spans_to_memory = TracerProvider()
    spans_to_memory.add_span_processor(SimpleSpanProcessor(exporter))
    return spans_to_memory


@pytest.fixture
def tracer(provider: TracerProvider) -> OtelCallTracer:
    return OtelCallTracer(provider, owned=True)


def test_a_call_span_continues_the_callers_traceparent(
    tracer: OtelCallTracer, exporter: InMemorySpanExporter
) -> None:
    carrier = {"Traceparent": TRACEPARENT, "tracestate": "vendor=abc"}

    span = tracer.start_call("add_numbers", "e-1", "http", carrier)
    with span:
        pass
    span.finish("success")

    (finished,) = exporter.get_finished_spans()
    assert finished.name == "add_numbers"
    assert finished.kind is SpanKind.SERVER
    assert finished.parent is not None
    assert finished.parent.is_remote
    assert format(finished.parent.span_id, "016x") == PARENT_ID
    assert format(finished.context.trace_id, "032x") == TRACE_ID
    assert finished.context.trace_state.get("vendor") == "abc"
    assert finished.status.status_code is StatusCode.UNSET
    attributes = dict(finished.attributes or {})
    assert attributes["faas.invocation_id"] == "e-1"
    assert attributes["faas.trigger"] == "http"
    assert attributes["metatwin.outcome"] == "success"


def test_without_traceparent_a_new_trace_starts_even_under_another_span(
    tracer: OtelCallTracer, exporter: InMemorySpanExporter
) -> None:
    outer = TracerProvider().get_tracer("test").start_span("outer")
    with trace.use_span(outer, end_on_exit=True):
        span = tracer.start_call("add_numbers", "e-2", "http", None)
        span.finish("success")
        other = tracer.start_call("add_numbers", "e-3", "http", {"x-other": "1"})
        other.finish("success")

    for finished in exporter.get_finished_spans():
        assert finished.parent is None
        assert finished.context.trace_id != outer.get_span_context().trace_id


@pytest.mark.parametrize(
    ("trigger", "faas_trigger", "kind"),
    [
        ("http", "http", SpanKind.SERVER),
        ("stream", "http", SpanKind.SERVER),
        ("websocket", "http", SpanKind.SERVER),
        ("amqp", "pubsub", SpanKind.CONSUMER),
        ("schedule", "timer", SpanKind.SERVER),
    ],
)
def test_our_triggers_map_to_faas_triggers_and_span_kinds(
    tracer: OtelCallTracer,
    exporter: InMemorySpanExporter,
    trigger: str,
    faas_trigger: str,
    kind: SpanKind,
) -> None:
    tracer.start_call("f", "e", trigger, None).finish("success")

    (finished,) = exporter.get_finished_spans()
    assert (finished.attributes or {})["faas.trigger"] == faas_trigger
    assert finished.kind is kind


def test_amqp_headers_with_bytes_values_are_continued(
    tracer: OtelCallTracer, exporter: InMemorySpanExporter
) -> None:
    tracer.start_call("f", "e", "amqp", {"traceparent": TRACEPARENT.encode()}).finish("success")  # type: ignore[dict-item]

    (finished,) = exporter.get_finished_spans()
    assert finished.parent is not None
    assert format(finished.parent.span_id, "016x") == PARENT_ID


def test_a_failed_call_sets_status_error_and_records_the_exception(
    tracer: OtelCallTracer, exporter: InMemorySpanExporter
) -> None:
    span = tracer.start_call("divide", "e-4", "http", None)
    with span:
        error = ZeroDivisionError("division by zero")
    span.finish("execution_failed", error)
    tracer.start_call("slow", "e-5", "http", None).finish("timeout", "timed out after 2 seconds")

    failed, timed_out = exporter.get_finished_spans()
    assert failed.status.status_code is StatusCode.ERROR
    assert "division by zero" in (failed.status.description or "")
    assert (failed.attributes or {})["metatwin.outcome"] == "execution_failed"
    assert [event.name for event in failed.events] == ["exception"]
    assert timed_out.status.status_code is StatusCode.ERROR
    assert (timed_out.attributes or {})["error.type"] == "timeout"


def test_a_replayed_answer_is_not_an_error(
    tracer: OtelCallTracer, exporter: InMemorySpanExporter
) -> None:
    tracer.start_call("f", "e", "http", None).finish("replayed")

    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.UNSET


def test_a_span_left_by_an_exception_is_ended_as_an_error(
    tracer: OtelCallTracer, exporter: InMemorySpanExporter
) -> None:
    span = tracer.start_call("f", "e", "websocket", None)
    with pytest.raises(asyncio.CancelledError), span:
        raise asyncio.CancelledError

    (finished,) = exporter.get_finished_spans()
    assert (finished.attributes or {})["metatwin.outcome"] == "cancelled"
    assert finished.status.status_code is StatusCode.ERROR
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_the_call_span_is_current_in_the_function_and_its_thread(
    provider: TracerProvider, tracer: OtelCallTracer, exporter: InMemorySpanExporter
) -> None:
    user_tracer = provider.get_tracer("user-code")

    def in_thread() -> None:
        with user_tracer.start_as_current_span("child"):
            pass

    span = tracer.start_call("f", "e", "http", {"traceparent": TRACEPARENT})
    with span:
        ids = current_trace_ids()
        await asyncio.to_thread(in_thread)  # copies contextvars, as the pipeline does
    span.finish("success")

    child, call = exporter.get_finished_spans()
    assert child.parent is not None
    assert child.parent.span_id == call.context.span_id
    assert ids == (TRACE_ID, format(call.context.span_id, "016x"))
    assert current_trace_ids() is None


def test_inject_writes_the_current_call_span_into_outgoing_headers(
    tracer: OtelCallTracer, exporter: InMemorySpanExporter
) -> None:
    headers: dict[str, str] = {}
    outside: dict[str, str] = {}

    span = tracer.start_call("f", "e", "amqp", {"traceparent": TRACEPARENT})
    with span:
        tracer.inject(headers)
    span.finish("success")
    tracer.inject(outside)

    (finished,) = exporter.get_finished_spans()
    assert headers["traceparent"] == f"00-{TRACE_ID}-{format(finished.context.span_id, '016x')}-01"
    assert outside == {}


def test_json_log_lines_under_a_span_carry_trace_and_span_ids(
    tracer: OtelCallTracer, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    configure_logging(Settings(deployment_id="dep-42", _env_file=None), stream)  # type: ignore[call-arg]
    monkeypatch.setattr(logs, "trace_ids_hook", otel_trace_ids)  # what build_tracer installs
    log = logging.getLogger("user.function")

    span = tracer.start_call("f", "e", "http", {"traceparent": TRACEPARENT})
    with span:
        log.warning("inside")
    span.finish("success")
    log.warning("outside")

    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["trace_id"] == TRACE_ID
    assert len(inside["span_id"]) == 16
    assert inside["span_id"] == inside["span_id"].lower() != PARENT_ID
    assert "trace_id" not in outside
    assert "span_id" not in outside


def test_without_an_endpoint_or_a_provider_of_the_application_nothing_is_traced(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(logs, "trace_ids_hook", None)

    assert build_tracer(settings) is None
    assert logs.trace_ids_hook is None


def _run(script: str, **environment: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CRBR_"))}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**clean, "PYTHONPATH": str(ROOT), **environment},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def test_importing_the_package_with_tracing_unconfigured_imports_no_opentelemetry() -> None:
    result = _run(
        """
        import sys
        import metatwin_functions, metatwin_functions.tracing, metatwin_functions.metrics
        from metatwin_functions.tracing import build_tracer
        assert build_tracer(metatwin_functions.Settings(_env_file=None)) is None
        print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
        """
    )

    assert result.stdout.strip() == "[]"


def test_without_the_extra_an_endpoint_turns_nothing_on() -> None:
    result = _run(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
        from metatwin_functions import Settings
        from metatwin_functions.tracing import build_tracer
        print(build_tracer(Settings(_env_file=None)))
        """,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
    )

    assert result.stdout.strip() == "None"


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: decodes each export request into the server's list."""

    server: _CollectorServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.received.append((self.path, self.headers["Content-Type"], request))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _CollectorServer(ThreadingHTTPServer):
    received: list[tuple[str, str, ExportTraceServiceRequest]]


@pytest.fixture
def collector() -> Iterator[_CollectorServer]:
    server = _CollectorServer(("127.0.0.1", 0), _Collector)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


_EXPORTING_PROCESS = f"""
    import logging
    from metatwin_functions import Settings, configure_logging
    from metatwin_functions.tracing import build_tracer

    settings = Settings(deployment_id="dep-42", _env_file=None)
    configure_logging(settings)
    tracer = build_tracer(settings)
    first = tracer.start_call("add_numbers", "e-1", "http", {{"traceparent": "{TRACEPARENT}"}})
    with first:
        logging.getLogger("user").warning("adding")
    first.finish("success")
    second = tracer.start_call("divide", "e-2", "amqp", {{"traceparent": "{TRACEPARENT}"}})
    with second:
        error = ZeroDivisionError("division by zero")
    second.finish("execution_failed", error)
    tracer.shutdown()  # flushes the batch
"""


def test_spans_are_exported_over_otlp_http_to_the_configured_endpoint(
    collector: _CollectorServer,
) -> None:
    host, port = collector.server_address[:2]

    result = _run(_EXPORTING_PROCESS, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{host!s}:{port}")

    spans = {}
    for path, content_type, request in collector.received:
        assert path == "/v1/traces"
        assert content_type == "application/x-protobuf"
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert resource["service.name"] == "dep-42"
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans[span.name] = span
    assert set(spans) == {"add_numbers", "divide"}
    first, second = spans["add_numbers"], spans["divide"]

    def attributes(span: object) -> dict[str, object]:
        return {
            a.key: getattr(a.value, a.value.WhichOneof("value"))
            for a in span.attributes  # type: ignore[attr-defined]
        }

    for span in (first, second):
        assert span.trace_id.hex() == TRACE_ID
        assert span.parent_span_id.hex() == PARENT_ID
    assert attributes(first) == {
        "faas.invocation_id": "e-1",
        "faas.trigger": "http",
        "faas.coldstart": True,
        "metatwin.outcome": "success",
    }
    assert attributes(second)["faas.coldstart"] is False
    assert attributes(second)["faas.trigger"] == "pubsub"
    assert second.status.code == second.status.STATUS_CODE_ERROR
    assert first.status.code == first.status.STATUS_CODE_UNSET
    assert first.kind == first.SPAN_KIND_SERVER
    assert second.kind == second.SPAN_KIND_CONSUMER
    (line,) = (json.loads(line) for line in result.stdout.splitlines() if '"adding"' in line)
    assert line["trace_id"] == TRACE_ID
    assert line["span_id"] == first.span_id.hex()
