"""Traffic limits: concurrency caps, token buckets and what a refusal leaves untouched."""

from __future__ import annotations

from typing import Any

import pytest

from metatwin_functions import FunctionRegistry, FunctionSpec, Settings
from metatwin_functions.errors import (
    ConcurrencyLimitedError,
    ConfigurationError,
    RateLimitedError,
)
from metatwin_functions.limits import TrafficLimits


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def register(registry: FunctionRegistry, name: str, **options: Any) -> FunctionSpec:
    async def func() -> None:
        return None

    return registry.register(func, name=name, **options)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> FunctionRegistry:
    return FunctionRegistry()


def test_limits_are_disabled_when_nothing_is_configured(registry: FunctionRegistry) -> None:
    register(registry, "plain")
    limits = TrafficLimits(make_settings(), registry)
    assert not limits.enabled
    assert not limits.saturated


@pytest.mark.parametrize(
    ("settings_values", "options"),
    [
        ({"functions_max_concurrency": 4}, {}),
        ({"functions_rate_limit": "10/s"}, {}),
        ({}, {"max_concurrency": 2}),
        ({}, {"rate_limit": "5/m"}),
    ],
)
def test_any_global_or_function_limit_enables_the_limits(
    registry: FunctionRegistry, settings_values: dict[str, Any], options: dict[str, Any]
) -> None:
    register(registry, "plain")
    register(registry, "limited", **options)
    assert TrafficLimits(make_settings(**settings_values), registry).enabled


def test_malformed_global_rate_limit_is_a_configuration_error_naming_the_variable(
    registry: FunctionRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRBR_FUNCTIONS_RATE_LIMIT", "ten per second")
    with pytest.raises(ConfigurationError, match="CRBR_FUNCTIONS_RATE_LIMIT"):
        TrafficLimits(make_settings(), registry)


def test_process_cap_refuses_with_retry_after_one_and_a_release_frees_a_slot(
    registry: FunctionRegistry,
) -> None:
    spec = register(registry, "f")
    limits = TrafficLimits(make_settings(functions_max_concurrency=2), registry)
    first = limits.acquire(spec)
    limits.acquire(spec)
    with pytest.raises(ConcurrencyLimitedError) as refused:
        limits.acquire(spec)
    assert refused.value.status == 429
    assert refused.value.kind == "concurrency_limited"
    assert refused.value.headers == {"Retry-After": "1"}
    first.release()
    limits.acquire(spec)


def test_saturated_while_the_process_cap_is_reached(registry: FunctionRegistry) -> None:
    spec = register(registry, "f")
    limits = TrafficLimits(make_settings(functions_max_concurrency=2), registry)
    first = limits.acquire(spec)
    assert not limits.saturated
    second = limits.acquire(spec)
    assert limits.saturated
    second.release()
    assert not limits.saturated
    first.release()
    assert limits.in_flight == 0


def test_function_cap_refuses_that_function_only(registry: FunctionRegistry) -> None:
    capped = register(registry, "capped", max_concurrency=1)
    other = register(registry, "other")
    limits = TrafficLimits(make_settings(), registry)
    lease = limits.acquire(capped)
    with pytest.raises(ConcurrencyLimitedError, match="'capped'"):
        limits.acquire(capped)
    limits.acquire(other)
    limits.acquire(other)
    lease.release()
    limits.acquire(capped)


def test_releasing_a_lease_twice_frees_one_slot(registry: FunctionRegistry) -> None:
    spec = register(registry, "f")
    limits = TrafficLimits(make_settings(functions_max_concurrency=2), registry)
    lease = limits.acquire(spec)
    limits.acquire(spec)
    lease.release()
    lease.release()
    assert lease.released
    limits.acquire(spec)
    with pytest.raises(ConcurrencyLimitedError):
        limits.acquire(spec)


def test_lease_as_context_manager_releases_on_exit(registry: FunctionRegistry) -> None:
    spec = register(registry, "f", max_concurrency=1)
    limits = TrafficLimits(make_settings(), registry)
    with pytest.raises(RuntimeError), limits.acquire(spec):
        raise RuntimeError("the call failed")
    limits.acquire(spec)


def test_bucket_starts_full_and_refills_continuously(
    registry: FunctionRegistry, clock: FakeClock
) -> None:
    spec = register(registry, "f", rate_limit="2/s")
    limits = TrafficLimits(make_settings(), registry, clock=clock)
    limits.acquire(spec).release()
    limits.acquire(spec).release()
    with pytest.raises(RateLimitedError) as refused:
        limits.acquire(spec)
    assert refused.value.kind == "rate_limited"
    assert refused.value.headers == {"Retry-After": "1"}
    clock.advance(0.5)
    limits.acquire(spec).release()
    with pytest.raises(RateLimitedError):
        limits.acquire(spec)


def test_refill_never_exceeds_the_bucket_size(registry: FunctionRegistry, clock: FakeClock) -> None:
    spec = register(registry, "f", rate_limit="2/s")
    limits = TrafficLimits(make_settings(), registry, clock=clock)
    clock.advance(100)
    limits.acquire(spec).release()
    limits.acquire(spec).release()
    with pytest.raises(RateLimitedError):
        limits.acquire(spec)


@pytest.mark.parametrize(
    ("rate", "calls", "waited", "retry_after"),
    [
        ("1/h", 1, 0.0, "3600"),
        ("1/h", 1, 1800.0, "1800"),
        ("20/m", 20, 0.0, "3"),
        ("20/m", 20, 1.0, "2"),
        ("3/m", 3, 0.5, "20"),
        ("100/s", 100, 0.0, "1"),
    ],
)
def test_retry_after_is_the_wait_for_a_token_rounded_up(
    registry: FunctionRegistry,
    clock: FakeClock,
    rate: str,
    calls: int,
    waited: float,
    retry_after: str,
) -> None:
    spec = register(registry, "f", rate_limit=rate)
    limits = TrafficLimits(make_settings(), registry, clock=clock)
    for _ in range(calls):
        limits.acquire(spec).release()
    clock.advance(waited)
    with pytest.raises(RateLimitedError) as refused:
        limits.acquire(spec)
    assert refused.value.headers == {"Retry-After": retry_after}


def test_concurrency_refusal_spends_no_token(registry: FunctionRegistry, clock: FakeClock) -> None:
    spec = register(registry, "f", max_concurrency=1, rate_limit="2/h")
    limits = TrafficLimits(make_settings(), registry, clock=clock)
    lease = limits.acquire(spec)
    for _ in range(3):
        with pytest.raises(ConcurrencyLimitedError):
            limits.acquire(spec)
    lease.release()
    limits.acquire(spec)


def test_rate_refusal_holds_no_slot(registry: FunctionRegistry, clock: FakeClock) -> None:
    limited = register(registry, "limited", rate_limit="1/h")
    other = register(registry, "other")
    limits = TrafficLimits(make_settings(functions_max_concurrency=2), registry, clock=clock)
    limits.acquire(limited)
    for _ in range(3):
        with pytest.raises(RateLimitedError):
            limits.acquire(limited)
    limits.acquire(other)
    assert limits.saturated
    assert limits.in_flight == 2


def test_function_bucket_refusal_spends_no_global_token(
    registry: FunctionRegistry, clock: FakeClock
) -> None:
    limited = register(registry, "limited", rate_limit="1/h")
    other = register(registry, "other")
    limits = TrafficLimits(make_settings(functions_rate_limit="2/h"), registry, clock=clock)
    limits.acquire(limited).release()
    with pytest.raises(RateLimitedError, match="function 'limited'"):
        limits.acquire(limited)
    limits.acquire(other).release()
    with pytest.raises(RateLimitedError, match="this server"):
        limits.acquire(other)


def test_global_bucket_refusal_spends_no_function_token(
    registry: FunctionRegistry, clock: FakeClock
) -> None:
    limited = register(registry, "limited", rate_limit="2/h")
    other = register(registry, "other")
    limits = TrafficLimits(make_settings(functions_rate_limit="1/s"), registry, clock=clock)
    limits.acquire(other).release()
    with pytest.raises(RateLimitedError, match="this server") as refused:
        limits.acquire(limited)
    assert refused.value.headers == {"Retry-After": "1"}
    clock.advance(1)
    limits.acquire(limited).release()
    clock.advance(1)
    limits.acquire(limited).release()
    clock.advance(1)
    with pytest.raises(RateLimitedError, match="function 'limited'"):
        limits.acquire(limited)


def test_retry_after_names_the_longer_wait_when_both_buckets_are_empty(
    registry: FunctionRegistry, clock: FakeClock
) -> None:
    limited = register(registry, "limited", rate_limit="1/h")
    limits = TrafficLimits(make_settings(functions_rate_limit="1/m"), registry, clock=clock)
    limits.acquire(limited).release()
    with pytest.raises(RateLimitedError) as refused:
        limits.acquire(limited)
    assert refused.value.headers == {"Retry-After": "3600"}


def test_each_function_has_its_own_bucket(registry: FunctionRegistry, clock: FakeClock) -> None:
    first = register(registry, "first", rate_limit="1/h")
    second = register(registry, "second", rate_limit="1/h")
    limits = TrafficLimits(make_settings(), registry, clock=clock)
    limits.acquire(first).release()
    with pytest.raises(RateLimitedError):
        limits.acquire(first)
    limits.acquire(second).release()


def test_global_bucket_is_shared_by_all_functions(
    registry: FunctionRegistry, clock: FakeClock
) -> None:
    first = register(registry, "first")
    second = register(registry, "second")
    limits = TrafficLimits(make_settings(functions_rate_limit="2/m"), registry, clock=clock)
    limits.acquire(first).release()
    limits.acquire(second).release()
    with pytest.raises(RateLimitedError) as refused:
        limits.acquire(first)
    assert refused.value.headers == {"Retry-After": "30"}


def test_function_registered_after_start_is_still_limited(
    registry: FunctionRegistry, clock: FakeClock
) -> None:
    limits = TrafficLimits(make_settings(functions_max_concurrency=10), registry, clock=clock)
    late = register(registry, "late", max_concurrency=1)
    limits.acquire(late)
    with pytest.raises(ConcurrencyLimitedError):
        limits.acquire(late)
