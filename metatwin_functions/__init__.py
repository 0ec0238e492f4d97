"""metatwin-functions: serve plain Python functions to the MetaTwin platform.

>>> from metatwin_functions import Function, FunctionServer
>>> @Function
... async def add_numbers(a: int, b: int) -> int:
...     return a + b
"""

from __future__ import annotations

from .app import FunctionServer, create_app
from .context import ExecutionContext, current_execution
from .envelope import ExecRequest
from .errors import (
    ConfigurationError,
    ExecutionFailedError,
    ExecutionTimeoutError,
    FunctionNotFoundError,
    InvalidArgumentsError,
    InvocationError,
    MetaTwinFunctionsError,
    RegistrationError,
    ResultSerializationError,
)
from .fastpath import ExecFastPath
from .http import functions_blueprint
from .invocation import CallOutcome, Invoker
from .logs import configure_logging
from .registry import Function, FunctionRegistry, FunctionSpec, default_registry
from .server import serve, serve_async
from .settings import Settings, load_settings

__version__ = "0.1.0"

__all__ = [
    "CallOutcome",
    "ConfigurationError",
    "ExecFastPath",
    "ExecRequest",
    "ExecutionContext",
    "ExecutionFailedError",
    "ExecutionTimeoutError",
    "Function",
    "FunctionNotFoundError",
    "FunctionRegistry",
    "FunctionServer",
    "FunctionSpec",
    "InvalidArgumentsError",
    "InvocationError",
    "Invoker",
    "MetaTwinFunctionsError",
    "RegistrationError",
    "ResultSerializationError",
    "Settings",
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
