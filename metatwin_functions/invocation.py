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
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from .context import ExecutionContext, _current
from .envelope import ExecRequest, failure_body, serialize_result, success_body
from .errors import (
    ExecutionFailedError,
    ExecutionTimeoutError,
    FunctionNotFoundError,
    InvalidArgumentsError,
    InvocationError,
    ResultSerializationError,
)
from .registry import FunctionRegistry, FunctionSpec
from .settings import Settings
from .threads import DaemonThreadPool

__all__ = ["CallOutcome", "Invoker", "describe_validation_error"]

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


class Invoker:
    """Runs calls of a registry's functions under the settings' deadlines.

    ``async def`` functions are awaited and cancelled at their deadline. Plain ``def`` functions
    run on a bounded thread pool (``CRBR_FUNCTIONS_SYNC_WORKERS``) with the caller's context, so
    `current_execution` and log fields work inside them; a thread cannot be cancelled, so at the
    deadline the call reports a timeout and the thread is left to finish.
    """

    def __init__(self, registry: FunctionRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self._executor: DaemonThreadPool | None = None
        self._retired: list[DaemonThreadPool] = []
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._admission = _Admission(self)

    @property
    def in_flight(self) -> int:
        """Number of calls (and admitted requests) currently running."""
        return self._in_flight

    @property
    def threads_busy(self) -> int:
        """Plain ``def`` calls queued or running, including those past their deadline."""
        pools = [*self._retired, *([self._executor] if self._executor is not None else [])]
        return sum(pool.busy for pool in pools)

    def admitted(self) -> _Admission:
        """A context manager counting a request as in flight from the moment it is accepted
        (e.g. while its body arrives), so a drain waits for it too."""
        return self._admission

    def _leave(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def invoke(self, request: ExecRequest) -> CallOutcome:
        """Serve one call; never raises for anything the function or its arguments do."""
        started = time.perf_counter()
        token = _current.set(ExecutionContext(request.execution_id, request.function_name))
        try:
            try:
                with self.admitted():
                    result_json = await self._run(request)
            except InvocationError as error:
                return self._failed(request, error, started)
            duration = time.perf_counter() - started
            metadata = {"executionId": request.execution_id, "durationMs": _ms(duration)}
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "Function '%s' succeeded in %.1f ms",
                    request.function_name,
                    duration * 1000,
                    extra={"status": "success", "duration_ms": _ms(duration)},
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

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is running, at most ``timeout`` seconds; True if idle."""
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

    def close(self) -> None:
        """Release the thread pool; threads still running are daemons and never delay exit."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            # Kept, so that threads_busy still tells what was left running.
            self._retired.append(self._executor)
            self._executor = None

    async def _run(self, request: ExecRequest) -> bytes:
        spec = self.registry.get(request.function_name)
        if spec is None:
            raise FunctionNotFoundError(request.function_name)
        kwargs = _validate_arguments(spec, request.args)
        timeout = self.settings.effective_timeout(spec.timeout)
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                if spec.is_async:
                    result = await spec.func(**kwargs)
                else:
                    result = await self._run_in_thread(spec, kwargs)
                if inspect.isawaitable(result):
                    # A def that returns a coroutine (e.g. under a decorator unaware of async).
                    result = await result
        except TimeoutError as exc:
            if deadline.expired():
                raise ExecutionTimeoutError(spec.name, timeout) from None
            raise ExecutionFailedError(spec.name, exc) from exc
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the server (or the client) is cancelling this request
            raise ExecutionFailedError(spec.name, exc) from exc  # the function cancelled itself
        except BaseException as exc:
            if deadline.expired():
                # The function turned its cancellation at the deadline into another error.
                raise ExecutionTimeoutError(spec.name, timeout) from exc
            # Whatever the function raises, SystemExit and KeyboardInterrupt included, is its
            # failure: it must not take the server down.
            raise ExecutionFailedError(spec.name, exc) from exc
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise asyncio.CancelledError  # the function swallowed the server's cancellation
        if deadline.expired():
            # The function swallowed its cancellation and returned after the deadline.
            raise ExecutionTimeoutError(spec.name, timeout)
        try:
            return serialize_result(result)
        except ValueError as exc:
            raise ResultSerializationError(spec.name, str(exc)) from None

    def _run_in_thread(self, spec: FunctionSpec, kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        if self._executor is None:
            self._executor = DaemonThreadPool(
                self.settings.functions_sync_workers, thread_name_prefix="metatwin-sync"
            )
        context = contextvars.copy_context()
        call = functools.partial(context.run, spec.func, **kwargs)
        return asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _failed(self, request: ExecRequest, error: InvocationError, started: float) -> CallOutcome:
        duration = time.perf_counter() - started
        status: CallStatus = "timeout" if isinstance(error, ExecutionTimeoutError) else "error"
        metadata: dict[str, Any] = {
            "executionId": request.execution_id,
            "durationMs": _ms(duration),
            "errorKind": error.kind,
        }
        if error.code is not None:
            metadata["errorCode"] = error.code
        extra = {"status": status, "duration_ms": _ms(duration), "error_kind": error.kind}
        if isinstance(error, ExecutionFailedError):
            logger.error(str(error), exc_info=error.__cause__, extra=extra)
        elif isinstance(error, ExecutionTimeoutError | ResultSerializationError):
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


class _Admission:
    """`Invoker.admitted`: a plain class, as it runs twice on every call (a generator-based
    context manager costs about six times as much)."""

    __slots__ = ("_invoker",)

    def __init__(self, invoker: Invoker) -> None:
        self._invoker = invoker

    def __enter__(self) -> None:
        self._invoker._in_flight += 1

    def __exit__(self, *_: object) -> None:
        self._invoker._leave()


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
