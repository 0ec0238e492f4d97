"""The one exception tree of the SDK.

Errors raised while serving a call carry what the HTTP layer needs (``kind``, ``code``) so the
transport never has to guess; the user's own exception is kept as ``__cause__``.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "CallRejectedError",
    "ClientError",
    "ClientTimeoutError",
    "ConcurrencyLimitedError",
    "ConfigurationError",
    "EnvelopeError",
    "ErrorKind",
    "ExecutionCancelledError",
    "ExecutionFailedError",
    "ExecutionTimeoutError",
    "ForbiddenError",
    "FunctionNotFoundError",
    "IdempotencyConflictError",
    "InvalidArgumentsError",
    "InvocationError",
    "MetaTwinFunctionsError",
    "RateLimitedError",
    "RegistrationError",
    "ResultSerializationError",
    "ResultTooLargeError",
    "UnauthorizedError",
    "UnavailableError",
]


ErrorKind = Literal[
    # The request was refused before any function ran.
    "invalid_envelope",
    "too_large",
    "body_timeout",
    "unavailable",
    "unauthorized",
    "forbidden",
    "concurrency_limited",
    "rate_limited",
    "idempotency_conflict",
    # An AMQP message delivered too often (it is dead-lettered, not run again).
    "delivery_limit",
    # The call ran (or was looked up) and did not succeed.
    "not_found",
    "invalid_arguments",
    "execution_failed",
    "timeout",
    "result_not_serializable",
    "result_too_large",
    "cancelled",
    # Anything else the HTTP layer answers: 404/405 of other paths, and our own bugs.
    "http_error",
    "internal_error",
]
"""Every ``metadata.errorKind`` the SDK writes: the one vocabulary of failures."""


class MetaTwinFunctionsError(Exception):
    """Root of every error the SDK raises."""


class ConfigurationError(MetaTwinFunctionsError):
    """The ``CRBR_*`` settings (or arguments given in code) are not valid."""


class FatalConfigurationError(ConfigurationError, SystemExit):
    """A `ConfigurationError` that, left uncaught, ends the program with one line, no traceback.

    Raised by the entry points that are a program's main loop (`FunctionServer`): Python
    prints ``error: <message>`` to stderr and exits with status 1, as for the command line.
    ``except ConfigurationError`` still catches it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = f"error: {message}"


class RegistrationError(MetaTwinFunctionsError):
    """A function cannot be registered: duplicate name, not callable, or unservable signature."""


class InvocationError(MetaTwinFunctionsError):
    """A call could not produce a result; ``str(error)`` is the contract's error text."""

    kind: ErrorKind = "internal_error"
    #: The platform's error code, only where the platform defines one for this failure.
    code: str | None = None

    def __init__(self, message: str, *, function_name: str) -> None:
        super().__init__(message)
        self.message = message
        self.function_name = function_name


class FunctionNotFoundError(InvocationError):
    """No function is registered under the requested name (or not in the requested version)."""

    kind = "not_found"

    def __init__(self, function_name: str, version: str | None = None) -> None:
        where = "" if version is None else f" version '{version}'"
        super().__init__(
            f"Function '{function_name}'{where} not found", function_name=function_name
        )
        self.version = version


class InvalidArgumentsError(InvocationError):
    """The arguments do not fit the function's signature."""

    kind = "invalid_arguments"

    def __init__(self, function_name: str, detail: str, *, missing: bool = False) -> None:
        super().__init__(
            f"Invalid arguments for function '{function_name}': {detail}",
            function_name=function_name,
        )
        self.detail = detail
        self.missing = missing
        if missing:
            self.code = "MTF-EXECUTION-008"


class ExecutionTimeoutError(InvocationError):
    """The call did not finish before its deadline."""

    kind = "timeout"
    code = "MTF-EXECUTION-002"

    def __init__(self, function_name: str, timeout: float) -> None:
        unit = "second" if timeout == 1 else "seconds"
        super().__init__(
            f"Function '{function_name}' execution timed out after {timeout:g} {unit}",
            function_name=function_name,
        )
        self.timeout = timeout


class ExecutionFailedError(InvocationError):
    """The user's function raised; the original exception is ``__cause__``."""

    kind = "execution_failed"
    code = "MTF-EXECUTION-003"

    def __init__(self, function_name: str, error: BaseException) -> None:
        text = _describe_failure(error)
        super().__init__(f"Function execution failed: {text}", function_name=function_name)
        self.error_type = type(error).__name__


def _describe_failure(error: BaseException) -> str:
    # ``sys.exit(3)`` stringifies as "3": a bare number would not say the function exited.
    if not isinstance(error, Exception) and error.args:
        return repr(error)
    return str(error) or type(error).__name__


class ExecutionCancelledError(InvocationError):
    """The caller cancelled the call (a WebSocket cancel, or a stream's client went away)."""

    kind = "cancelled"

    def __init__(self, function_name: str) -> None:
        super().__init__(
            f"Function '{function_name}' execution was cancelled by the caller",
            function_name=function_name,
        )


class ResultSerializationError(InvocationError):
    """The function returned (or a generator yielded) a value that cannot be turned into JSON."""

    kind = "result_not_serializable"

    def __init__(self, function_name: str, detail: str, *, item: int | None = None) -> None:
        what = "returned a value" if item is None else f"yielded an item (#{item})"
        super().__init__(
            f"Function '{function_name}' {what} that cannot be serialized to JSON: {detail}",
            function_name=function_name,
        )


class ResultTooLargeError(InvocationError):
    """The function's result, as JSON, is larger than ``CRBR_FUNCTIONS_MAX_RESULT_SIZE``."""

    kind = "result_too_large"

    def __init__(
        self, function_name: str, size: int, limit: int, *, item: int | None = None
    ) -> None:
        what = "returned a result" if item is None else f"yielded an item (#{item})"
        super().__init__(
            f"Function '{function_name}' {what} of {size} bytes as JSON, "
            f"above the limit of {limit} bytes",
            function_name=function_name,
        )
        self.size = size
        self.limit = limit


class EnvelopeError(MetaTwinFunctionsError):
    """The request body is not a valid ``/exec`` envelope (HTTP 422)."""

    def __init__(self, problems: list[str], execution_id: str | None = None) -> None:
        super().__init__("Invalid request: " + "; ".join(problems))
        self.problems = problems
        self.execution_id = execution_id


class CallRejectedError(MetaTwinFunctionsError):
    """A call refused before its function ran: carries the HTTP status, kind and headers."""

    status: int = 400
    kind: ErrorKind = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = {} if headers is None else headers


class UnauthorizedError(CallRejectedError):
    """No credentials, or credentials that are not valid (HTTP 401)."""

    status = 401
    kind = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ForbiddenError(CallRejectedError):
    """The caller lacks every role the function requires (HTTP 403)."""

    status = 403
    kind = "forbidden"


class _TooManyRequestsError(CallRejectedError):
    status = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        # Whole seconds, at least 1, as the contract says.
        seconds = max(1, int(-(-retry_after // 1)))
        super().__init__(message, headers={"Retry-After": str(seconds)})
        self.retry_after = seconds


class ConcurrencyLimitedError(_TooManyRequestsError):
    """Too many calls in flight, in the process or of this function (HTTP 429)."""

    kind = "concurrency_limited"


class RateLimitedError(_TooManyRequestsError):
    """The function's (or the process's) rate limit is spent (HTTP 429)."""

    kind = "rate_limited"


class IdempotencyConflictError(CallRejectedError):
    """The ``executionId`` was used for another call (HTTP 409)."""

    status = 409
    kind = "idempotency_conflict"


class UnavailableError(CallRejectedError):
    """The server is starting or draining (HTTP 503)."""

    status = 503
    kind = "unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class ClientError(MetaTwinFunctionsError):
    """A call made with `metatwin_functions.client` got no contract answer (nobody listening,
    connection lost, a body that is not the ``/exec`` shape)."""


class ClientTimeoutError(ClientError, TimeoutError):
    """A call made with `metatwin_functions.client` got no answer before its deadline."""
