"""The rows of the table: what each one runs and with which environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

__all__ = ["OTLP_STUB_PORT", "REPO", "ROWS", "Row", "base_env", "baseline_rows", "unavailable"]

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO / "benchmarks" / "peers"
SDK_MODULE = "examples.simple_function"
BROKER = ("127.0.0.1", 5672)
# A fresh exchange per run, so the events row never publishes into the platform's own.
_EXCHANGE = f"bench-{uuid.uuid4().hex[:12]}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Where the harness runs its OTLP collector stub (benchmarks/otlp_stub.py) during a run.
OTLP_STUB_PORT = _free_port()

_API_KEY = "bench-key-0123456789abcdef"
_API_KEYS = ",".join([*(f"other-key-{n:02d}-0123456789:reader" for n in range(9)), _API_KEY])


@dataclass(frozen=True, slots=True)
class Row:
    """One server set-up, measured the same way as every other."""

    name: str
    about: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    needs_sdk: bool = False
    needs_broker: bool = False
    needs_uvicorn: bool = False
    needs_otel: bool = False
    #: Headers every request to this row carries (the API-key row's credentials).
    headers: dict[str, str] = field(default_factory=dict)
    #: Working directory of the server (default: the repository root).
    cwd: Path | None = None


# The SDK as deployed: its own CLI and default runner, cwd = the repository root.
SDK_ARGV = (sys.executable, "-m", "metatwin_functions", "serve", SDK_MODULE)


def _peer(script: str) -> tuple[str, ...]:
    return (sys.executable, str(PEERS / script))


ROWS: dict[str, Row] = {
    row.name: row
    for row in (
        Row(
            "sdk-info",
            "SDK default runner, JSON logs at INFO (as deployed)",
            SDK_ARGV,
            {"CRBR_FUNCTIONS_LOG_LEVEL": "INFO"},
            needs_sdk=True,
        ),
        Row(
            "sdk-warning",
            "SDK default runner, JSON logs at WARNING",
            SDK_ARGV,
            {"CRBR_FUNCTIONS_LOG_LEVEL": "WARNING"},
            needs_sdk=True,
        ),
        Row(
            "sdk-info-lean",
            "sdk-info with metrics and idempotency off: what the default features cost",
            SDK_ARGV,
            {
                "CRBR_FUNCTIONS_LOG_LEVEL": "INFO",
                "CRBR_METRICS_ENABLED": "false",
                "CRBR_IDEMPOTENCY_TTL": "0",
            },
            needs_sdk=True,
        ),
        Row(
            "sdk-info-no-idempotency",
            "sdk-info with idempotency off (CRBR_IDEMPOTENCY_TTL=0)",
            SDK_ARGV,
            {"CRBR_FUNCTIONS_LOG_LEVEL": "INFO", "CRBR_IDEMPOTENCY_TTL": "0"},
            needs_sdk=True,
        ),
        Row(
            "sdk-info-no-metrics",
            "sdk-info with metrics off (CRBR_METRICS_ENABLED=false)",
            SDK_ARGV,
            {"CRBR_FUNCTIONS_LOG_LEVEL": "INFO", "CRBR_METRICS_ENABLED": "false"},
            needs_sdk=True,
        ),
        Row(
            "sdk-info-tracing-unreachable",
            "sdk-info with tracing on, exporting to a port where nothing listens",
            SDK_ARGV,
            {
                "CRBR_FUNCTIONS_LOG_LEVEL": "INFO",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_free_port()}",
            },
            needs_sdk=True,
            needs_otel=True,
        ),
        Row(
            "sdk-info-tracing-stub",
            "sdk-info with tracing on, exporting to a local OTLP/HTTP collector stub",
            SDK_ARGV,
            {
                "CRBR_FUNCTIONS_LOG_LEVEL": "INFO",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{OTLP_STUB_PORT}",
            },
            needs_sdk=True,
            needs_otel=True,
        ),
        Row(
            "sdk-info-apikey",
            "sdk-info with API-key auth on (10 keys configured, X-API-Key on every call)",
            SDK_ARGV,
            {"CRBR_FUNCTIONS_LOG_LEVEL": "INFO", "CRBR_AUTH_API_KEYS": _API_KEYS},
            needs_sdk=True,
            headers={"X-API-Key": _API_KEY},
        ),
        Row(
            "sdk-events",
            "sdk-info with events on (broker on 127.0.0.1:5672, guest/guest)",
            SDK_ARGV,
            {
                "CRBR_FUNCTIONS_LOG_LEVEL": "INFO",
                "CRBR_RABBITMQ_HOSTNAME": BROKER[0],
                "CRBR_RABBITMQ_PORT": str(BROKER[1]),
                "CRBR_RABBITMQ_USERNAME": "guest",
                "CRBR_RABBITMQ_PASSWORD": "guest",
                "CRBR_RABBITMQ_EXCHANGE": _EXCHANGE,
            },
            needs_sdk=True,
            needs_broker=True,
        ),
        Row(
            "sdk-uvicorn-info",
            "SDK on uvicorn (httptools, uvloop), JSON logs at INFO",
            SDK_ARGV,
            {"CRBR_FUNCTIONS_LOG_LEVEL": "INFO", "CRBR_FUNCTIONS_SERVER": "uvicorn"},
            needs_sdk=True,
            needs_uvicorn=True,
        ),
        Row(
            "sdk-uvicorn-warning",
            "SDK on uvicorn (httptools, uvloop), JSON logs at WARNING",
            SDK_ARGV,
            {"CRBR_FUNCTIONS_LOG_LEVEL": "WARNING", "CRBR_FUNCTIONS_SERVER": "uvicorn"},
            needs_sdk=True,
            needs_uvicorn=True,
        ),
        Row("quart-bare", "minimal Quart app on the same Hypercorn", _peer("quart_bare.py")),
        Row("asgi-raw", "raw ASGI callable on the same Hypercorn", _peer("asgi_raw.py")),
        Row(
            "fastapi-peer",
            "FastAPI + uvicorn like the first SDK (pydantic models, 2 INFO JSON lines per call)",
            _peer("fastapi_peer.py"),
            {"CRBR_FUNCTIONS_LOG_LEVEL": "INFO"},
        ),
    )
}


def baseline_rows(ref: str, checkout: Path) -> list[Row]:
    """The SDK rows at an older commit, checked out in ``checkout``, for before/after tables.

    ``python -m`` puts the working directory first on ``sys.path``, so a server started in the
    checkout runs that commit's package, not the installed one.
    """
    return [
        Row(
            f"{row.name}@{ref}",
            f"{row.about}, at {ref}",
            row.argv,
            row.env,
            needs_sdk=True,
            cwd=checkout,
        )
        for row in (ROWS["sdk-info"], ROWS["sdk-warning"])
    ]


def base_env(port: int) -> dict[str, str]:
    """The environment of every row: ours, without any CRBR_* the caller happens to have set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRBR_")}
    env.update(
        CRBR_FUNCTIONS_HOST="127.0.0.1",
        CRBR_FUNCTIONS_PORT=str(port),
        CRBR_DEPLOYMENT_ID="bench",  # anything but local-dev: JSON logs, as deployed
    )
    return env


@cache
def _sdk_problem() -> str | None:
    if not (REPO / "examples" / "simple_function.py").is_file():
        return "examples/simple_function.py does not exist"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "metatwin_functions", "serve", "--help"],
            cwd=REPO,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "`python -m metatwin_functions serve --help` did not finish in 30 s"
    if done.returncode != 0:
        return "`python -m metatwin_functions serve --help` failed (no serve CLI yet?)"
    return None


@cache
def _uvicorn_problem() -> str | None:
    # The SDK's [uvicorn] extra; without it the SDK refuses to start on uvicorn, in one line.
    done = subprocess.run(
        [sys.executable, "-c", "import uvicorn, httptools, uvloop"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        return "the [uvicorn] extra is not installed (pip install -e '.[uvicorn]')"
    return None


@cache
def _broker_problem() -> str | None:
    try:
        with socket.create_connection(BROKER, timeout=0.5):
            return None
    except OSError:
        return f"no broker on {BROKER[0]}:{BROKER[1]}"


def unavailable(row: Row) -> str | None:
    """Why a row cannot run on this machine now, or None."""
    if row.needs_sdk and (problem := _sdk_problem()):
        return problem
    if row.needs_broker and (problem := _broker_problem()):
        return problem
    if row.needs_uvicorn and (problem := _uvicorn_problem()):
        return problem
    if row.needs_otel and (problem := _otel_problem()):
        return problem
    return None


@cache
def _otel_problem() -> str | None:
    # The SDK's [otel] extra; without it, tracing is off and the row would measure nothing new.
    done = subprocess.run(
        [sys.executable, "-c", "import opentelemetry.sdk, opentelemetry.exporter.otlp"],
        capture_output=True,
        check=False,
    )
    return None if done.returncode == 0 else "the otel extra is not installed"
