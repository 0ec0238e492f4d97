"""The one exception tree of the SDK.

Errors raised while serving a call carry what the HTTP layer needs (``kind``, ``code``) so the
transport never has to guess; the user's own exception is kept as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ExecutionFailedError",
    "ExecutionTimeoutError",
    "FunctionNotFoundError",
    "InvalidArgumentsError",
    "InvocationError",
    "MetaTwinFunctionsError",
    "RegistrationError",
    "ResultSerializationError",
]


class MetaTwinFunctionsError(Exception):
    """Root of every error the SDK raises."""


class ConfigurationError(MetaTwinFunctionsError):
    """The ``CRBR_*`` settings (or arguments given in code) are not valid."""


class RegistrationError(MetaTwinFunctionsError):
    """A function cannot be registered: duplicate name, not callable, or unservable signature."""


class InvocationError(MetaTwinFunctionsError):
    """A call could not produce a result; ``str(error)`` is the contract's error text."""

    kind: str = "internal_error"
    #: The platform's error code, only where the platform defines one for this failure.
    code: str | None = None

    def __init__(self, message: str, *, function_name: str) -> None:
        super().__init__(message)
        self.message = message
        self.function_name = function_name


class FunctionNotFoundError(InvocationError):
    """No function is registered under the requested name."""

    kind = "not_found"

    def __init__(self, function_name: str) -> None:
        super().__init__(f"Function '{function_name}' not found", function_name=function_name)


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
        super().__init__(
            f"Function '{function_name}' execution timed out after {timeout:g} seconds",
            function_name=function_name,
        )
        self.timeout = timeout


class ExecutionFailedError(InvocationError):
    """The user's function raised; the original exception is ``__cause__``."""

    kind = "execution_failed"
    code = "MTF-EXECUTION-003"

    def __init__(self, function_name: str, error: BaseException) -> None:
        text = str(error) or type(error).__name__
        super().__init__(f"Function execution failed: {text}", function_name=function_name)
        self.error_type = type(error).__name__


class ResultSerializationError(InvocationError):
    """The function returned a value that cannot be turned into JSON."""

    kind = "result_not_serializable"

    def __init__(self, function_name: str, detail: str) -> None:
        super().__init__(
            f"Function '{function_name}' returned a value that cannot be serialized to JSON: "
            f"{detail}",
            function_name=function_name,
        )
