"""The per-app runtime: invoker, lifecycle state and (when configured) the events service."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from .invocation import Invoker
from .registry import FunctionRegistry
from .settings import Settings

if TYPE_CHECKING:
    from quart import Quart

    from .events import EventsService

__all__ = ["FunctionRuntime", "RuntimeState", "runtimes_of"]

RuntimeState = Literal["starting", "ready", "draining", "stopped"]
EXTENSION_KEY = "metatwin_functions"

logger = logging.getLogger("metatwin_functions.runtime")


class FunctionRuntime:
    """Everything one serving app needs to answer calls, started and stopped with the app."""

    def __init__(self, registry: FunctionRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.invoker = Invoker(registry, settings)
        self.events: EventsService | None = None
        self.state: RuntimeState = "starting"

    async def start(self) -> None:
        """Start the runtime; never waits on the broker."""
        if self.settings.events_configured:
            # Imported here: deployments without events never load aio-pika.
            from .events import EventsService

            self.events = EventsService(self.settings, self.registry)
            await self.events.start()
        elif self.settings.incomplete_events_warning is not None:
            logger.warning(self.settings.incomplete_events_warning)
        self.state = "ready"
        logger.info(
            "Serving %d function(s): %s",
            len(self.registry),
            ", ".join(self.registry.names) or "(none registered)",
            extra={"function_count": len(self.registry)},
        )

    async def drain(self, timeout: float) -> bool:
        """Refuse new calls and wait up to ``timeout`` s for calls in flight; True if none left."""
        if self.state == "ready":
            self.state = "draining"
            logger.info(
                "Draining: refusing new calls, waiting for %d in flight", self.invoker.in_flight
            )
        return await self.invoker.wait_idle(timeout)

    async def stop(self) -> None:
        """Stop the events service and release the thread pool."""
        self.state = "stopped"
        if self.events is not None:
            await self.events.stop()
        self.invoker.close()

    @property
    def rabbitmq_enabled(self) -> bool:
        """Whether events are on and fully configured."""
        return self.events.enabled if self.events is not None else False

    @property
    def rabbitmq_connected(self) -> bool:
        """The broker connection's state at this moment."""
        return self.events.connected if self.events is not None else False

    def ready_payload(self) -> dict[str, Any]:
        """The ``/ready`` body of the contract, plus this runtime's state."""
        return {
            "status": self.state,
            "deployment_id": self.settings.deployment_id,
            "function_count": len(self.registry),
            "functions": self.registry.names,
            "rabbitmq_enabled": self.rabbitmq_enabled,
            "rabbitmq_connected": self.rabbitmq_connected,
        }


def runtimes_of(app: Quart) -> dict[str, FunctionRuntime]:
    """The runtimes of every functions blueprint mounted on ``app``, by blueprint name."""
    runtimes: dict[str, FunctionRuntime] = app.extensions.setdefault(EXTENSION_KEY, {})
    return runtimes
