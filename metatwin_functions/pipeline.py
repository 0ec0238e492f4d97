"""The one call pipeline: every transport hands it a call and writes out the answer it returns.

admit (count, drain) ─▶ body ─▶ envelope ─▶ guards (auth, idempotency, limits) ─▶ invoke ─▶ answer

Sans-IO: it imports nothing of Quart, Hypercorn or aio-pika. The Quart view, the raw-ASGI
``/exec``, and later streams, WebSocket frames, AMQP messages and schedule ticks call one of
`CallPipeline.serve_http`, `serve_body` or `serve_request`, so auth, limits, idempotency,
deadlines, metrics, tracing and logs hold for all of them alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .answers import (
    Answer,
    body_timeout_answer,
    envelope_error_answer,
    rejection_answer,
    too_large_answer,
)
from .body import BodyTimeoutError, BodyTooLargeError, ClientGoneError, NextChunk, read_body
from .context import Principal
from .envelope import ExecRequest, failure_body, parse_exec_request
from .errors import CallRejectedError, EnvelopeError, ErrorKind, UnavailableError
from .guards import CallGuards
from .invocation import CallOutcome, Invoker, take_cold_start

if TYPE_CHECKING:
    from .streaming import StreamSink

__all__ = ["CallMeta", "CallPipeline", "Trigger"]

Trigger = Literal["http", "stream", "websocket", "amqp", "schedule"]

logger = logging.getLogger("metatwin_functions.calls")

#: How long a refused request's body may take to arrive, to echo its executionId.
_UNAVAILABLE_READ_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class CallMeta:
    """What a transport knows of a call besides its envelope."""

    trigger: Trigger = "http"
    authorization: str | None = None
    api_key: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    #: Keep the call running if the transport's task is cancelled (a client that went away
    #: from a plain ``/exec``), so a retry of its executionId can still join it.
    detach_on_cancel: bool = False
    #: The transport vouches for the caller (the broker's permissions guard an AMQP queue):
    #: no authentication and no role check.
    trusted: bool = False
    #: The caller's own limit in seconds (an AMQP message's ``expiration``): the call's deadline
    #: is the smaller of this and the function's.
    timeout: float | None = None
    #: Where a stream's partial output goes (items, progress); None for a call answered once.
    #: A call with a sink is a stream: it is neither replayed nor joined (see `CallGuards`).
    sink: StreamSink | None = None


_HTTP = CallMeta()


class CallPipeline:
    """Admission, envelope, guards, invocation and answers for every transport.

    Args:
        invoker: Runs the functions under their deadlines.
        guards: Auth, idempotency, limits, metrics and tracing (each off unless configured).
        is_ready: Whether the server takes new calls (False while starting or draining).
    """

    def __init__(
        self,
        invoker: Invoker,
        guards: CallGuards,
        is_ready: Callable[[], bool],
        *,
        state: Callable[[], str] = lambda: "stopping",
    ) -> None:
        self.invoker = invoker
        self.guards = guards
        self.settings = invoker.settings
        self._is_ready = is_ready
        self._state = state
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._aborting = False
        #: Told of every HTTP call that ran (for ``CRBR_PUBLISH_HTTP_EXECUTIONS``); must not block.
        self.on_http_call: Callable[[ExecRequest, Answer], None] | None = None

    # -- admission -------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests admitted and not answered yet (bodies still arriving included)."""
        return self._in_flight

    def _enter(self) -> None:
        self._in_flight += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)

    def _leave(self, task: asyncio.Task[Any] | None) -> None:
        self._in_flight -= 1
        if task is not None:
            self._tasks.discard(task)
        if self._in_flight == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight, at most ``timeout`` seconds; True if idle."""
        if self._in_flight == 0:
            return True
        # One event shared by every waiter (a second drain must not orphan the first).
        if self._idle is None:
            self._idle = asyncio.Event()
        idle = self._idle
        try:
            async with asyncio.timeout(timeout):
                await idle.wait()
        except TimeoutError:
            return False
        return True

    def abort_in_flight(self) -> int:
        """Stop waiting for calls in flight: each gets a 503 answer now (a forced stop)."""
        self._aborting = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel("metatwin-functions: forced stop")
        return len(tasks)

    # -- entry points ----------------------------------------------------------------------

    async def serve_http(
        self, declared: int | None, next_chunk: NextChunk, meta: CallMeta = _HTTP
    ) -> Answer | None:
        """Serve a request whose body is still to be read; None when the client went away."""
        settings = self.settings
        if not self._is_ready():
            return await self._unavailable(declared, next_chunk)
        self._enter()
        task = asyncio.current_task()
        detached = False
        body = b""
        try:
            try:
                body = await read_body(
                    next_chunk,
                    declared,
                    settings.functions_max_body_size,
                    settings.functions_body_timeout,
                )
            except BodyTooLargeError:
                return self._refused(too_large_answer(settings.functions_max_body_size))
            except BodyTimeoutError:
                return self._refused(body_timeout_answer(settings.functions_body_timeout))
            except ClientGoneError:
                return None
            if not meta.detach_on_cancel:
                return await self._serve_body(body, meta)
            # The call runs in a task of its own that holds the admission until it ends, so a
            # client that goes away (which cancels the transport's task) does not cancel it.
            inner = asyncio.ensure_future(self._serve_body(body, meta))
            detached = True
            self._tasks.discard(task)
            self._tasks.add(inner)
            inner.add_done_callback(self._detached_done)
            return await asyncio.shield(inner)
        except asyncio.CancelledError:
            if self._aborting:
                return self._stopping_answer(_execution_id_of(body) if body else None)
            raise
        finally:
            if not detached:
                self._leave(task)

    def _detached_done(self, inner: asyncio.Future[Answer]) -> None:
        self._leave(inner)  # type: ignore[arg-type]
        if not inner.cancelled():
            inner.exception()  # retrieved, so an error nobody awaits is not reported twice

    async def serve_body(self, body: bytes, meta: CallMeta) -> Answer:
        """Serve a call whose whole body is at hand (an AMQP message)."""
        if not self._is_ready():
            return self._refused(self._unavailable_answer(_execution_id_of(body)))
        self._enter()
        task = asyncio.current_task()
        try:
            return await self._serve_body(body, meta)
        except asyncio.CancelledError:
            if self._aborting:
                return self._stopping_answer(_execution_id_of(body))
            raise
        finally:
            self._leave(task)

    async def serve_request(self, request: ExecRequest, meta: CallMeta) -> Answer:
        """Serve a call already parsed (a schedule tick, a WebSocket frame)."""
        if not self._is_ready():
            return self._refused(self._unavailable_answer(request.execution_id))
        self._enter()
        task = asyncio.current_task()
        try:
            return await self._call(request, meta)
        except asyncio.CancelledError:
            if self._aborting:
                return self._stopping_answer(request.execution_id)
            raise
        finally:
            self._leave(task)

    # -- the call --------------------------------------------------------------------------

    async def _serve_body(self, body: bytes, meta: CallMeta) -> Answer:
        try:
            request = parse_exec_request(body)
        except EnvelopeError as error:
            return self._refused(envelope_error_answer(error))
        return await self._call(request, meta)

    async def _call(self, request: ExecRequest, meta: CallMeta) -> Answer:
        guards = self.guards
        try:
            caller = await guards.authenticate(request, meta)
            answer = await guards.guarded(request, caller, meta, self._invoke)
        except CallRejectedError as error:
            return self._refused(rejection_answer(error, request.execution_id))
        if self.on_http_call is not None and meta.trigger == "http":
            self.on_http_call(request, answer)
        return answer

    async def _invoke(
        self, request: ExecRequest, caller: Principal | None, meta: CallMeta
    ) -> CallOutcome:
        cold = take_cold_start()
        with self.guards.observe_call(request, meta) as observed:
            outcome = await self.invoker.invoke(
                request, caller, cold_start=cold, timeout=meta.timeout, sink=meta.sink
            )
            observed.finish(outcome)
        if observed.trace is not None:
            outcome = dataclasses.replace(outcome, trace=observed.trace)
        return outcome

    # -- refusals --------------------------------------------------------------------------

    def refuse(self, answer: Answer) -> Answer:
        """Count and log a refusal a transport found itself (a malformed WebSocket frame)."""
        return self._refused(answer)

    def _refused(self, answer: Answer) -> Answer:
        if answer.rejected is not None:
            self.guards.rejected(answer.rejected)
            if answer.status < 500 and answer.rejected not in _QUIET:
                logger.info(
                    "Refused a call: HTTP %d %s",
                    answer.status,
                    answer.rejected,
                    extra={"status": "rejected", "error_kind": answer.rejected},
                )
        return answer

    def _unavailable_answer(self, execution_id: str | None) -> Answer:
        error = UnavailableError(f"Server is {self._state()}; retry on another instance")
        answer = rejection_answer(error, execution_id)
        # Close the connection: a client must not send its next call on a server going away.
        answer.headers["Connection"] = "close"
        return answer

    async def _unavailable(self, declared: int | None, next_chunk: NextChunk) -> Answer:
        # Not admitted, so it never holds up a drain; the body is read briefly, to echo its id.
        execution_id = None
        with contextlib.suppress(Exception):
            body = await read_body(
                next_chunk,
                declared,
                self.settings.functions_max_body_size,
                _UNAVAILABLE_READ_TIMEOUT,
            )
            execution_id = _execution_id_of(body)
        return self._refused(self._unavailable_answer(execution_id))

    def _stopping_answer(self, execution_id: str | None) -> Answer:
        body = failure_body(
            "Server is stopping; the call was abandoned, retry on another instance",
            {"executionId": execution_id, "errorKind": "unavailable"},
        )
        return self._refused(
            Answer(503, body, {"Retry-After": "1", "Connection": "close"}, "unavailable")
        )


_QUIET: frozenset[ErrorKind] = frozenset({"unavailable"})


def _execution_id_of(body: bytes) -> str | None:
    try:
        return parse_exec_request(body).execution_id
    except EnvelopeError as error:
        return error.execution_id
