"""`InMemoryBroker`: a RabbitMQ stand-in for fast tests of the events (no broker, no network).

Pass it to `EventsService(..., broker=InMemoryBroker())`: the service connects to it, publishes to
it, and it records every event the "broker" confirmed. Told to, it misbehaves on purpose: refuses
connections (`fail`), stops answering without closing anything (`drop`, a partition), answers late
(`delay`), refuses messages (`nack`), or returns those no binding matches (`bindings`).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..events.transport import (
    BrokerRefusedError,
    LinkListener,
    MessageProperties,
    NackedError,
    UnroutableError,
)

__all__ = ["InMemoryBroker", "PublishedEvent"]


@dataclass(frozen=True, slots=True)
class PublishedEvent:
    """One message as the broker got it."""

    routing_key: str
    envelope: dict[str, Any]
    properties: MessageProperties
    received_at: float
    """The event loop's time when the broker took it (for cadence checks)."""

    @property
    def payload_type(self) -> str:
        """The envelope's ``payloadType``."""
        return str(self.envelope.get("payloadType"))

    @property
    def payload(self) -> Any:
        """The envelope's ``payload``."""
        return self.envelope.get("payload")

    @property
    def correlation_id(self) -> str:
        """The envelope's ``correlationId``."""
        return str(self.envelope.get("correlationId"))


class _State(enum.Enum):
    UP = "up"
    FAILING = "failing"
    DROPPING = "dropping"


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether an AMQP topic binding matches: ``*`` is one word, ``#`` zero or more."""
    pattern_words, key_words = pattern.split("."), routing_key.split(".")

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern_words):
            return j == len(key_words)
        word = pattern_words[i]
        if word == "#":
            return match(i + 1, j) or (j < len(key_words) and match(i, j + 1))
        return j < len(key_words) and word in ("*", key_words[j]) and match(i + 1, j + 1)

    return match(0, 0)


class InMemoryBroker:
    """Records published events; fails, drops, delays or nacks when told to.

    Args:
        bindings: Topic patterns a queue is bound with (``#`` and ``*`` as in RabbitMQ). ``None``
            (the default) routes every message; an empty list routes none (every ``mandatory``
            message comes back as unroutable).
    """

    address = "in-memory"

    def __init__(self, bindings: Iterable[str] | None = None) -> None:
        self.published: list[PublishedEvent] = []
        """Messages confirmed and routed, in order."""
        self.returned: list[PublishedEvent] = []
        """Messages returned as unroutable."""
        self.connections = 0
        """Sessions opened so far (the first connect and every forced reconnect)."""
        self._bindings = set(bindings) if bindings is not None else None
        self._state = _State.UP
        self._refusal: str | None = None
        self._delay = 0.0
        self._nack = False
        self._answering = asyncio.Event()
        self._answering.set()
        self._arrived = asyncio.Event()
        self._sessions: set[_Session] = set()

    def __repr__(self) -> str:
        return f"InMemoryBroker(state={self._state.value}, published={len(self.published)})"

    # Misbehaviour on purpose.

    def fail(self, refusal: str | None = None) -> None:
        """Refuse connections and drop the open ones (a broker that is down or restarting).

        With ``refusal``, connects are refused as a real broker refuses a wrong password: a
        `BrokerRefusedError` with that text.
        """
        self._state = _State.FAILING
        self._refusal = refusal
        self._answering.set()
        for session in list(self._sessions):
            session.lose(ConnectionResetError("in-memory broker went down"))

    def drop(self) -> None:
        """Stop answering without closing anything (a partition): connects, publishes and probes
        hang until their timeouts, and no message is recorded."""
        self._state = _State.DROPPING
        self._answering.clear()

    def delay(self, seconds: float) -> None:
        """Answer every connect, publish and probe ``seconds`` late (0 to stop)."""
        self._delay = seconds

    def nack(self, on: bool = True) -> None:
        """Refuse (Basic.Nack) every message while ``on``."""
        self._nack = on

    def recover(self) -> None:
        """Back to normal: dropped sessions reconnect, as a robust connection does."""
        self._state = _State.UP
        self._refusal = None
        self._answering.set()
        for session in list(self._sessions):
            session.restore_later()

    def bind(self, pattern: str) -> None:
        """Bind a queue with ``pattern``: matching messages route from now on."""
        if self._bindings is None:
            self._bindings = set()
        self._bindings.add(pattern)

    def unbind(self, pattern: str) -> None:
        """Remove a binding: matching messages come back as unroutable from now on."""
        if self._bindings is not None:
            self._bindings.discard(pattern)

    # What the tests read.

    def of_type(self, payload_type: str) -> list[PublishedEvent]:
        """The recorded events of one ``payloadType``."""
        return [event for event in self.published if event.payload_type == payload_type]

    async def wait_for(
        self, payload_type: str, *, count: int = 1, timeout: float = 5.0
    ) -> list[PublishedEvent]:
        """Wait until ``count`` events of ``payload_type`` were recorded; return them all.

        Raises:
            TimeoutError: fewer arrived within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while len(found := self.of_type(payload_type)) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return found

    # The `BrokerConnector` side.

    async def open(self, listener: LinkListener, *, timeout: float) -> _Session:
        """Open a session, as `BrokerConnector.open` does."""
        async with asyncio.timeout(timeout):
            await self._answer()
            if self._state is _State.FAILING:
                if self._refusal is not None:
                    raise BrokerRefusedError(self._refusal)
                raise ConnectionRefusedError("in-memory broker refuses connections")
        session = _Session(self, listener)
        self._sessions.add(session)
        self.connections += 1
        return session

    async def _answer(self) -> None:
        if self._delay > 0:
            await asyncio.sleep(self._delay)
        await self._answering.wait()

    def _route(self, routing_key: str, body: bytes, properties: MessageProperties) -> None:
        if self._nack:
            raise NackedError("the broker refused the message (nack)")
        now = asyncio.get_running_loop().time()
        event = PublishedEvent(routing_key, json.loads(body), properties, now)
        bindings = self._bindings
        if bindings is not None and not any(topic_matches(p, routing_key) for p in bindings):
            self.returned.append(event)
            raise UnroutableError(f"no queue is bound to {routing_key!r}")
        self.published.append(event)
        self._arrived.set()

    def _forget(self, session: _Session) -> None:
        self._sessions.discard(session)


class _Session:
    """One in-memory "connection": lost and restored by the broker's state, like a robust one."""

    def __init__(self, broker: InMemoryBroker, listener: LinkListener) -> None:
        self._broker = broker
        self._listener = listener
        self._lost = False
        self._closed = False

    @property
    def is_open(self) -> bool:
        return not self._lost and not self._closed

    async def publish(
        self, routing_key: str, body: bytes, properties: MessageProperties, *, timeout: float
    ) -> None:
        async with asyncio.timeout(timeout):
            await self._broker._answer()
        if not self.is_open:
            raise ConnectionResetError("the connection was lost")
        self._broker._route(routing_key, body, properties)

    async def probe(self, *, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._broker._answer()

    async def reset(self, reason: BaseException, *, timeout: float) -> None:
        self.lose(reason)
        if self._broker._state is _State.UP:
            self.restore_later()

    async def close(self, *, timeout: float) -> None:
        self._closed = True
        self._broker._forget(self)

    def lose(self, exc: BaseException) -> None:
        if self.is_open:
            self._lost = True
            self._listener.on_lost(exc)

    def restore_later(self) -> None:
        if self._lost and not self._closed:
            asyncio.get_running_loop().call_soon(self._restore)

    def _restore(self) -> None:
        if self._lost and not self._closed and self._broker._state is _State.UP:
            self._lost = False
            self._broker.connections += 1
            self._listener.on_restored()
