"""The benchmark's functions and the `/exec` core the hand-written peers share.

The peers implement the wire contract (docs: /work/shared/CONTRACT.md, the project's CONTRACT)
faithfully enough to be a fair comparison: the envelope is checked, arguments are validated through
the function's type hints with pydantic (one model built per function at start-up, as the SDK
does), an unknown function is a ``success: false`` envelope, every call runs under
``asyncio.wait_for`` and a plain ``def`` runs on a thread pool. They import nothing from the SDK,
so the SDK's import cost stays out of their start-up time and memory.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

__all__ = [
    "FUNCTIONS",
    "MAX_BODY_BYTES",
    "TIMEOUT",
    "EnvelopeError",
    "Target",
    "build_targets",
    "describe_validation_error",
    "envelope",
    "invoke",
    "parse_envelope",
    "ready_body",
    "serve_hypercorn",
    "settings_host_port",
]

MAX_BODY_BYTES = 1024 * 1024
DEPLOYMENT_ID = os.environ.get("CRBR_DEPLOYMENT_ID", "bench")
TIMEOUT = min(
    float(os.environ.get("CRBR_FUNCTIONS_TIMEOUT", "30")),
    float(os.environ.get("CRBR_FUNCTIONS_MAX_TIMEOUT", "300")),
)


async def add_numbers(a: int, b: int) -> int:
    """Adds two numbers together."""
    return a + b


async def slow_operation(seconds: float = 1.0) -> str:
    """Sleeps, then says so."""
    await asyncio.sleep(seconds)
    return f"Slept for {seconds} seconds"


def word_count(text: str) -> int:
    """Counts the words of a text (a plain ``def``: it runs on a thread pool)."""
    return len(text.split())


FUNCTIONS: tuple[Callable[..., Any], ...] = (add_numbers, slow_operation, word_count)


@dataclass(frozen=True, slots=True)
class Target:
    """A function ready to be called: its argument model is built once, here."""

    name: str
    func: Callable[..., Any]
    is_async: bool
    arguments: type[BaseModel]

    def validate(self, args: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of a call, validated through the function's type hints."""
        model = self.arguments.model_validate(args)
        return {name: getattr(model, name) for name in type(model).model_fields}


def build_targets() -> dict[str, Target]:
    """One `Target` per benchmark function, keyed by name."""
    targets: dict[str, Target] = {}
    for func in FUNCTIONS:
        fields: dict[str, Any] = {}
        for param in inspect.signature(func).parameters.values():
            annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (annotation, default)
        model = create_model(
            f"{func.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )
        targets[func.__name__] = Target(
            func.__name__, func, inspect.iscoroutinefunction(func), model
        )
    return targets


class EnvelopeError(ValueError):
    """The request envelope is not valid: the contract answers 422."""


def parse_envelope(raw: bytes | str) -> tuple[str, str, dict[str, Any]]:
    """``(executionId, functionName, args)`` of a request body, or `EnvelopeError`."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise EnvelopeError(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise EnvelopeError("body must be a JSON object")
    execution_id = body.get("executionId")
    function_name = body.get("functionName")
    args = body.get("args", {})
    if not isinstance(execution_id, str):
        raise EnvelopeError("executionId is required and must be a string")
    if not isinstance(function_name, str):
        raise EnvelopeError("functionName is required and must be a string")
    if not isinstance(args, dict):
        raise EnvelopeError("args must be a JSON object")
    return execution_id, function_name, args


def describe_validation_error(exc: ValidationError) -> str:
    """Which argument is wrong and why, in one line."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "args"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def envelope(success: bool, result: Any, error: str | None, execution_id: str) -> dict[str, Any]:
    """The contract's response body."""
    return {
        "success": success,
        "result": result,
        "error": error,
        "metadata": {"executionId": execution_id},
    }


async def invoke(
    targets: dict[str, Target], execution_id: str, name: str, args: dict[str, Any]
) -> dict[str, Any]:
    """Run one call to completion and turn its outcome into the response body."""
    target = targets.get(name)
    if target is None:
        return envelope(False, None, f"Function '{name}' not found", execution_id)
    try:
        kwargs = target.validate(args)
    except ValidationError as exc:
        message = f"Invalid arguments for function '{name}': {describe_validation_error(exc)}"
        return envelope(False, None, message, execution_id)
    call: Awaitable[Any]
    if target.is_async:
        call = target.func(**kwargs)
    else:
        call = asyncio.get_running_loop().run_in_executor(None, partial(target.func, **kwargs))
    try:
        result = await asyncio.wait_for(call, TIMEOUT)
    except TimeoutError:
        message = f"Function '{name}' execution timed out after {TIMEOUT} seconds"
        return envelope(False, None, message, execution_id)
    except Exception as exc:
        return envelope(False, None, f"Function execution failed: {exc}", execution_id)
    return envelope(True, result, None, execution_id)


def ready_body(targets: dict[str, Target]) -> dict[str, Any]:
    """The `/ready` body of a peer (peers never talk to a broker)."""
    return {
        "status": "ready",
        "deployment_id": DEPLOYMENT_ID,
        "function_count": len(targets),
        "functions": list(targets),
        "rabbitmq_enabled": False,
        "rabbitmq_connected": False,
    }


def settings_host_port() -> tuple[str, int]:
    """Bind address from the same variables the SDK reads."""
    return (
        os.environ.get("CRBR_FUNCTIONS_HOST", "0.0.0.0"),
        int(os.environ.get("CRBR_FUNCTIONS_PORT", "8000")),
    )


async def serve_hypercorn(app: Any) -> None:
    """Serve an ASGI app in-process on Hypercorn, as the SDK's runner does; stop on SIGTERM."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    host, port = settings_host_port()
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.backlog = 2048
    config.accesslog = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)
