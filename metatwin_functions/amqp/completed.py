"""The execution completed event of an AMQP call, published through the runtime's `EventsService`.

The message is acked only once the broker has confirmed the event. "Confirmed but routed nowhere"
(no queue bound for the completed key) is told apart from "not confirmed" by
`EventsService.publish_execution_completed_result`: requeueing would not change the first, so
such a message is acked with one WARNING; the second is tried again until the broker confirms,
for a bounded time, keeping the message (which also pauses consumption through the prefetch);
then the message is requeued, never acked without its event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .handler import EventResult

if TYPE_CHECKING:
    from ..events import EventsService

__all__ = ["ServiceCompletedEvents"]

logger = logging.getLogger("metatwin_functions.amqp")

_POLL = 0.1


class ServiceCompletedEvents:
    """`CompletedEvents` over the runtime's events service.

    Args:
        events: Returns the runtime's events service (None while it is loading, or when off).
        expected: Whether events are configured: if not, there is no event to wait for.
        patience: How long a call waits for a disconnected events link before its message is
            requeued, seconds.
    """

    def __init__(
        self, events: Callable[[], EventsService | None], *, expected: bool, patience: float
    ) -> None:
        self._events = events
        self._expected = expected
        self._patience = patience
        self._unrouted_warned = False

    async def publish(
        self, *, function_name: str, answer: Mapping[str, Any], traceparent: str | None
    ) -> EventResult:
        """Publish the event; ``confirmed`` once the broker answered, ``failed`` if it did not."""
        if not self._expected:
            return "off"
        metadata = answer.get("metadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        execution_id = metadata.get("executionId")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._patience
        while True:
            service = self._events()
            if service is not None and service.connected:
                result = await service.publish_execution_completed_result(
                    execution_id=execution_id if isinstance(execution_id, str) else "",
                    function_name=function_name,
                    trigger="amqp",
                    success=bool(answer.get("success")),
                    result=answer.get("result"),
                    error=answer.get("error"),
                    metadata=metadata,
                    headers={"traceparent": traceparent} if traceparent else None,
                )
                if result == "delivered":
                    return "confirmed"
                if result == "unroutable":
                    self._warn_unrouted()
                    return "confirmed"
            if loop.time() >= deadline:
                return "failed"
            await asyncio.sleep(_POLL)

    def _warn_unrouted(self) -> None:
        if not self._unrouted_warned:
            self._unrouted_warned = True
            logger.warning(
                "An execution completed event was not delivered although the broker is "
                "confirmed (returned: is a queue bound to "
                "'routing.event.metatwin-functions.function.execution.completed'?); AMQP "
                "calls are acked anyway. Said once."
            )
