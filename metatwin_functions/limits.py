"""Traffic limits: concurrency caps and token buckets, checked before a call runs.

Sans-IO and synchronous: `TrafficLimits.acquire` either hands out a `Lease` or raises the 429
error at once, so a guard costs a few attribute reads and never awaits. Every figure is per
process; with several replicas (or Hypercorn workers) each holds its own caps and buckets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from .errors import ConcurrencyLimitedError, ConfigurationError, RateLimitedError
from .rates import Rate, parse_rate
from .registry import FunctionRegistry, FunctionSpec
from .settings import Settings

__all__ = ["Lease", "TrafficLimits"]

Clock = Callable[[], float]


class _Bucket:
    """A token bucket: ``capacity`` tokens at most, refilled continuously, starting full."""

    __slots__ = ("capacity", "per_second", "seconds_per_token", "text", "tokens", "updated")

    def __init__(self, rate: Rate, text: str, now: float) -> None:
        self.capacity = float(rate.tokens)
        self.per_second = rate.per_second
        # Kept apart so an empty "1/h" bucket says 3600 s, not 3600.0000000000005.
        self.seconds_per_token = rate.per_seconds / rate.tokens
        self.text = text
        self.tokens = self.capacity
        self.updated = now

    def wait(self, now: float) -> float:
        """Refill up to ``now``; 0.0 when a token is there, else the seconds until one is."""
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
            self.updated = now
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) * self.seconds_per_token


class _FunctionLimits:
    """What one function spec may use, and how much of it is in use."""

    __slots__ = ("bucket", "in_flight", "max_concurrency", "name", "spec")

    def __init__(self, spec: FunctionSpec, now: float) -> None:
        # Holding the spec keeps its id() from being reused while this entry exists.
        self.spec = spec
        self.name = spec.name
        self.max_concurrency = spec.max_concurrency
        self.in_flight = 0
        self.bucket: _Bucket | None = None
        if spec.rate_limit is not None:
            try:
                rate = parse_rate(spec.rate_limit)
            except ValueError as exc:
                raise ConfigurationError(f"Function '{spec.name}': {exc}") from None
            self.bucket = _Bucket(rate, spec.rate_limit, now)

    @property
    def limited(self) -> bool:
        return self.max_concurrency is not None or self.bucket is not None


class Lease:
    """One admitted call's concurrency slots; `release` them when the call ends (idempotent).

    Also a context manager: ``with limits.acquire(spec): ...``.
    """

    __slots__ = ("_function", "_limits", "_released")

    def __init__(self, limits: TrafficLimits, function: _FunctionLimits) -> None:
        self._limits = limits
        self._function = function
        self._released = False

    def release(self) -> None:
        """Give the call's slots back; calling it again does nothing."""
        if self._released:
            return
        self._released = True
        self._limits._in_flight -= 1
        self._function.in_flight -= 1

    @property
    def released(self) -> bool:
        """True once `release` has run."""
        return self._released

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class TrafficLimits:
    """The process's concurrency caps and rate limits, global and per function.

    Args:
        settings: ``functions_max_concurrency`` (0 = no cap) and ``functions_rate_limit``
            (``"100/s"``, one bucket for all functions together).
        registry: the functions served; their ``max_concurrency`` and ``rate_limit`` apply.
        clock: monotonic seconds; injectable for tests.

    Raises:
        ConfigurationError: ``CRBR_FUNCTIONS_RATE_LIMIT`` (or a spec's ``rate_limit``) is not
            a rate such as ``"100/s"``.
    """

    def __init__(
        self,
        settings: Settings,
        registry: FunctionRegistry,
        clock: Clock = time.monotonic,
    ) -> None:
        self._clock = clock
        self._max_concurrency = settings.functions_max_concurrency
        self._in_flight = 0
        self._bucket: _Bucket | None = None
        self._rate_text = settings.functions_rate_limit
        if settings.functions_rate_limit is not None:
            try:
                rate = parse_rate(settings.functions_rate_limit)
            except ValueError as exc:
                raise ConfigurationError(f"CRBR_FUNCTIONS_RATE_LIMIT: {exc}") from None
            self._bucket = _Bucket(rate, settings.functions_rate_limit, clock())
        # Keyed by id(spec): two versions of one name are two functions with their own limits.
        self._functions: dict[int, _FunctionLimits] = {}
        for spec in registry.specs():  # every version: each has its own limits
            self._function(spec)
        self._enabled = (
            self._max_concurrency > 0
            or self._bucket is not None
            or any(function.limited for function in self._functions.values())
        )

    @property
    def enabled(self) -> bool:
        """False when no limit is configured: the pipeline may then skip `acquire` entirely.

        Reflects the settings and the functions registered when this object was built (at
        start-up, after every ``@Function`` ran).
        """
        return self._enabled

    @property
    def saturated(self) -> bool:
        """True while the process-wide concurrency limit is reached (``/ready`` says so)."""
        return 0 < self._max_concurrency <= self._in_flight

    @property
    def in_flight(self) -> int:
        """Calls holding a lease right now."""
        return self._in_flight

    def acquire(self, spec: FunctionSpec) -> Lease:
        """Admit one call of ``spec`` or refuse it; a refusal consumes nothing.

        Checks, in order: the process-wide concurrency cap, the function's cap, then the
        function's token bucket together with the global one (a token is taken from each only
        when both have one).

        Raises:
            ConcurrencyLimitedError: a concurrency cap is reached (``Retry-After: 1``).
            RateLimitedError: a bucket is empty; ``Retry-After`` is the wait for a token.
        """
        function = self._functions.get(id(spec))
        if function is None:
            function = self._function(spec)
        if 0 < self._max_concurrency <= self._in_flight:
            raise ConcurrencyLimitedError(
                f"Too many calls in flight: this server runs at most {self._max_concurrency} "
                "at once",
                retry_after=1,
            )
        cap = function.max_concurrency
        if cap is not None and function.in_flight >= cap:
            raise ConcurrencyLimitedError(
                f"Too many calls of function '{function.name}' in flight: it runs at most "
                f"{cap} at once",
                retry_after=1,
            )
        own, shared = function.bucket, self._bucket
        if own is not None or shared is not None:
            self._take_tokens(function.name, own, shared)
        self._in_flight += 1
        function.in_flight += 1
        return Lease(self, function)

    def _take_tokens(self, name: str, own: _Bucket | None, shared: _Bucket | None) -> None:
        now = self._clock()
        own_wait = 0.0 if own is None else own.wait(now)
        shared_wait = 0.0 if shared is None else shared.wait(now)
        if own_wait > 0.0 or shared_wait > 0.0:
            # Both buckets are refilled but neither is drawn: a refusal costs no token.
            if own is not None and own_wait >= shared_wait:
                message = f"Rate limit of function '{name}' reached ({own.text})"
            else:
                message = f"Rate limit of this server reached ({self._rate_text})"
            raise RateLimitedError(message, retry_after=max(own_wait, shared_wait))
        if own is not None:
            own.tokens -= 1.0
        if shared is not None:
            shared.tokens -= 1.0

    def _function(self, spec: FunctionSpec) -> _FunctionLimits:
        function = _FunctionLimits(spec, self._clock())
        self._functions[id(spec)] = function
        return function
