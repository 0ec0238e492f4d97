"""PrometheusMetrics: the contract's figures, as a scraper parses them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from metatwin_functions import FunctionRegistry, Settings, __version__
from metatwin_functions.metrics import (
    EVENT_RESULTS,
    EVENTS,
    OUTCOMES,
    REJECTION_REASONS,
    PrometheusMetrics,
)

ROOT = Path(__file__).resolve().parent.parent
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class State:
    """The runtime state the scrape-time gauges read."""

    def __init__(self) -> None:
        self.busy = 0
        self.connected = False
        self.last_healthy: float | None = None


@pytest.fixture
def registry() -> FunctionRegistry:
    functions = FunctionRegistry()

    @functions.function()
    def add(a: int, b: int) -> int:
        return a + b

    @functions.function()
    async def echo(text: str) -> str:
        return text

    return functions


@pytest.fixture
def state() -> State:
    return State()


def make_metrics(registry: FunctionRegistry, state: State, **settings: Any) -> PrometheusMetrics:
    return PrometheusMetrics(
        registry,
        Settings(deployment_id="dep-42", _env_file=None, **settings),  # type: ignore[call-arg]
        sync_threads_busy=lambda: state.busy,
        rabbitmq_connected=lambda: state.connected,
        last_healthy_timestamp=lambda: state.last_healthy,
    )


@pytest.fixture
def metrics(registry: FunctionRegistry, state: State) -> PrometheusMetrics:
    return make_metrics(registry, state)


def scrape(metrics: PrometheusMetrics) -> Samples:
    body, content_type = metrics.exposition(None)
    assert content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_calls_of_every_outcome_are_counted_by_function_and_outcome(
    metrics: PrometheusMetrics,
) -> None:
    for times, outcome in enumerate(OUTCOMES, start=1):
        for _ in range(times):
            metrics.call_started("add")
            metrics.call_finished("add", outcome, 0.02)

    samples = scrape(metrics)

    for times, outcome in enumerate(OUTCOMES, start=1):
        calls = value(samples, "metatwin_functions_calls_total", function="add", outcome=outcome)
        assert calls == times, outcome
        assert (
            value(samples, "metatwin_functions_calls_total", function="echo", outcome=outcome) == 0
        )
    total = len(OUTCOMES) * (len(OUTCOMES) + 1) / 2
    name = "metatwin_functions_call_duration_seconds"
    assert value(samples, f"{name}_count", function="add") == total
    assert value(samples, f"{name}_sum", function="add") == pytest.approx(total * 0.02)
    assert value(samples, f"{name}_bucket", function="add", le="0.01") == 0
    assert value(samples, f"{name}_bucket", function="add", le="0.025") == total


def test_duration_buckets_run_from_5_ms_to_300_s(metrics: PrometheusMetrics) -> None:
    bounds = sorted(
        float(dict(labels)["le"])
        for name, labels in scrape(metrics)
        if name == "metatwin_functions_call_duration_seconds_bucket"
        and dict(labels)["function"] == "add"
    )

    assert bounds[0] == 0.005
    assert bounds[-2:] == [300.0, float("inf")]


def test_a_name_that_is_not_registered_counts_under_unknown(metrics: PrometheusMetrics) -> None:
    for name in ("no_such_function", "x" * 200, "evil\nname"):
        metrics.call_started(name)
        metrics.call_finished(name, "not_found", 0.001)

    samples = scrape(metrics)

    functions = {dict(labels).get("function") for _, labels in samples} - {None}
    assert functions == {"add", "echo", "<unknown>"}
    unknown = value(
        samples, "metatwin_functions_calls_total", function="<unknown>", outcome="not_found"
    )
    assert unknown == 3


def test_a_function_registered_after_start_gets_its_own_label(
    registry: FunctionRegistry, metrics: PrometheusMetrics
) -> None:
    registry.register(lambda: 1, name="late")

    metrics.call_started("late")
    metrics.call_finished("late", "success", 0.001)

    calls = value(
        scrape(metrics), "metatwin_functions_calls_total", function="late", outcome="success"
    )
    assert calls == 1


def test_calls_in_flight_rise_on_start_and_fall_on_finish(metrics: PrometheusMetrics) -> None:
    metrics.call_started("add")
    metrics.call_started("add")
    metrics.call_started("nope")
    during = scrape(metrics)
    metrics.call_finished("add", "success", 0.1)
    metrics.call_finished("nope", "not_found", 0.1)
    after = scrape(metrics)

    assert value(during, "metatwin_functions_calls_in_flight", function="add") == 2
    assert value(during, "metatwin_functions_calls_in_flight", function="<unknown>") == 1
    assert value(after, "metatwin_functions_calls_in_flight", function="add") == 1
    assert value(after, "metatwin_functions_calls_in_flight", function="<unknown>") == 0


def test_every_rejection_reason_is_counted(metrics: PrometheusMetrics) -> None:
    for times, reason in enumerate(REJECTION_REASONS, start=1):
        for _ in range(times):
            metrics.rejected(reason)

    samples = scrape(metrics)

    for times, reason in enumerate(REJECTION_REASONS, start=1):
        assert value(samples, "metatwin_functions_requests_rejected_total", reason=reason) == times


def test_events_are_counted_by_event_and_result(metrics: PrometheusMetrics) -> None:
    metrics.event_published("started", "delivered")
    metrics.event_published("healthy", "delivered")
    metrics.event_published("healthy", "delivered")
    metrics.event_published("execution_completed", "unroutable")
    metrics.event_published("healthy", "failed")

    samples = scrape(metrics)

    name = "metatwin_functions_events_published_total"
    expected = {
        ("started", "delivered"): 1,
        ("healthy", "delivered"): 2,
        ("healthy", "failed"): 1,
        ("execution_completed", "unroutable"): 1,
    }
    for event in EVENTS:
        for result in EVENT_RESULTS:
            figure = value(samples, name, event=event, result=result)
            assert figure == expected.get((event, result), 0), (event, result)


def test_state_gauges_are_read_at_scrape_time(metrics: PrometheusMetrics, state: State) -> None:
    before = scrape(metrics)
    state.busy, state.connected = 3, True
    after = scrape(metrics)

    assert value(before, "metatwin_functions_sync_threads_busy") == 0
    assert value(before, "metatwin_functions_rabbitmq_connected") == 0
    assert value(after, "metatwin_functions_sync_threads_busy") == 3
    assert value(after, "metatwin_functions_rabbitmq_connected") == 1


def test_last_healthy_timestamp_is_zero_until_the_first_beat_when_events_are_configured(
    registry: FunctionRegistry, state: State
) -> None:
    metrics = make_metrics(
        registry,
        state,
        rabbitmq_hostname="127.0.0.1",
        rabbitmq_username="guest",
        rabbitmq_password="guest",
    )
    name = "metatwin_functions_last_healthy_event_timestamp_seconds"

    assert value(scrape(metrics), name) == 0
    state.last_healthy = 1_790_000_000.5
    assert value(scrape(metrics), name) == 1_790_000_000.5


def test_last_healthy_timestamp_is_absent_without_events(metrics: PrometheusMetrics) -> None:
    families = {
        f.name for f in text_string_to_metric_families(metrics.exposition(None)[0].decode())
    }
    samples = scrape(metrics)

    assert "metatwin_functions_last_healthy_event_timestamp_seconds" in families
    assert not [key for key in samples if key[0].endswith("last_healthy_event_timestamp_seconds")]


def test_info_metric_carries_version_and_deployment_id(metrics: PrometheusMetrics) -> None:
    samples = scrape(metrics)

    info = value(samples, "metatwin_functions_info", version=__version__, deployment_id="dep-42")
    assert info == 1


def test_process_and_python_collectors_are_included(metrics: PrometheusMetrics) -> None:
    names = {name for name, _ in scrape(metrics)}

    assert {
        "process_cpu_seconds_total",
        "python_info",
        "python_gc_objects_collected_total",
    } <= names


def test_openmetrics_is_served_when_the_scraper_asks_for_it(metrics: PrometheusMetrics) -> None:
    metrics.call_started("add")
    metrics.call_finished("add", "success", 0.5)
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

    body, content_type = metrics.exposition(accept)

    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    families = {family.name: family for family in openmetrics_families(body.decode())}
    assert families["metatwin_functions_calls"].type == "counter"
    assert families["metatwin_functions_call_duration_seconds"].type == "histogram"


def test_plain_text_is_served_to_a_scraper_that_does_not_ask_for_openmetrics(
    metrics: PrometheusMetrics,
) -> None:
    for accept in (None, "", "text/plain", "*/*"):
        body, content_type = metrics.exposition(accept)
        assert content_type.startswith("text/plain; version=0.0.4"), accept
        assert b"# EOF" not in body


def test_two_instances_in_one_process_keep_their_own_figures(
    registry: FunctionRegistry, state: State
) -> None:
    first, second = make_metrics(registry, state), make_metrics(registry, state)

    first.call_started("add")
    first.call_finished("add", "success", 0.01)

    name = "metatwin_functions_calls_total"
    assert value(scrape(first), name, function="add", outcome="success") == 1
    assert value(scrape(second), name, function="add", outcome="success") == 0


_PROCESS_SCRIPT = textwrap.dedent(
    """
    import sys
    from metatwin_functions import FunctionRegistry, Settings
    from metatwin_functions.metrics import PrometheusMetrics

    functions = FunctionRegistry()
    functions.register(lambda: 1, name="add")
    metrics = PrometheusMetrics(
        functions, Settings(_env_file=None), sync_threads_busy=lambda: 0,
        rabbitmq_connected=lambda: True, last_healthy_timestamp=lambda: None,
    )
    for _ in range(int(sys.argv[1])):
        metrics.call_started("add")
        metrics.call_finished("add", "success", 0.01)
    metrics.call_started("add")  # one call left in flight
    if sys.argv[2] == "scrape":
        sys.stdout.write(metrics.exposition(None)[0].decode())
    elif sys.argv[2] == "close":
        metrics.close()
    """
)


def test_multiprocess_mode_adds_up_every_process(tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }

    def run(calls: int, action: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", _PROCESS_SCRIPT, str(calls), action],
            env=environment,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout

    run(2, "close")  # a worker that served and stopped
    run(3, "keep")  # a worker still running (its in-flight call stays)
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(run(4, "scrape"))
        for sample in family.samples
    }

    name = "metatwin_functions_calls_total"
    assert value(samples, name, function="add", outcome="success") == 9
    assert value(samples, "metatwin_functions_call_duration_seconds_count", function="add") == 9
    assert value(samples, "metatwin_functions_calls_in_flight", function="add") == 2
    assert value(samples, "metatwin_functions_rabbitmq_connected") == 1


def _queried_metric_names() -> Iterator[tuple[str, str]]:
    def expressions(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            for key, child in node.items():
                if key == "expr" and isinstance(child, str):
                    yield child
                else:
                    yield from expressions(child)
        elif isinstance(node, list):
            for child in node:
                yield from expressions(child)

    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus-alerts.yml").read_text())
    assert [rule["alert"] for group in alerts["groups"] for rule in group["rules"]]
    for source, document in (("dashboard", dashboard), ("alerts", alerts)):
        for expression in expressions(document):
            for name in re.findall(r"\bmetatwin_functions_\w+", expression):
                yield source, name


def test_dashboard_and_alerts_query_only_metrics_that_exist(
    registry: FunctionRegistry, metrics: PrometheusMetrics
) -> None:
    for outcome in OUTCOMES:
        metrics.call_started("add")
        metrics.call_finished("add", outcome, 0.01)
    for reason in REJECTION_REASONS:
        metrics.rejected(reason)
    metrics.event_published("healthy", "delivered")
    events_on = make_metrics(
        registry,
        State(),
        rabbitmq_hostname="127.0.0.1",
        rabbitmq_username="guest",
        rabbitmq_password="guest",
    )
    exposed = {name for name, _ in scrape(metrics)} | {name for name, _ in scrape(events_on)}

    queried = list(_queried_metric_names())

    assert {source for source, _ in queried} == {"dashboard", "alerts"}
    assert [(source, name) for source, name in queried if name not in exposed] == []


def test_counting_calls_imports_nothing_of_prometheus_client_before_a_scrape() -> None:
    code = (
        "import sys\n"
        "from metatwin_functions import FunctionRegistry, Settings, create_app\n"
        "from metatwin_functions.runtime import FunctionRuntime\n"
        "registry = FunctionRegistry()\n"
        "registry.register(lambda a: a, name='f')\n"
        "settings = Settings(enable_events=False, _env_file=None)\n"
        "create_app(registry, settings, configure_logs=False)\n"
        "runtime = FunctionRuntime(registry, settings)\n"
        "runtime.metrics.call_started('f'); runtime.metrics.call_finished('f', 'success', 0.1)\n"
        "runtime.metrics.rejected('too_large')\n"
        "assert 'prometheus_client' not in sys.modules, 'imported before the scrape'\n"
        "body, _ = runtime.metrics.exposition(None)\n"
        'assert b\'metatwin_functions_calls_total{function="f",outcome="success"} 1.0\' in body\n'
        "assert b'metatwin_functions_requests_rejected_total{reason=\"too_large\"} 1.0' in body\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
