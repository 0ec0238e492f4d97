"""The per-app runtime: invoker, lifecycle state and (when configured) the events service."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from typing import TYPE_CHECKING, Any, Literal

from pydantic_core import from_json

from .answers import Answer
from .envelope import ExecRequest
from .guards import CallGuards
from .invocation import Invoker
from .pipeline import CallPipeline
from .registry import FunctionRegistry
from .settings import Settings
from .tracing import build_tracer
from .watchdog import LoopWatchdog

if TYPE_CHECKING:
    from quart import Quart

    from .amqp import ExecConsumer
    from .events import EventsService
    from .events.transport import BrokerConnector
    from .idempotency import IdempotencyStore
    from .metrics import PrometheusMetrics
    from .scheduler import Clock, Scheduler

__all__ = ["FunctionRuntime", "RuntimeState", "runtimes_of"]

RuntimeState = Literal["starting", "ready", "draining", "stopped"]

#: How long the execution completed event of a schedule tick or an HTTP call is tried again
#: while the broker does not confirm it, seconds (AMQP calls keep their message until it is).
COMPLETED_EVENT_PATIENCE = 30.0
_COMPLETED_RETRY_DELAY = 0.5
EXTENSION_KEY = "metatwin_functions"
#: ``app.extensions`` key of a broker the serving hooks hand the runtime (the test kit's).
BROKER_KEY = "metatwin_functions.broker"

logger = logging.getLogger("metatwin_functions.runtime")

#: How long an AMQP call waits for a disconnected events link before its message is requeued.
AMQP_EVENT_PATIENCE = 30.0


class FunctionRuntime:
    """Everything one serving app needs to answer calls, started and stopped with the app."""

    def __init__(
        self,
        registry: FunctionRegistry,
        settings: Settings,
        *,
        idempotency_store: IdempotencyStore | None = None,
        schedule_clock: Clock | None = None,
        broker: BrokerConnector | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        # A broker passed in (the test kit's InMemoryBroker) needs no broker settings.
        self._broker = broker
        self._events_wanted = settings.events_configured or (
            broker is not None and settings.enable_events
        )
        self.invoker = Invoker(registry, settings)
        self.guards = CallGuards(
            registry,
            settings,
            idempotency_store=idempotency_store,
            metrics=self._metrics(),
            tracer=build_tracer(settings),
        )
        self.pipeline = CallPipeline(
            self.invoker, self.guards, lambda: self.state == "ready", state=lambda: self.state
        )
        self.events: EventsService | None = None
        self._publishing: set[asyncio.Task[bool]] = set()
        if settings.publish_http_executions and self._events_wanted:
            self.pipeline.on_http_call = self._publish_http_call
        self.state: RuntimeState = "starting"
        #: Set when the drain begins: long-lived connections (WebSockets) close once idle.
        self.draining = asyncio.Event()
        self._events_starting: asyncio.Task[None] | None = None
        # Execution over RabbitMQ (CRBR_AMQP_EXEC_ENABLED): the queue consumer, loaded like events.
        self.amqp: ExecConsumer | None = None
        self._amqp_starting: asyncio.Task[None] | None = None
        self._watchdog = LoopWatchdog(self.invoker.async_calls)
        self._preparing_metrics: asyncio.Task[None] | None = None
        # schedules (None when no function has one).
        self.scheduler: Scheduler | None = None
        self._schedule_clock = schedule_clock  # tests drive ticks with their own clock

    def _metrics(self) -> PrometheusMetrics | None:
        if not self.settings.metrics_enabled:
            return None
        from .metrics import PrometheusMetrics

        return PrometheusMetrics(
            self.registry,
            self.settings,
            sync_threads_busy=lambda: self.invoker.threads_busy,
            rabbitmq_connected=lambda: self.rabbitmq_connected,
            last_healthy_timestamp=self._last_healthy_timestamp,
        )

    def _last_healthy_timestamp(self) -> float | None:
        events = self.events
        return getattr(events, "last_healthy_timestamp", None) if events is not None else None

    @property
    def metrics(self) -> PrometheusMetrics | None:
        """The Prometheus metrics of this runtime (None with ``CRBR_METRICS_ENABLED=false``)."""
        return self.guards.metrics  # type: ignore[return-value]

    async def start(self) -> None:
        """Start the runtime; never waits on the broker, nor on loading the broker client."""
        # Here rather than in the app, so a host app that mounts the blueprint hears it too.
        self.settings.warn_unknown_variables()
        self._watchdog.start()
        metrics = self.metrics
        if metrics is not None:
            # prometheus-client is loaded in a thread, beside serving: calls are counted without
            # it, and the first scrape then finds it ready.
            self._preparing_metrics = asyncio.create_task(
                asyncio.to_thread(metrics.prepare), name="metatwin-functions-metrics-prepare"
            )
        if self._events_wanted:
            self._events_starting = asyncio.create_task(
                self._start_events(), name="metatwin-functions-events-start"
            )
        elif self.settings.incomplete_events_warning is not None:
            logger.warning(self.settings.incomplete_events_warning)
        if self.settings.amqp_exec_configured:
            self._amqp_starting = asyncio.create_task(
                self._start_amqp(), name="metatwin-functions-amqp-start"
            )
        elif self.settings.amqp_exec_enabled:
            logger.warning(
                "CRBR_AMQP_EXEC_ENABLED is true but %s not set: not consuming the execution queue",
                ", ".join(self.settings.missing_rabbitmq_settings),
            )
        closed = sorted({spec.name for spec in self.registry.specs() if spec.roles})
        if closed and self.guards.authenticator is None:
            logger.warning(
                "Function(s) %s require roles but no authentication is configured "
                "(CRBR_AUTH_API_KEYS, CRBR_AUTH_JWT_PUBLIC_KEY, CRBR_AUTH_JWKS_URL or "
                "CRBR_AUTH_JWT_SECRET): every call of them is refused with 403",
                ", ".join(closed),
            )
        self.state = "ready"
        logger.info(
            "Serving %d function(s): %s",
            len(self.registry),
            ", ".join(self.registry.names) or "(none registered)",
            extra={"function_count": len(self.registry)},
        )
        await self._start_schedules()

    # --- schedules -------------------------------------------------------

    async def _start_schedules(self) -> None:
        scheduled = [spec for spec in self.registry.specs() if spec.schedule is not None]
        if not scheduled:
            return
        from .leadership import BrokerLeadership, Leadership, LocalLeadership
        from .scheduler import Scheduler

        leadership: Leadership
        if self.settings.missing_rabbitmq_settings:
            leadership = LocalLeadership()
            logger.warning(
                "No RabbitMQ broker is configured to elect the replica that runs the schedules: "
                "this process runs them (%d function(s)); with several replicas, each would",
                len(scheduled),
            )
        else:
            leadership = BrokerLeadership(self.settings)
        self.scheduler = Scheduler(
            scheduled,
            self.pipeline,
            leadership,
            publish=lambda request, answer: self.publish_completed(request, answer, "schedule"),
            clock=self._schedule_clock,
            metrics=self.metrics,
        )
        await self.scheduler.start()

    async def _start_events(self) -> None:
        # aio-pika takes ~0.1 s to import: load it in a thread once the server is up, so that
        # neither start-up nor the event loop pays for it. Deployments without events never do.
        try:
            module = await asyncio.to_thread(importlib.import_module, "metatwin_functions.events")
            tracer = self.guards.tracer
            self.events = module.EventsService(
                self.settings,
                self.registry,
                observer=self.guards.metrics,
                header_injector=None if tracer is None else tracer.inject,
                broker=self._broker,
            )
            await self.events.start()
        except Exception:
            logger.exception("RabbitMQ events could not start: running without events")

    async def _start_amqp(self) -> None:
        # The consumer runs after the server started: it never delays /ready (see _start_events).
        try:
            module = await asyncio.to_thread(importlib.import_module, "metatwin_functions.amqp")
            completed = module.ServiceCompletedEvents(
                lambda: self.events,
                expected=self.settings.events_configured,
                patience=AMQP_EVENT_PATIENCE,
            )
            consumer: ExecConsumer = module.ExecConsumer(self.settings, self.pipeline, completed)
            if self.state != "ready":  # a stop came first
                return
            self.amqp = consumer
            await consumer.start()
        except Exception:
            logger.exception("AMQP execution could not start: not consuming the execution queue")

    async def publish_completed(
        self,
        request: ExecRequest,
        answer: Answer,
        trigger: Literal["amqp", "schedule", "http"],
        *,
        patience: float = COMPLETED_EVENT_PATIENCE,
    ) -> bool:
        """Publish the execution completed event of a call and its ``answer``.

        The event carries the call's ``traceparent``. It is tried again while the broker does
        not confirm it (an outage, a nack), for at most ``patience`` seconds. True once the
        broker confirmed it (routed, or returned as unroutable: publishing again would change
        nothing); False when events are off or the patience ran out. Never raises.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        events = self.events
        starting = self._events_starting
        if events is None and starting is not None and not starting.done():
            # A call served right after start-up, while the events service is still loading.
            await asyncio.wait({starting}, timeout=patience)
            events = self.events
        if events is None:
            return False
        body = from_json(answer.body)
        while True:
            result = await events.publish_execution_completed_result(
                execution_id=request.execution_id,
                function_name=request.function_name,
                trigger=trigger,
                success=bool(body.get("success")),
                result=body.get("result"),
                error=body.get("error"),
                metadata=body.get("metadata"),
                headers=answer.trace,
            )
            if result != "failed":
                return True
            if loop.time() >= deadline or self.state == "stopped":
                logger.warning(
                    "Execution completed event of %r not confirmed by the broker in %g s: given up",
                    request.execution_id,
                    patience,
                )
                return False
            await asyncio.sleep(min(_COMPLETED_RETRY_DELAY, max(0.0, deadline - loop.time())))

    def _publish_http_call(self, request: ExecRequest, answer: Answer) -> None:
        # The request path never awaits the broker: the event goes out beside the answer.
        task = asyncio.create_task(self.publish_completed(request, answer, "http"))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def drain(self, timeout: float) -> bool:
        """Refuse new calls and wait up to ``timeout`` s for calls in flight; True if none left.

        The AMQP consumer is cancelled first, so the broker hands no new message to a replica
        going away; the messages in hand are served, answered and acked.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # The consumer's cancel is started first and sent at the drain's first await, so the
        # broker stops handing this replica messages; HTTP is refused at once meanwhile, and
        # a message that still arrives is held unsettled and requeued (see amqp.consumer).
        cancelling = (
            asyncio.ensure_future(
                self.amqp.stop_consuming(min(timeout, self.settings.connection_timeout))
            )
            if self.amqp is not None
            else None
        )
        if self.state == "ready":
            self.state = "draining"
            self.draining.set()
            logger.info(
                "Draining: refusing new calls, waiting for %d in flight", self.pipeline.in_flight
            )
        if self.scheduler is not None:
            await self.scheduler.pause()  # another replica takes the schedules
        if cancelling is not None:
            await cancelling
        idle = await self.pipeline.wait_idle(max(0.0, deadline - loop.time()))
        if self.amqp is not None:  # their answers and acks go out after the pipeline's part
            idle = await self.amqp.wait_idle(max(0.0, deadline - loop.time())) and idle
        return idle

    def abort(self) -> None:
        """A forced stop: calls still in flight are answered 503 now instead of awaited."""
        aborted = self.pipeline.abort_in_flight()
        if aborted:
            logger.warning("Answering %d call(s) in flight with 503: forced stop", aborted)

    async def stop(self) -> None:
        """Stop the events service and release the thread pool."""
        self.state = "stopped"
        await self._watchdog.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()  # before events, so runs can publish
        if self._events_starting is not None and not self._events_starting.done():
            self._events_starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events_starting
        # The consumer before the events: the calls it settles last publish completed events.
        if self._amqp_starting is not None and not self._amqp_starting.done():
            self._amqp_starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._amqp_starting
        if self.amqp is not None:
            await self.amqp.close()
        if self._publishing:
            # Completed events of the last HTTP calls: their current attempt may finish.
            await asyncio.wait(set(self._publishing), timeout=self.settings.connection_timeout)
        if self.events is not None:
            await self.events.stop()
        await self.guards.aclose()
        self.invoker.close()

    @property
    def rabbitmq_enabled(self) -> bool:
        """Whether events are on and fully configured (or a broker was passed in)."""
        return self._events_wanted

    @property
    def rabbitmq_connected(self) -> bool:
        """The broker connection's state at this moment."""
        return self.events.connected if self.events is not None else False

    def ready_payload(self) -> dict[str, Any]:
        """The ``/ready`` body of the contract, plus this runtime's state."""
        payload = {
            "status": self.state,
            "deployment_id": self.settings.deployment_id,
            "function_count": len(self.registry),
            "functions": self.registry.names,
            "rabbitmq_enabled": self.rabbitmq_enabled,
            "rabbitmq_connected": self.rabbitmq_connected,
            "sync_threads_abandoned": self.invoker.threads_abandoned,
            "saturated": self.guards.saturated,
            **self._schedules_ready(),
        }
        if self.settings.amqp_exec_enabled:  # asked for: say whether it runs, and consumes
            payload["amqp_exec"] = (
                self.amqp.ready_state()
                if self.amqp is not None
                else {
                    "enabled": self.settings.amqp_exec_configured,
                    "consuming": False,
                    "queue": self.settings.amqp_exec_queue_name,
                }
            )
        return payload

    def _schedules_ready(self) -> dict[str, Any]:
        # Additive keys, only when schedules exist.
        if self.scheduler is None:
            return {}
        return {
            "schedules": self.scheduler.status(),
            "schedules_leader": self.scheduler.is_leader,
        }


def runtimes_of(app: Quart) -> dict[str, FunctionRuntime]:
    """The runtimes of every functions blueprint mounted on ``app``, by blueprint name."""
    runtimes: dict[str, FunctionRuntime] = app.extensions.setdefault(EXTENSION_KEY, {})
    return runtimes
