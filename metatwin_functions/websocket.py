"""``GET /ws``: calls as JSON text frames, any number at once, answered object by object.

A thin transport on the call pipeline. Credentials are checked on the handshake (and again for
each call, by the pipeline, so an expired token stops working); each text frame is an ``/exec``
envelope and becomes one call with its own `StreamSink`; every ``item``, ``progress`` and
``result`` object goes out as one text frame carrying its ``executionId``. Besides envelopes a
client may send ``{"type": "cancel", "executionId": ...}`` and ``{"type": "ping"}``.

Bounds: one send queue per socket (`SEND_BUFFER_FRAMES`) that calls wait on when the client
reads slowly, so a slow reader slows its own calls only; at most `MAX_CALLS_PER_SOCKET` calls in
flight per socket (more are refused with a 429 ``result``, as are calls over the traffic
limits); a frame larger than ``CRBR_FUNCTIONS_MAX_BODY_SIZE`` gets an ``error`` object. A client
that floods frames without reading what they answer is disconnected (close code 1008) rather
than buffered without end. Closing the socket cancels its calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from pydantic_core import from_json
from quart import Response, websocket

from .answers import (
    Answer,
    envelope_error_answer,
    internal_error_body,
    rejection_answer,
    too_large_answer,
)
from .envelope import ExecRequest, exec_request_from, failure_body
from .errors import (
    CallRejectedError,
    ConcurrencyLimitedError,
    EnvelopeError,
    ExecutionCancelledError,
    UnavailableError,
)
from .pipeline import CallMeta, CallPipeline
from .runtime import FunctionRuntime
from .streaming import ChannelClosedError, LineChannel, StreamSink, error_line, result_line

__all__ = ["MAX_CALLS_PER_SOCKET", "SEND_BUFFER_FRAMES", "SocketSession", "serve_websocket"]

#: Frames queued for a slow reader before its calls wait.
SEND_BUFFER_FRAMES = 256
#: Calls one socket may have in flight; a client that wants more opens more sockets.
MAX_CALLS_PER_SOCKET = 256
#: Close code for a client that sends calls but does not read their answers.
POLICY_VIOLATION = 1008
#: Close code once a draining server has answered a socket's calls.
GOING_AWAY = 1001

logger = logging.getLogger("metatwin_functions.http")

_PONG = b'{"type":"pong"}'
_CANCEL_WAIT = 5.0
_CLOSE_DRAIN = 10.0


class SocketSession:
    """The calls of one WebSocket: reads frames, runs calls, queues their objects.

    Args:
        pipeline: The call pipeline of the runtime.
        meta: The handshake's credentials and trace context (trigger ``websocket``).
        max_frame: Largest frame accepted, in bytes (the body size limit).
    """

    def __init__(self, pipeline: CallPipeline, meta: CallMeta, max_frame: int) -> None:
        self.pipeline = pipeline
        self.meta = meta
        self.max_frame = max_frame
        self.channel = LineChannel(SEND_BUFFER_FRAMES)
        self._calls: dict[asyncio.Task[None], tuple[str, StreamSink]] = {}
        self._closing = False
        self.overflowed = False
        #: The server is stopping: answers already queued are sent before the socket closes.
        self.going_away = False

    @property
    def running_calls(self) -> list[asyncio.Task[None]]:
        """The calls of this socket not answered yet."""
        return list(self._calls)

    async def run(
        self,
        receive: Callable[[], Awaitable[str | bytes | None]],
        send: Callable[[str], Awaitable[None]],
    ) -> None:
        """Serve the socket until the client closes it (or floods it); cancels what is left."""
        sender = asyncio.ensure_future(self._send_all(send))
        try:
            while not sender.done():
                if not self.handle(await receive()):
                    break
        finally:
            if self.going_away:  # every call has ended: send what they answered, then close
                self.channel.finish()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(sender), _CANCEL_WAIT)
            await self.aclose()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _send_all(self, send: Callable[[str], Awaitable[None]]) -> None:
        while True:
            lines = await self.channel.take()
            if not lines:
                return
            for line in lines:
                await send(line.decode())

    def handle(self, frame: str | bytes | None) -> bool:
        """Serve one frame; False when the socket must be closed (a client that does not read)."""
        if not isinstance(frame, str):
            return self._error(
                None, "binary frames are not accepted: send each call as a JSON text frame"
            )
        if len(frame) > self.max_frame and len(frame.encode()) > self.max_frame:
            answer = self.pipeline.refuse(too_large_answer(self.max_frame))
            return self._offer(error_line(None, _error_of(answer), "too_large"))
        try:
            data = from_json(frame, cache_strings="keys")
        except ValueError as exc:
            return self._error(None, f"Invalid request: frame is not valid JSON ({exc})")
        if isinstance(data, dict):
            kind = data.get("type")
            if kind == "cancel":
                return self._cancel(data.get("executionId"))
            if kind == "ping":
                return self._offer(_PONG)
            if kind is not None and kind != "call" and "functionName" not in data:
                return self._error(
                    _id_of(data),
                    f"Invalid request: unknown frame type {kind!r} "
                    "(send an /exec envelope, 'cancel' or 'ping')",
                )
        try:
            request = exec_request_from(data)
        except EnvelopeError as error:
            self.pipeline.refuse(envelope_error_answer(error))
            return self._error(error.execution_id, str(error))
        if len(self._calls) >= MAX_CALLS_PER_SOCKET:
            refusal = ConcurrencyLimitedError(
                f"This socket has {MAX_CALLS_PER_SOCKET} calls in flight; wait for one to end "
                "or open another socket",
                retry_after=1,
            )
            answer = self.pipeline.refuse(rejection_answer(refusal, request.execution_id))
            return self._offer(result_line(request.execution_id, answer))
        self._start(request, data)
        return True

    def _start(self, request: ExecRequest, data: dict[str, Any]) -> None:
        sink = StreamSink(self.channel)
        meta = replace(self.meta, sink=sink)
        traceparent = data.get("traceparent")
        if isinstance(traceparent, str):  # a frame may carry its own trace context
            tracestate = data.get("tracestate")
            meta = replace(
                meta,
                traceparent=traceparent,
                tracestate=tracestate if isinstance(tracestate, str) else None,
            )
        task = asyncio.ensure_future(self._call(request, meta, sink))
        self._calls[task] = (request.execution_id, sink)

    async def _call(self, request: ExecRequest, meta: CallMeta, sink: StreamSink) -> None:
        task = asyncio.current_task()
        try:
            answer = await self.pipeline.serve_request(request, meta)
        except asyncio.CancelledError:
            if self._closing or not sink.cancelled or task is None:
                raise
            # Cancelled before its function started (e.g. during authentication).
            task.uncancel()
            answer = _cancelled_answer(request)
        except Exception:
            # The pipeline turns everything a call does into an answer; this is our bug.
            logger.exception("Unexpected error while serving a WebSocket call")
            answer = Answer(500, internal_error_body())
        finally:
            # Out of the table before the result is queued: a late cancel cannot lose it.
            self._calls.pop(task, None)  # type: ignore[arg-type]
        with contextlib.suppress(ChannelClosedError):
            await self.channel.put(result_line(request.execution_id, answer))

    def _cancel(self, execution_id: object) -> bool:
        if not isinstance(execution_id, str):
            return self._error(None, "Invalid request: a cancel needs 'executionId' as a string")
        found = False
        for task, (running_id, sink) in list(self._calls.items()):
            if running_id == execution_id:
                found = True
                sink.cancel()
                # On the next turn of the loop: a task cancelled before its first step would
                # never run its handler, and its caller would never get the result.
                asyncio.get_running_loop().call_soon(task.cancel)
        if found:
            return True
        return self._offer(
            error_line(
                execution_id,
                f"No call with executionId '{execution_id}' is running on this socket",
                "not_found",
            )
        )

    def _error(self, execution_id: str | None, message: str) -> bool:
        return self._offer(error_line(execution_id, message, "invalid_envelope"))

    def _offer(self, line: bytes) -> bool:
        # Refusals and errors never wait: a client that floods without reading is cut off.
        if self.channel.offer(line):
            return True
        self.overflowed = True
        return False

    async def aclose(self) -> None:
        """The socket is gone: cancel its calls (closing their generators) and wait for them."""
        self._closing = True
        self.channel.close()
        tasks = list(self._calls)
        for task, (_, sink) in self._calls.items():
            sink.cancel()
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_CANCEL_WAIT)


def _id_of(data: dict[str, Any]) -> str | None:
    execution_id = data.get("executionId")
    return execution_id if isinstance(execution_id, str) and len(execution_id) <= 1024 else None


def _error_of(answer: Answer) -> str:
    message: str = from_json(answer.body)["error"]
    return message


def _cancelled_answer(request: ExecRequest) -> Answer:
    error = ExecutionCancelledError(request.function_name)
    body = failure_body(
        error.message, {"executionId": request.execution_id, "errorKind": error.kind}
    )
    return Answer(200, body)


async def serve_websocket(runtime: FunctionRuntime) -> Response | None:
    """The Quart ``/ws`` handler: the handshake's checks, then a `SocketSession`.

    Returns the refusal (401, 503) to send instead of accepting the socket, else None.
    """
    headers = websocket.headers
    refusal = await _handshake_refusal(
        runtime, headers.get("Authorization"), headers.get("X-API-Key")
    )
    if refusal is not None:
        response = Response(refusal.body, status=refusal.status, content_type="application/json")
        response.headers.update(refusal.headers)
        return response
    meta = CallMeta(
        trigger="websocket",
        authorization=headers.get("Authorization"),
        api_key=headers.get("X-API-Key"),
        traceparent=headers.get("traceparent"),
        tracestate=headers.get("tracestate"),
    )
    await websocket.accept()
    session = SocketSession(runtime.pipeline, meta, runtime.settings.functions_max_body_size)
    handler = asyncio.current_task()
    assert handler is not None
    watcher = asyncio.ensure_future(_close_when_drained(runtime, session, handler))
    try:
        await session.run(websocket.receive, websocket.send)
    except asyncio.CancelledError:
        if not session.going_away:
            raise
        handler.uncancel()
    finally:
        watcher.cancel()
    if session.going_away:
        with contextlib.suppress(Exception):  # the server may have closed it already
            await websocket.close(GOING_AWAY, "server is stopping")
        return None
    if session.overflowed:
        await websocket.close(POLICY_VIOLATION, "too many frames unread: read the answers")
        # Hypercorn still hands us what the client sent before it saw the close; left unread,
        # the connection would wait on us until the server stops. Read and drop (bounded): the
        # client's close ends this handler sooner.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_DRAIN):
                while True:
                    await websocket.receive()
    return None


async def _close_when_drained(
    runtime: FunctionRuntime, session: SocketSession, handler: asyncio.Task[Any]
) -> None:
    # A draining server refuses new calls (503 results) and lets those in flight end; then the
    # socket is closed with 1001 rather than left for the server's grace period to cut.
    await runtime.draining.wait()
    while session.running_calls:
        await asyncio.wait(session.running_calls)
    session.going_away = True
    handler.cancel()


async def _handshake_refusal(
    runtime: FunctionRuntime, authorization: str | None, api_key: str | None
) -> Answer | None:
    if runtime.state != "ready":
        error: CallRejectedError = UnavailableError(
            f"Server is {runtime.state}; retry on another instance"
        )
        return runtime.pipeline.refuse(rejection_answer(error, None))
    authenticator = runtime.guards.authenticator
    if authenticator is None:
        return None
    try:
        await authenticator.authenticate(authorization, api_key)
    except CallRejectedError as refused:
        return runtime.pipeline.refuse(rejection_answer(refused, None))
    return None
