"""The sans-IO core of a call: look up, validate, run under a deadline, write the response.

Nothing here knows about Quart, so other transports (and tests) can use `Invoker` directly.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from .context import ExecutionContext, Principal, _current
from .deadline import Deadline
from .envelope import ExecRequest, failure_body, serialize_result, success_body
from .errors import (
    ExecutionCancelledError,
    ExecutionFailedError,
    ExecutionTimeoutError,
    FunctionNotFoundError,
    InvalidArgumentsError,
    InvocationError,
    ResultSerializationError,
    ResultTooLargeError,
)
from .generators import ItemWriter, ThreadedGenerator, drive_async_generator
from .registry import FunctionRegistry, FunctionSpec
from .settings import Settings
from .streaming import ChannelClosedError
from .threads import DaemonThreadPool

if TYPE_CHECKING:
    from .streaming import StreamSink

__all__ = ["CallOutcome", "Invoker", "describe_validation_error", "take_cold_start"]

CallStatus = Literal["success", "error", "timeout"]

logger = logging.getLogger("metatwin_functions.calls")


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """What one call produced: the response body and what the logs and metrics need."""

    execution_id: str
    function_name: str
    status: CallStatus
    body: bytes
    duration: float
    error: InvocationError | None = None
    #: W3C trace context of the call's span, when calls are traced.
    trace: dict[str, str] | None = None

    @property
    def outcome(self) -> str:
        """``success`` or the ``errorKind`` of the failure (the metrics' ``outcome`` label)."""
        return "success" if self.error is None else self.error.kind


_cold_start = True
"""True until the process has served its first call (logs' ``cold_start``, spans' coldstart)."""


def take_cold_start() -> bool:
    """True exactly once per process: for the first call served."""
    global _cold_start
    cold, _cold_start = _cold_start, False
    return cold


class Invoker:
    """Runs calls of a registry's functions under the settings' deadlines.

    ``async def`` functions are awaited and cancelled at their deadline. Plain ``def`` functions
    run on a bounded thread pool (``CRBR_FUNCTIONS_SYNC_WORKERS``) with the caller's context, so
    `current_execution` and log fields work inside them; a thread cannot be cancelled, so at the
    deadline the call reports a timeout and the thread is left to finish. Generators are
    collected into a list, or, given a `StreamSink`, streamed into it item by item (the deadline
    covers the whole stream).
    """

    def __init__(self, registry: FunctionRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self._executor: DaemonThreadPool | None = None
        self._retired: list[DaemonThreadPool] = []
        #: ``async def`` calls running now, by task: who to name when the event loop is blocked.
        self.async_calls: dict[asyncio.Task[Any], str] = {}

    @property
    def threads_busy(self) -> int:
        """Plain ``def`` calls queued or running, including those past their deadline."""
        return sum(pool.busy for pool in self._pools())

    @property
    def threads_abandoned(self) -> int:
        """Plain ``def`` calls still running after their caller got a timeout."""
        return sum(pool.abandoned for pool in self._pools())

    def _pools(self) -> list[DaemonThreadPool]:
        return [*self._retired, *([self._executor] if self._executor is not None else [])]

    async def invoke(
        self,
        request: ExecRequest,
        caller: Principal | None = None,
        *,
        cold_start: bool = False,
        timeout: float | None = None,
        sink: StreamSink | None = None,
    ) -> CallOutcome:
        """Serve one call; never raises for anything the function or its arguments do.

        ``timeout`` (seconds) shortens the function's deadline, never lengthens it. With a
        ``sink`` (a stream), a generator's items and the function's progress go to it, and a
        cancellation the sink's transport asked for ends the call as ``cancelled``.
        """
        started = time.perf_counter()
        token = _current.set(
            ExecutionContext(request.execution_id, request.function_name, caller, sink)
        )
        if sink is not None:
            sink.start(request.execution_id)
        try:
            try:
                result_json = await self._run(request, timeout, sink)
            except InvocationError as error:
                return self._failed(request, error, started, cold_start)
            duration = time.perf_counter() - started
            metadata = {"executionId": request.execution_id, "durationMs": _ms(duration)}
            if logger.isEnabledFor(logging.INFO):
                extra: dict[str, Any] = {"status": "success", "duration_ms": _ms(duration)}
                if cold_start:
                    extra["cold_start"] = True
                logger.info(
                    "Function '%s' succeeded in %.1f ms",
                    request.function_name,
                    duration * 1000,
                    extra=extra,
                )
            return CallOutcome(
                request.execution_id,
                request.function_name,
                "success",
                success_body(result_json, metadata),
                duration,
            )
        finally:
            _current.reset(token)

    def close(self) -> None:
        """Release the thread pool; threads still running are daemons and never delay exit."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            # Kept, so that threads_busy still tells what was left running.
            self._retired.append(self._executor)
            self._executor = None

    async def _run(
        self, request: ExecRequest, limit: float | None, sink: StreamSink | None
    ) -> bytes:
        spec = self.registry.get(request.function_name, request.version)
        if spec is None:
            raise FunctionNotFoundError(request.function_name, request.version)
        kwargs = _validate_arguments(spec, request.args)
        timeout = self.settings.effective_timeout(spec.timeout)
        if limit is not None and limit < timeout:
            timeout = max(limit, 0.0)
        loop = asyncio.get_running_loop()
        ends = loop.time() + timeout
        deadline = Deadline(ends)
        task = asyncio.current_task()
        thread_call: asyncio.Future[Any] | None = None
        pump: ThreadedGenerator | None = None
        try:
            with deadline:
                kind = spec.kind
                if kind == "async":
                    if task is not None:
                        self.async_calls[task] = spec.name
                    try:
                        result = await spec.func(**kwargs)
                    finally:
                        if task is not None:
                            self.async_calls.pop(task, None)
                elif kind == "sync":
                    thread_call = self._run_in_thread(spec.func, **kwargs)
                    result = await thread_call
                elif kind == "async_generator":
                    if task is not None:
                        self.async_calls[task] = spec.name
                    try:
                        result = await drive_async_generator(
                            spec.func, kwargs, sink, self._item_writer(spec)
                        )
                    finally:
                        if task is not None:
                            self.async_calls.pop(task, None)
                else:  # a plain generator, on the thread pool
                    pump = ThreadedGenerator(loop)
                    if sink is None:
                        thread_call = self._run_in_thread(pump.collect, spec.func, kwargs)
                        result = await thread_call
                    else:
                        thread_call = self._run_in_thread(
                            pump.produce, spec.func, kwargs, self._item_writer(spec)
                        )
                        await pump.deliver(sink, thread_call)
                        result = None
                if inspect.isawaitable(result):
                    # A def that returns a coroutine (e.g. under a decorator unaware of async).
                    result = await result
        except TimeoutError as exc:
            if deadline.expired():
                if thread_call is not None:
                    self._abandon(thread_call)
                raise ExecutionTimeoutError(spec.name, timeout) from None
            raise ExecutionFailedError(spec.name, exc) from exc
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                if thread_call is not None:
                    self._abandon(thread_call)
                if sink is not None and sink.cancelled:
                    current.uncancel()  # the caller cancelled: answered, counted and logged
                    raise ExecutionCancelledError(spec.name) from None
                raise  # the server (or the client) is cancelling this request
            raise ExecutionFailedError(spec.name, exc) from exc  # the function cancelled itself
        except InvocationError:
            raise  # a generator's item that JSON cannot hold, or that is too large
        except ChannelClosedError:
            raise ExecutionCancelledError(spec.name) from None  # the reader went away
        except BaseException as exc:
            if deadline.expired():
                # The function turned its cancellation at the deadline into another error.
                raise ExecutionTimeoutError(spec.name, timeout) from exc
            # Whatever the function raises, SystemExit and KeyboardInterrupt included, is its
            # failure: it must not take the server down.
            raise ExecutionFailedError(spec.name, exc) from exc
        finally:
            if pump is not None:
                pump.stop()
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            if sink is not None and sink.cancelled:
                current.uncancel()
                raise ExecutionCancelledError(spec.name)
            raise asyncio.CancelledError  # the function swallowed the server's cancellation
        if deadline.expired() or loop.time() > ends:
            # It swallowed its cancellation and returned late, or it blocked the event loop past
            # its deadline so that the deadline could not even fire: a timeout either way.
            raise ExecutionTimeoutError(spec.name, timeout)
        try:
            result_json = serialize_result(result)
        except ValueError as exc:
            raise ResultSerializationError(spec.name, str(exc)) from None
        limit = self.settings.functions_max_result_size
        if len(result_json) > limit:
            raise ResultTooLargeError(spec.name, len(result_json), limit)
        return result_json

    def _abandon(self, call: asyncio.Future[Any]) -> None:
        # The asyncio future wraps the pool's; the pool frees the slot of a call past its deadline.
        pool_call = getattr(call, "_metatwin_pool_call", None)
        if pool_call is not None:
            pool, inner = pool_call
            pool.abandon(inner)

    def _item_writer(self, spec: FunctionSpec) -> ItemWriter:
        return ItemWriter(spec.name, self.settings.functions_max_result_size)

    def _run_in_thread(
        self, func: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        if self._executor is None:
            self._executor = DaemonThreadPool(
                self.settings.functions_sync_workers,
                thread_name_prefix="metatwin-sync",
                max_abandoned=self.settings.functions_max_abandoned_threads,
            )
        context = contextvars.copy_context()
        call = functools.partial(context.run, func, *args, **kwargs)
        inner = self._executor.submit(call)
        outer = asyncio.wrap_future(inner)
        outer._metatwin_pool_call = (self._executor, inner)  # type: ignore[attr-defined]
        return outer

    def _failed(
        self, request: ExecRequest, error: InvocationError, started: float, cold_start: bool
    ) -> CallOutcome:
        duration = time.perf_counter() - started
        status: CallStatus = "timeout" if isinstance(error, ExecutionTimeoutError) else "error"
        metadata: dict[str, Any] = {
            "executionId": request.execution_id,
            "durationMs": _ms(duration),
            "errorKind": error.kind,
        }
        if error.code is not None:
            metadata["errorCode"] = error.code
        extra: dict[str, Any] = {
            "status": status,
            "duration_ms": _ms(duration),
            "error_kind": error.kind,
        }
        if cold_start:
            extra["cold_start"] = True
        if isinstance(error, ExecutionFailedError):
            logger.error(str(error), exc_info=error.__cause__, extra=extra)
        elif isinstance(
            error, ExecutionTimeoutError | ResultSerializationError | ResultTooLargeError
        ):
            logger.error(str(error), extra=extra)
        else:
            logger.warning(str(error), extra=extra)
        return CallOutcome(
            request.execution_id,
            request.function_name,
            status,
            failure_body(error.message, metadata),
            duration,
            error,
        )


_LOGGED_AS_ERRORS = (ExecutionTimeoutError, ResultSerializationError, ResultTooLargeError)


def _validate_arguments(spec: FunctionSpec, args: dict[str, Any]) -> dict[str, Any]:
    try:
        return spec.signature.arguments_adapter.validate_python(args)
    except ValidationError as exc:
        detail, missing = describe_validation_error(exc)
        raise InvalidArgumentsError(spec.name, detail, missing=missing) from None


def describe_validation_error(exc: ValidationError) -> tuple[str, bool]:
    """One sentence per problem that names the argument and says why; and whether one is missing."""
    parts: list[str] = []
    missing = False
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"])
        if error["type"] == "missing":
            missing = True
            parts.append(f"missing required argument '{location}'")
        elif error["type"] == "extra_forbidden":
            parts.append(f"unexpected argument '{location}'")
        else:
            parts.append(f"argument '{location}': {error['msg']}")
    return "; ".join(parts), missing


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
