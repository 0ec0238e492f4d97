"""The calls the benchmark makes, and the correctness checks run before any load."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from typing import Any

from load import HOST, call, unique_id

__all__ = [
    "ADD_BODY",
    "BURST_BODY",
    "WORD_BODY",
    "CheckError",
    "check_server",
    "warm_up",
]

ADD_BODY = json.dumps(
    {"executionId": "bench-add", "functionName": "add_numbers", "args": {"a": 5, "b": 3}}
)
WORD_BODY = json.dumps(
    {
        "executionId": "bench-word",
        "functionName": "word_count",
        "args": {"text": "the quick brown fox jumps over the lazy dog"},
    }
)
BURST_BODY = json.dumps(
    {"executionId": "burst", "functionName": "slow_operation", "args": {"seconds": 1.0}}
)
FUNCTIONS = {"add_numbers", "slow_operation", "word_count"}


class CheckError(RuntimeError):
    """A server answered a benchmark call wrongly: its numbers would mean nothing."""


def _body(name: str, args: dict[str, Any], execution_id: str = "check") -> str:
    return json.dumps({"executionId": execution_id, "functionName": name, "args": args})


def _success(result: Any, execution_id: str = "check") -> Callable[[Any], bool]:
    """A success envelope whose result equals ``result`` (or satisfies it, when callable)."""

    def result_ok(value: Any) -> bool:
        return bool(result(value)) if callable(result) else value == result

    def ok(data: Any) -> bool:
        return (
            isinstance(data, dict)
            and data.get("success") is True
            and result_ok(data.get("result"))
            and data.get("error") is None
            and isinstance(data.get("metadata"), dict)
            and data["metadata"].get("executionId") == execution_id
        )

    return ok


def _failure(error_prefix: str, execution_id: str) -> Callable[[Any], bool]:
    def ok(data: Any) -> bool:
        return (
            isinstance(data, dict)
            and data.get("success") is False
            and data.get("result") is None
            and str(data.get("error", "")).startswith(error_prefix)
            and data.get("metadata", {}).get("executionId") == execution_id
        )

    return ok


def _ready(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and data.get("status") == "ready"
        and set(data.get("functions", [])) >= FUNCTIONS
    )


# (what, method, path, body, predicate): every body the load sends is among them, verbatim.
CHECKS: list[tuple[str, str, str, str | None, Callable[[Any], bool]]] = [
    ("GET /ready", "GET", "/ready", None, _ready),
    ("add_numbers (load body)", "POST", "/exec", ADD_BODY, _success(8, "bench-add")),
    ("word_count (load body)", "POST", "/exec", WORD_BODY, _success(9, "bench-word")),
    (
        "slow_operation 0.01 s",
        "POST",
        "/exec",
        _body("slow_operation", {"seconds": 0.01}, "check-slow"),
        _success(lambda value: isinstance(value, str), "check-slow"),
    ),
    (
        "empty executionId echoed",
        "POST",
        "/exec",
        _body("add_numbers", {"a": 1, "b": 2}, ""),
        _success(3, ""),
    ),
    (
        "unknown function",
        "POST",
        "/exec",
        _body("no_such_function", {}, "check-unknown"),
        _failure("Function 'no_such_function' not found", "check-unknown"),
    ),
    (
        "bad argument type",
        "POST",
        "/exec",
        _body("add_numbers", {"a": "five", "b": 3}, "check-bad"),
        _failure("Invalid arguments for function 'add_numbers'", "check-bad"),
    ),
]


def check_server(port: int) -> None:
    """Every check call must get HTTP 200 and the right envelope, else `CheckError`."""
    for what, method, path, body, predicate in CHECKS:
        try:
            status, data = call(port, method, path, body)
        except OSError as exc:
            raise CheckError(f"{what}: {type(exc).__name__}: {exc}") from exc
        if status != 200 or not predicate(data):
            raise CheckError(f"{what}: HTTP {status} {str(data)[:300]}")


def warm_up(port: int, rounds: int = 50) -> None:
    """A few sequential calls on one keep-alive connection: imports and caches settle."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        for n in range(rounds):
            call(port, "POST", "/exec", unique_id(ADD_BODY, f"warm-{n}"), conn=connection)
            call(port, "POST", "/exec", unique_id(WORD_BODY, f"warm-{n}"), conn=connection)
    finally:
        connection.close()
