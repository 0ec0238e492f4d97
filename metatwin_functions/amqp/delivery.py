"""One execution message as the consumer sees it, and the answers only AMQP gives (sans-IO).

Built from an AMQP message's body and properties; imports nothing of aio-pika, so the rules
(what a delivery count means, which correlation id a reply carries, how ``expiration`` and
``timestamp`` bound a call) are tested without a broker.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic_core import from_json

from ..envelope import MAX_EXECUTION_ID_LENGTH, failure_body
from ..pipeline import CallMeta

__all__ = ["Delivery", "delivery_limit_body", "function_name_of", "posix_timestamp"]

#: The header a quorum queue sets on a redelivery: how many times it was delivered before.
DELIVERY_COUNT_HEADER = "x-delivery-count"

#: AMQP's ``timestamp`` property counts whole seconds: a message was published up to this much
#: after its timestamp, so only the queue time beyond it is surely spent.
TIMESTAMP_RESOLUTION = 1.0

#: The least time a call with an ``expiration`` gets, whatever its timestamp says (clock skew
#: between the caller's host and ours must not turn a call into an instant timeout).
MIN_DEADLINE = 1.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """An execution message: its body and the properties the consumer uses."""

    body: bytes
    reply_to: str | None = None
    correlation_id: str | None = None
    headers: Mapping[str, Any] | None = None
    #: The message's ``expiration`` in seconds (its TTL), or None.
    expiration: float | None = None
    redelivered: bool = False
    #: The message's ``timestamp`` (when it was published), POSIX seconds, or None.
    timestamp: float | None = None

    @property
    def delivery_count(self) -> int:
        """Earlier deliveries of this message (0 on the first), from the quorum queue's header."""
        value = (self.headers or {}).get(DELIVERY_COUNT_HEADER)
        if isinstance(value, bool) or not isinstance(value, int):
            return 1 if self.redelivered else 0  # a classic queue only says "redelivered"
        return max(value, 0)

    def header(self, name: str) -> str | None:
        """A text header (bytes are decoded), or None."""
        value = (self.headers or {}).get(name)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return value if isinstance(value, str) else None

    def call_meta(self) -> CallMeta:
        """What the pipeline is told of the call: trigger, trace context, the caller's limit.

        The broker's permissions are the access control of the queue: the call is trusted.
        """
        return CallMeta(
            trigger="amqp",
            traceparent=self.header("traceparent"),
            tracestate=self.header("tracestate"),
            trusted=True,
            timeout=self.deadline(),
        )

    def deadline(self, now: float | None = None) -> float | None:
        """The caller's limit on the call, seconds: ``expiration`` less the time spent queued.

        The message's ``expiration`` is the caller's whole timeout, counted from publishing.
        With a ``timestamp`` the time it waited in the queue (beyond the timestamp's one-second
        resolution) is taken off, so the call does not run on after the caller gave up; it
        still gets at least `MIN_DEADLINE` (or its whole ``expiration``, if shorter).

        Args:
            now: The current POSIX time (default: the clock's).
        """
        expiration = self.expiration
        if expiration is None or self.timestamp is None:
            return expiration
        now = time.time() if now is None else now
        queued = max(now - self.timestamp - TIMESTAMP_RESOLUTION, 0.0)
        return max(expiration - queued, min(MIN_DEADLINE, expiration))

    def reply_correlation_id(self, execution_id: str | None) -> str | None:
        """The reply's ``correlation_id``: the request's, else its executionId."""
        if self.correlation_id:
            return self.correlation_id
        return execution_id or None


def posix_timestamp(value: object) -> float | None:
    """An AMQP ``timestamp`` property (a datetime, UTC when naive, or a number) in POSIX s."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def function_name_of(body: bytes) -> str | None:
    """The ``functionName`` of an envelope the pipeline accepted (for the completed event)."""
    try:
        data = from_json(body)
    except ValueError:
        return None
    name = data.get("functionName") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def execution_id_of(body: bytes) -> str | None:
    """The envelope's ``executionId`` when it is a string of a sane length, else None."""
    try:
        data = from_json(body)
    except ValueError:
        return None
    value = data.get("executionId") if isinstance(data, dict) else None
    if isinstance(value, str) and len(value) <= MAX_EXECUTION_ID_LENGTH:
        return value
    return None


def delivery_limit_body(execution_id: str | None, deliveries: int, limit: int) -> bytes:
    """The answer to a message delivered too often: it is dead-lettered, not run again."""
    message = (
        f"The message was delivered {deliveries} times without being settled (at most "
        f"{limit + 1} deliveries): dead-lettered, not run again"
    )
    return failure_body(message, {"executionId": execution_id, "errorKind": "delivery_limit"})
