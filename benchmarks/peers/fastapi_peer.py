"""fastapi-peer: FastAPI + uvicorn built the way the platform's first SDK is.

What that SDK does per call, and so does this peer: FastAPI parses the body into a pydantic
``ExecuteRequest`` and serialises an ``ExecuteResponse`` (``response_model``), the CORS middleware
sits in front, the call runs under ``asyncio.wait_for``, and the ``functions`` logger writes two
INFO lines per call as JSON through python-json-logger (plus uvicorn's own access line: it is
started with ``uvicorn.run(app, host, port, log_level="info")``, access log on, as that SDK did).
Arguments are validated through the function's type hints like every other row, and a plain
``def`` runs on Starlette's thread pool.

Run: ``python benchmarks/peers/fastapi_peer.py`` (binds to CRBR_FUNCTIONS_HOST:CRBR_FUNCTIONS_PORT).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

import uvicorn
from bench_functions import (
    DEPLOYMENT_ID,
    TIMEOUT,
    build_targets,
    describe_validation_error,
    ready_body,
    settings_host_port,
)
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel, Field, ValidationError
from pythonjsonlogger.json import JsonFormatter
from starlette.concurrency import run_in_threadpool


class DeploymentJsonFormatter(JsonFormatter):
    """JSON lines with timestamp, level and deployment id, as the first SDK writes them."""

    def add_fields(
        self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_record, record, message_dict)
        log_record["timestamp"] = datetime.now(UTC).isoformat()
        log_record["level"] = record.levelname
        log_record["deployment_id"] = DEPLOYMENT_ID
        log_record["module"] = record.module
        log_record["function"] = record.funcName
        for field in ("levelname", "funcName", "pathname", "lineno"):
            log_record.pop(field, None)


def _setup_logging() -> logging.Logger:
    level = os.environ.get("CRBR_FUNCTIONS_LOG_LEVEL", "INFO").upper()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(DeploymentJsonFormatter("%(timestamp)s %(level)s %(name)s %(message)s"))
    functions_logger = logging.getLogger("functions")
    functions_logger.setLevel(level)
    functions_logger.handlers = [handler]
    functions_logger.propagate = False
    return functions_logger


logger = _setup_logging()
TARGETS = build_targets()


class ExecuteRequest(BaseModel):
    """The platform's request."""

    executionId: str  # noqa: N815 - wire names
    functionName: str  # noqa: N815
    args: dict[str, Any] = Field(default_factory=dict)


class ExecuteResponse(BaseModel):
    """The platform's response."""

    success: bool
    result: Any | None = None
    error: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


app = FastAPI(title="fastapi-peer")
app.add_middleware(
    CORSMiddleware,
    allow_origins=["*"],
    allow_credentials=True,
    allow_methods=["*"],
    allow_headers=["*"],
)


def _failure(request: ExecuteRequest, message: str, status: str) -> ExecuteResponse:
    extra = {
        "execution_id": request.executionId,
        "function_name": request.functionName,
        "status": status,
    }
    logger.error(message, extra=extra)
    return ExecuteResponse(
        success=False, error=message, metadata={"executionId": request.executionId}
    )


@app.post("/exec", response_model=ExecuteResponse)
async def execute(request: ExecuteRequest) -> ExecuteResponse:
    """One call of a function."""
    name = request.functionName
    logger.info(
        f"Executing function: {name}",
        extra={"execution_id": request.executionId, "function_name": name},
    )
    target = TARGETS.get(name)
    if target is None:
        return _failure(request, f"Function '{name}' not found", "error")
    try:
        kwargs = target.validate(request.args)
    except ValidationError as exc:
        message = f"Invalid arguments for function '{name}': {describe_validation_error(exc)}"
        return _failure(request, message, "error")
    try:
        if target.is_async:
            result = await asyncio.wait_for(target.func(**kwargs), TIMEOUT)
        else:
            result = await asyncio.wait_for(run_in_threadpool(target.func, **kwargs), TIMEOUT)
    except TimeoutError:
        message = f"Function '{name}' execution timed out after {TIMEOUT} seconds"
        return _failure(request, message, "timeout")
    except Exception as exc:
        return _failure(request, f"Function execution failed: {exc}", "error")
    logger.info(
        "Function completed successfully",
        extra={"execution_id": request.executionId, "function_name": name, "status": "success"},
    )
    return ExecuteResponse(
        success=True, result=result, metadata={"executionId": request.executionId}
    )


@app.get("/ready")
async def ready() -> dict[str, Any]:
    """Readiness: the functions served."""
    return ready_body(TARGETS)


if __name__ == "__main__":
    host, port = settings_host_port()
    # access_log stays uvicorn's default (on), as in the first SDK; BENCH_FASTAPI_ACCESS_LOG=0
    # switches it off to see what that line costs.
    access_log = os.environ.get("BENCH_FASTAPI_ACCESS_LOG", "1") != "0"
    # h11 and asyncio's loop, as plain `uvicorn` (what that SDK declared) runs them: uvicorn's
    # "auto" would pick httptools and uvloop wherever the SDK's [uvicorn] extra is installed.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=access_log,
        http="h11",
        loop="asyncio",
    )
