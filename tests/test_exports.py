"""The package's public surface: exactly these names, each importable and documented."""

from __future__ import annotations

import inspect

import metatwin_functions

EXPORTED = {
    "Acquired",
    "CallOutcome",
    "CallRejectedError",
    "ClientError",
    "ClientTimeoutError",
    "ConcurrencyLimitedError",
    "ConfigurationError",
    "Conflict",
    "EnvelopeError",
    "ErrorKind",
    "ExecFastPath",
    "ExecRequest",
    "ExecutionCancelledError",
    "ExecutionContext",
    "ExecutionFailedError",
    "ExecutionTimeoutError",
    "ForbiddenError",
    "Function",
    "FunctionNotFoundError",
    "FunctionRegistry",
    "FunctionServer",
    "FunctionSpec",
    "IdempotencyConflictError",
    "IdempotencyStore",
    "InMemoryIdempotencyStore",
    "InvalidArgumentsError",
    "InvocationError",
    "Invoker",
    "MetaTwinFunctionsError",
    "Principal",
    "RateLimitedError",
    "RegistrationError",
    "Reservation",
    "ResultSerializationError",
    "ResultTooLargeError",
    "Running",
    "Settings",
    "Stored",
    "UnauthorizedError",
    "UnavailableError",
    "__version__",
    "configure_logging",
    "create_app",
    "current_execution",
    "default_registry",
    "functions_blueprint",
    "load_settings",
    "serve",
    "serve_async",
}


def test_the_package_exports_exactly_its_public_names() -> None:
    assert set(metatwin_functions.__all__) == EXPORTED
    assert metatwin_functions.__all__ == sorted(metatwin_functions.__all__, key=str)


def test_every_exported_name_exists_and_public_classes_are_documented() -> None:
    for name in metatwin_functions.__all__:
        value = getattr(metatwin_functions, name)
        if isinstance(value, type) or inspect.isfunction(value):
            assert getattr(value, "__doc__", None), f"{name} has no docstring"


def test_every_sdk_exception_has_one_root() -> None:
    for name in metatwin_functions.__all__:
        value = getattr(metatwin_functions, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, metatwin_functions.MetaTwinFunctionsError), name
