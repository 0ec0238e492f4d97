"""`FunctionTestClient`: call your functions in a test exactly as the platform does.

It builds the app `create_app` builds, runs its serving hooks (the runtime starts and stops as in
production) and posts to ``/exec`` through the app's ASGI entry point, so a call crosses the same
raw-ASGI endpoint, body reader, envelope parser, guards (auth, limits, idempotency), deadline,
metrics and log line as a deployed one. No socket and no server process: a call costs well under
a millisecond of overhead.

The RabbitMQ events the server publishes (deployment started, healthy beats, execution completed)
go to an `InMemoryBroker` instead of RabbitMQ: `FunctionTestClient.events` lists them and
`FunctionTestClient.wait_for_event` awaits them.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from werkzeug.datastructures import Headers

from ..app import create_app
from ..registry import FunctionRegistry, default_registry
from ..runtime import BROKER_KEY, FunctionRuntime, runtimes_of
from ..settings import Settings, load_settings
from .broker import InMemoryBroker, PublishedEvent
from .responses import CallResponse, ReadyResponse

if TYPE_CHECKING:
    from quart import Quart
    from quart.testing.app import TestApp
    from quart.typing import TestClientProtocol

__all__ = ["FunctionTestClient"]

_BLUEPRINT = "metatwin_functions"


class FunctionTestClient:
    """An in-process client of a function service, for tests.

    ``async with FunctionTestClient(registry) as client:`` starts the app (its serving hooks run:
    the runtime starts, as under Hypercorn) and stops it on exit.

    Args:
        registry: The functions to serve (default: every ``@Function``).
        settings: Complete settings; by default the ``CRBR_*`` environment with ``overrides``
            on top.
        broker: Where events go (default a new `InMemoryBroker`; never RabbitMQ). Events are
            off with ``enable_events=False``.
        headers: Headers sent with every request (e.g. ``{"X-API-Key": "..."}``).
        url_prefix: Where the functions are mounted (``""``: ``/exec``, ``/ready``).
        docs: Serve ``/docs`` and ``/openapi.json`` as `create_app` does.
        startup_timeout: Seconds the serving hooks may take to start (and to stop).
        **overrides: Settings by field name, e.g. ``functions_timeout=1``.
    """

    def __init__(
        self,
        registry: FunctionRegistry | None = None,
        settings: Settings | None = None,
        *,
        broker: InMemoryBroker | None = None,
        headers: Mapping[str, str] | None = None,
        url_prefix: str = "",
        docs: bool = True,
        startup_timeout: int = 6,
        **overrides: Any,
    ) -> None:
        if settings is not None and overrides:
            raise TypeError("pass either settings or keyword overrides, not both")
        self.registry = default_registry if registry is None else registry
        self.settings = settings if settings is not None else load_settings(**overrides)
        self.broker = InMemoryBroker() if broker is None else broker
        self.headers = dict(headers or {})
        self._prefix = url_prefix.rstrip("/")
        self.app: Quart = create_app(
            self.registry,
            self.settings,
            url_prefix=self._prefix or None,
            docs=docs,
            configure_logs=False,
        )
        self.app.extensions[BROKER_KEY] = self.broker
        self._startup_timeout = startup_timeout
        self._test_app: TestApp | None = None
        self._http: TestClientProtocol | None = None
        self._ids = itertools.count(1)
        self._run = uuid.uuid4().hex[:8]

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> FunctionTestClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Run the app's serving hooks (as `__aenter__` does)."""
        if self._test_app is not None:
            raise RuntimeError("this FunctionTestClient is already started")
        from quart.testing.app import TestApp

        test_app = TestApp(self.app, self._startup_timeout, self._startup_timeout)
        await test_app.startup()
        if _BLUEPRINT not in runtimes_of(self.app):
            # Quart reports a failed start-up to the server, not to the caller.
            raise RuntimeError("the app did not start: see the logged error")
        self._test_app = test_app
        self._http = test_app.test_client()

    async def stop(self) -> None:
        """Run the shutdown hooks: the runtime stops, calls in flight are left to finish."""
        test_app, self._test_app, self._http = self._test_app, None, None
        if test_app is not None:
            await test_app.shutdown()

    @property
    def http(self) -> TestClientProtocol:
        """Quart's test client of the app, for other requests (``await client.http.get(...)``)."""
        return self._started()

    def _started(self) -> TestClientProtocol:
        if self._http is None:
            raise RuntimeError(
                "the FunctionTestClient is not started: use 'async with FunctionTestClient(...)'"
            )
        return self._http

    @property
    def runtime(self) -> FunctionRuntime:
        """The runtime serving the calls (its invoker, guards and pipeline)."""
        self._started()
        return runtimes_of(self.app)[_BLUEPRINT]

    # -- calls ----------------------------------------------------------------------------

    async def call(
        self,
        function_name: str,
        /,
        args: Mapping[str, Any] | None = None,
        *,
        execution_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        **arguments: Any,
    ) -> CallResponse:
        """Call ``function_name`` through ``POST /exec`` and return the platform's view of it.

        Arguments go by keyword (``client.call("add_numbers", a=1, b=2)``), or as a mapping in
        ``args`` for names this method uses itself (``args={"headers": ...}``); both merge.
        ``execution_id`` defaults to a new one per call, so idempotency never replays by
        surprise; pass the same one twice to test a replay.
        """
        envelope = {
            "executionId": self._next_id() if execution_id is None else execution_id,
            "functionName": function_name,
            "args": {**(args or {}), **arguments},
        }
        return await self.exec(envelope, headers=headers)

    async def exec(
        self, body: Mapping[str, Any] | bytes | str, *, headers: Mapping[str, str] | None = None
    ) -> CallResponse:
        """``POST /exec`` with any body: an envelope of your own (a ``version``...) or raw bytes.

        Raises:
            ValueError: the answer is not in the ``/exec`` shape (a bug in the SDK).
        """
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        sent = {"Content-Type": "application/json", **self.headers, **(headers or {})}
        response = await self.http.post(f"{self._prefix}/exec", data=data, headers=sent)
        payload = await response.get_json(force=True, silent=True)
        if not isinstance(payload, dict):
            raise ValueError(
                f"/exec answered HTTP {response.status_code} with a body that is not a JSON "
                f"object: {await response.get_data(as_text=True)!r}"
            )
        return CallResponse.from_json(response.status_code, payload, Headers(response.headers))

    def _next_id(self) -> str:
        return f"test-{self._run}-{next(self._ids)}"

    # -- the other endpoints --------------------------------------------------------------

    async def ready(self) -> ReadyResponse:
        """``GET /ready``."""
        response = await self.http.get(f"{self._prefix}/ready", headers=self.headers)
        return ReadyResponse(response.status_code, await response.get_json(force=True))

    async def metrics(self, *, headers: Mapping[str, str] | None = None) -> str:
        """``GET /metrics`` in Prometheus' text format.

        Raises:
            RuntimeError: metrics are turned off (``metrics_enabled=False``) or refused (auth).
        """
        sent = {**self.headers, **(headers or {})}
        response = await self.http.get(f"{self._prefix}/metrics", headers=sent)
        text = await response.get_data(as_text=True)
        if response.status_code != 200:
            raise RuntimeError(f"/metrics answered HTTP {response.status_code}: {text}")
        return text

    async def metric(self, name: str, /, **labels: str) -> float | None:
        """The value of one sample of ``/metrics``, None if there is no such sample.

        ``await client.metric("metatwin_functions_calls_total", function="add", outcome="success")``
        """
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(await self.metrics()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(key) == value for key, value in labels.items()
                ):
                    return float(sample.value)
        return None

    # -- events ---------------------------------------------------------------------------

    @property
    def events(self) -> list[PublishedEvent]:
        """Every event the server published so far, in order (confirmed and routed)."""
        return list(self.broker.published)

    async def wait_for_event(
        self, payload_type: str, *, count: int = 1, timeout: float = 5.0
    ) -> list[PublishedEvent]:
        """Wait until ``count`` events of ``payload_type`` were published; return them all.

        ``payload_type`` is the envelope's: ``FunctionDeploymentStartedPayload``,
        ``FunctionsDeploymentHealthyPayload`` or ``FunctionExecutionCompletedPayload`` (HTTP
        calls publish the latter with ``publish_http_executions=True``).

        Raises:
            TimeoutError: fewer arrived within ``timeout`` seconds (or events are off).
        """
        return await self.broker.wait_for(payload_type, count=count, timeout=timeout)
