"""Call a deployment's functions by name, over HTTP (``POST /exec``) or over RabbitMQ.

>>> async with AmqpFunctionClient("amqp://guest:guest@127.0.0.1/", deployment_id="dep-42") as c:
...     response = await c.call("add_numbers", {"a": 3, "b": 5})
...     response.result
8

Both clients return the contract's answer as a `FunctionResponse`; a call that ran and failed is
a response (``success`` false), not an exception. Exceptions (`ClientError`,
`ClientTimeoutError`) mean no answer came.

Choices: HTTP uses the standard library (``urllib`` in a worker thread) so the client adds no
dependency; it suits tests, scripts and the CLI, not high-rate traffic (use a pooled HTTP client
there). AMQP uses aio-pika (a dependency already), imported when the AMQP client is first used:
an exclusive, auto-deleted reply queue per client, one ``correlation_id`` per call, publisher
confirms and ``mandatory`` (a deployment nobody consumes for is an error at once, not a timeout),
and the call's deadline as the message's ``expiration`` with the publishing time as its
``timestamp`` (the consumer bounds the call by the expiration less the time it spent queued).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import ClientError, ClientTimeoutError
from .response_views import ExecMetadataViews

if TYPE_CHECKING:
    from aio_pika.abc import (
        AbstractChannel,
        AbstractConnection,
        AbstractExchange,
        AbstractIncomingMessage,
    )

__all__ = ["AmqpFunctionClient", "FunctionResponse", "HttpFunctionClient", "exec_envelope"]


@dataclass(frozen=True, slots=True)
class FunctionResponse(ExecMetadataViews):
    """The ``/exec`` answer: ``success``, ``result``, ``error``, ``metadata``.

    ``status`` is the HTTP status over HTTP (200 for every call that ran; 401, 409, 422, 429 ...
    for refusals) and None over AMQP, where the body says it all.
    """

    success: bool
    result: Any
    error: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    status: int | None = None

    @classmethod
    def from_body(cls, body: bytes, status: int | None = None) -> FunctionResponse:
        """Parse an answer body; raises `ClientError` when it is not the contract's shape."""
        try:
            data = json.loads(body)
        except ValueError:
            raise ClientError(f"the answer is not JSON: {body[:200]!r}") from None
        if not isinstance(data, dict) or not isinstance(data.get("success"), bool):
            raise ClientError(f"the answer is not an /exec response: {body[:200]!r}")
        metadata = data.get("metadata")
        error = data.get("error")
        return cls(
            success=data["success"],
            result=data.get("result"),
            error=error if isinstance(error, str) else None,
            metadata=metadata if isinstance(metadata, dict) else {},
            status=status,
        )


def exec_envelope(
    function_name: str,
    args: Mapping[str, Any] | None = None,
    *,
    execution_id: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """The ``/exec`` request body; a new executionId (a UUID) unless one is given."""
    envelope: dict[str, Any] = {
        "executionId": str(uuid.uuid4()) if execution_id is None else execution_id,
        "functionName": function_name,
        "args": dict(args or {}),
    }
    if version is not None:
        envelope["version"] = version
    return envelope


class HttpFunctionClient:
    """Calls ``POST {base_url}/exec``.

    Args:
        base_url: The deployment, e.g. ``http://127.0.0.1:8000`` (a blueprint prefix included).
        api_key: Sent as ``X-API-Key`` when set.
        bearer: An API key or JWT, sent as ``Authorization: Bearer ...`` when set.
        timeout: Seconds to wait for the answer.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        bearer: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.url = base_url.rstrip("/") + "/exec"
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key is not None:
            self._headers["X-API-Key"] = api_key
        if bearer is not None:
            self._headers["Authorization"] = f"Bearer {bearer}"

    async def call(
        self,
        function_name: str,
        args: Mapping[str, Any] | None = None,
        *,
        execution_id: str | None = None,
        version: str | None = None,
        traceparent: str | None = None,
    ) -> FunctionResponse:
        """Call a function and return its answer (refusals too: see ``status``)."""
        envelope = exec_envelope(function_name, args, execution_id=execution_id, version=version)
        return await asyncio.to_thread(self.call_sync_envelope, envelope, traceparent)

    def call_sync_envelope(
        self, envelope: Mapping[str, Any], traceparent: str | None = None
    ) -> FunctionResponse:
        """Send a ready envelope and wait for the answer (blocking)."""
        headers = dict(self._headers)
        if traceparent is not None:
            headers["traceparent"] = traceparent
        body = json.dumps(envelope).encode()
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return FunctionResponse.from_body(answer.read(), answer.status)
        except urllib.error.HTTPError as error:  # 4xx/5xx: the body is still the answer
            with error:
                return FunctionResponse.from_body(error.read(), error.code)
        except TimeoutError:
            message = f"no answer from {self.url} within {self.timeout:g} s"
            raise ClientTimeoutError(message) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ClientError(f"cannot reach {self.url}: {reason}") from None


class AmqpFunctionClient:
    """Calls a deployment through its execution queue (request/reply over RabbitMQ).

    Use it as an async context manager (or `connect` and `close`). Calls may run concurrently.

    Args:
        url: The broker, e.g. ``amqp://guest:guest@127.0.0.1/``.
        deployment_id: The deployment to call (its routing key).
        exchange: ``CRBR_RABBITMQ_EXCHANGE`` of the deployment (it must exist).
        timeout: Default deadline of a call, seconds; also the request message's expiration.
    """

    def __init__(
        self,
        url: str,
        *,
        deployment_id: str = "local-dev",
        exchange: str = "event.exchange",
        timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.deployment_id = deployment_id
        self.exchange_name = exchange
        self.timeout = timeout
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._reply_queue = ""
        self._waiting: dict[str, asyncio.Future[FunctionResponse]] = {}

    async def __aenter__(self) -> AmqpFunctionClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect, open the reply queue and find the exchange; raises `ClientError`."""
        import aio_pika

        try:
            connection = await aio_pika.connect(self.url, timeout=10)
        except Exception as error:
            raise ClientError(f"cannot connect to the broker: {type(error).__name__}") from None
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
            await queue.consume(self._on_reply, no_ack=True)
            exchange = await channel.get_exchange(self.exchange_name, ensure=True)
        except Exception as error:
            await connection.close()
            raise ClientError(
                f"cannot use exchange {self.exchange_name!r}: {type(error).__name__}: {error}"
            ) from None
        self._connection, self._channel, self._exchange = connection, channel, exchange
        self._reply_queue = queue.name
        connection.close_callbacks.add(self._on_closed)

    async def close(self) -> None:
        """Close the connection; calls still waiting fail with `ClientError`."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
        self._on_closed()

    async def call(
        self,
        function_name: str,
        args: Mapping[str, Any] | None = None,
        *,
        execution_id: str | None = None,
        version: str | None = None,
        timeout: float | None = None,
        traceparent: str | None = None,
    ) -> FunctionResponse:
        """Call a function and wait for its answer, at most ``timeout`` seconds."""
        envelope = exec_envelope(function_name, args, execution_id=execution_id, version=version)
        return await self.call_envelope(
            json.dumps(envelope).encode(), timeout=timeout, traceparent=traceparent
        )

    async def call_envelope(
        self, body: bytes, *, timeout: float | None = None, traceparent: str | None = None
    ) -> FunctionResponse:
        """Send a raw message body (any bytes: the consumer judges them) and wait for the answer."""
        from aio_pika import Message
        from aio_pika.exceptions import PublishError

        from .amqp.topology import execute_routing_key

        exchange = self._exchange
        if exchange is None or self._connection is None:
            raise ClientError("the client is not connected (use 'async with' or connect())")
        deadline = self.timeout if timeout is None else timeout
        correlation_id = uuid.uuid4().hex
        answer: asyncio.Future[FunctionResponse] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = answer
        routing_key = execute_routing_key(self.deployment_id)
        message = Message(
            body,
            content_type="application/json",
            correlation_id=correlation_id,
            reply_to=self._reply_queue,
            expiration=deadline,
            # Lets the consumer take the time queued off the deadline (whole seconds on the wire).
            timestamp=datetime.now(UTC),
            headers={"traceparent": traceparent} if traceparent else None,
        )
        try:
            async with asyncio.timeout(deadline):
                try:
                    await exchange.publish(message, routing_key, mandatory=True)
                except PublishError:
                    raise ClientError(
                        f"no queue is bound to {routing_key!r} on {self.exchange_name!r}: is "
                        f"deployment {self.deployment_id!r} running with "
                        "CRBR_AMQP_EXEC_ENABLED=true?"
                    ) from None
                return await answer
        except TimeoutError:
            raise ClientTimeoutError(
                f"no answer from deployment {self.deployment_id!r} within {deadline:g} s"
            ) from None
        finally:
            self._waiting.pop(correlation_id, None)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        waiting = self._waiting.pop(message.correlation_id or "", None)
        if waiting is None or waiting.done():
            return  # a late or duplicate answer (at-least-once): the first one counted
        try:
            waiting.set_result(FunctionResponse.from_body(message.body))
        except ClientError as error:
            waiting.set_exception(error)

    def _on_closed(self, *_: object) -> None:
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(ClientError("the connection to the broker was lost"))
