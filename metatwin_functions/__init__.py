"""metatwin-functions: serve plain Python functions to the MetaTwin platform.

>>> from metatwin_functions import Function, FunctionServer
>>> @Function
... async def add_numbers(a: int, b: int) -> int:
...     return a + b
"""

from __future__ import annotations

from .app import FunctionServer, create_app
from .context import ExecutionContext, Principal, current_execution
from .envelope import ExecRequest
from .errors import (
    CallRejectedError,
    ClientError,
    ClientTimeoutError,
    ConcurrencyLimitedError,
    ConfigurationError,
    EnvelopeError,
    ErrorKind,
    ExecutionCancelledError,
    ExecutionFailedError,
    ExecutionTimeoutError,
    ForbiddenError,
    FunctionNotFoundError,
    IdempotencyConflictError,
    InvalidArgumentsError,
    InvocationError,
    MetaTwinFunctionsError,
    RateLimitedError,
    RegistrationError,
    ResultSerializationError,
    ResultTooLargeError,
    UnauthorizedError,
    UnavailableError,
)
from .fastpath import ExecFastPath
from .http import functions_blueprint
from .idempotency import (
    Acquired,
    Conflict,
    IdempotencyStore,
    InMemoryIdempotencyStore,
    Reservation,
    Running,
    Stored,
)
from .invocation import CallOutcome, Invoker
from .logs import configure_logging
from .registry import Function, FunctionRegistry, FunctionSpec, default_registry
from .server import serve, serve_async
from .settings import Settings, load_settings

__version__ = "0.1.0"

__all__ = [
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
]
