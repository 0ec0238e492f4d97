"""What happens to one execution message: serve it, answer it, report it, then settle it.

serve (the pipeline) ─▶ reply to ``reply_to`` ┐ (together) ─▶ ack  (both confirmed)
                     ─▶ execution completed  ┘            ─▶ requeue (not confirmed: try again)
bad envelope / delivered too often ─▶ reply ─▶ dead-letter (never requeued in a loop)
delivered too often, answer stored ─▶ the stored answer, as a redelivery gets it ─▶ ack
server draining (503) ─▶ requeue, unanswered: another replica takes it

The broker side is behind two small protocols (`Settlement` for the message's channel,
`CompletedEvents` for the events), so these rules are tested without a broker as well.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

from pydantic_core import from_json

from ..envelope import parse_exec_request
from ..errors import EnvelopeError
from ..idempotency import Acquired, Running, Stored, call_fingerprint, replayed_body
from ..pipeline import CallPipeline
from .delivery import Delivery, delivery_limit_body, execution_id_of, function_name_of

__all__ = [
    "CompletedEvents",
    "Disposition",
    "EventResult",
    "MessageHandler",
    "ReplyResult",
    "Settlement",
]

ReplyResult = Literal["confirmed", "returned", "failed"]
"""``returned``: no queue by the ``reply_to`` name (the caller went away); nothing to retry."""

EventResult = Literal["confirmed", "off", "failed"]
"""``off``: this deployment publishes no events; ``failed``: not confirmed, try again later."""

Disposition = Literal["acked", "dead_lettered", "requeued", "unsettled"]
"""What became of a message; ``unsettled``: the channel went away, the broker redelivers it."""

#: Refusals that say the envelope itself is bad: answered, then dead-lettered.
_BAD_ENVELOPE = frozenset({"invalid_envelope", "too_large"})

logger = logging.getLogger("metatwin_functions.amqp")


class Settlement(Protocol):
    """The channel a message came on: where its reply goes and where it is settled."""

    async def reply(self, routing_key: str, body: bytes, correlation_id: str | None) -> ReplyResult:
        """Publish ``body`` to the default exchange (``mandatory``), wait for the confirmation."""

    async def ack(self) -> bool:
        """Acknowledge the message; False if the channel is gone."""

    async def requeue(self) -> bool:
        """Give the message back to the queue; False if the channel is gone."""

    async def dead_letter(self) -> bool:
        """Reject the message without requeueing: the queue dead-letters it."""


class CompletedEvents(Protocol):
    """Publishes the execution completed event of a call that came over AMQP."""

    async def publish(
        self,
        *,
        function_name: str,
        answer: Mapping[str, Any],
        traceparent: str | None,
    ) -> EventResult:
        """Publish it and wait (bounded) for the broker's confirmation."""


class MessageHandler:
    """Serves execution messages through the pipeline and settles them at-least-once.

    Args:
        pipeline: The runtime's call pipeline (admission, guards, invocation, logs, metrics).
        events: Where execution completed events go.
        max_deliveries: ``CRBR_AMQP_EXEC_MAX_DELIVERIES``: redeliveries allowed before a message
            is answered with ``errorKind: "delivery_limit"`` and dead-lettered.
    """

    def __init__(self, pipeline: CallPipeline, events: CompletedEvents, max_deliveries: int):
        self.pipeline = pipeline
        self.events = events
        self.max_deliveries = max_deliveries
        self._returned_warned: set[str] = set()
        #: Awaited before a message the server refuses (draining) goes back to the queue: the
        #: consumer holds it until its cancel is confirmed, so that the broker does not hand
        #: it straight back to this replica (each bounce counts as a delivery).
        self.hold_refused: Callable[[], Awaitable[None]] | None = None

    async def handle(self, delivery: Delivery, settle: Settlement) -> Disposition:
        """Serve one message and settle it; never raises for anything the message holds."""
        redeliveries = delivery.delivery_count
        if redeliveries > self.max_deliveries:
            # Idempotency applies to redeliveries: a call that succeeded (its ack lost each
            # time) is answered from the store; only a call without an answer dies.
            stored = await self._stored_answer(delivery.body)
            if stored is None:
                return await self._over_limit(delivery, redeliveries, settle)
            execution_id = execution_id_of(delivery.body)
            logger.info(
                "Execution message %r was delivered %d times: answered with its stored answer, "
                "not run again",
                execution_id,
                redeliveries + 1,
                extra={"execution_id": execution_id, "status": "replayed"},
            )
            return await self._answer(delivery, stored, settle)

        answer = await self.pipeline.serve_body(delivery.body, delivery.call_meta())
        if answer.rejected == "unavailable":  # draining or stopping: leave it to another replica
            if self.hold_refused is not None:
                await self.hold_refused()
            return "requeued" if await settle.requeue() else "unsettled"
        if answer.rejected in _BAD_ENVELOPE:
            execution_id = (from_json(answer.body).get("metadata") or {}).get("executionId")
            await self._reply(delivery, answer.body, execution_id, settle)
            return "dead_lettered" if await settle.dead_letter() else "unsettled"
        return await self._answer(delivery, answer.body, settle, answer.trace)

    async def _answer(
        self,
        delivery: Delivery,
        body: bytes,
        settle: Settlement,
        trace: dict[str, str] | None = None,
    ) -> Disposition:
        """Reply and publish the completed event together; ack once both are confirmed.

        The event carries the call span's ``traceparent`` when calls are traced, else the one
        the message came with.
        """
        fields: dict[str, Any] = from_json(body)
        metadata = fields.get("metadata") or {}
        execution_id = metadata.get("executionId")
        function_name = function_name_of(delivery.body) or ""
        replied, published = await asyncio.gather(
            self._reply(delivery, body, execution_id, settle),
            self.events.publish(
                function_name=function_name,
                answer=fields,
                traceparent=(trace or {}).get("traceparent") or delivery.header("traceparent"),
            ),
        )
        if replied == "failed" or published == "failed":
            logger.warning(
                "Execution %r: the %s was not confirmed by the broker; the message goes back to "
                "the queue (a redelivery replays a stored answer)",
                execution_id,
                "reply" if replied == "failed" else "execution completed event",
                extra={"execution_id": execution_id},
            )
            return "requeued" if await settle.requeue() else "unsettled"
        return "acked" if await settle.ack() else "unsettled"

    async def _over_limit(
        self, delivery: Delivery, redeliveries: int, settle: Settlement
    ) -> Disposition:
        execution_id = execution_id_of(delivery.body)
        logger.warning(
            "Execution message %r was delivered %d times: dead-lettered without running",
            execution_id,
            redeliveries + 1,
            extra={"execution_id": execution_id, "status": "rejected"},
        )
        body = delivery_limit_body(execution_id, redeliveries + 1, self.max_deliveries)
        await self._reply(delivery, body, execution_id, settle)
        return "dead_lettered" if await settle.dead_letter() else "unsettled"

    async def _stored_answer(self, body: bytes) -> bytes | None:
        """The answer the idempotency store holds for this message's call, never running it.

        A stored success is replayed; a copy of the call still running in this process (its
        earlier delivery's channel dropped) is joined; anything else has no answer.
        """
        guards = self.pipeline.guards
        store = guards.idempotency
        if store is None:
            return None
        try:
            request = parse_exec_request(body)
        except EnvelopeError:
            return None
        spec = guards.registry.get(request.function_name, request.version)
        execution_id = request.execution_id
        if spec is None or not execution_id:
            return None
        # An AMQP call is trusted: no caller, as in the pipeline's own fingerprint of it.
        fingerprint = call_fingerprint(spec.name, spec.version, request.args, None)
        reservation = await store.reserve(execution_id, fingerprint)
        if isinstance(reservation, Stored):
            return replayed_body(reservation.body)
        if isinstance(reservation, Running):
            return await reservation.wait()
        if isinstance(reservation, Acquired):  # claimed only to look: give the id back
            await store.complete(execution_id, fingerprint, None, store=False)
        return None

    async def _reply(
        self, delivery: Delivery, body: bytes, execution_id: str | None, settle: Settlement
    ) -> ReplyResult | None:
        reply_to = delivery.reply_to
        if not reply_to:
            return None
        result = await settle.reply(reply_to, body, delivery.reply_correlation_id(execution_id))
        # The caller's queue is gone (it gave up, or never existed): nobody to answer, and a
        # retry would not change that. Said once per queue name, at most for 1,000 names.
        warned = self._returned_warned
        if result == "returned" and reply_to not in warned and len(warned) < 1000:
            warned.add(reply_to)
            logger.warning(
                "No queue %r to reply to (execution %r): the answer is dropped",
                reply_to,
                execution_id,
                extra={"execution_id": execution_id},
            )
        return result
