"""Load against 127.0.0.1 only: single calls, wrk runs, and the burst of concurrent slow calls."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "HOST",
    "BurstResult",
    "LoadError",
    "WrkResult",
    "burst",
    "call",
    "run_wrk",
    "wrk_path",
]

HOST = "127.0.0.1"
POST_LUA = Path(__file__).with_name("post.lua")


class LoadError(RuntimeError):
    """A load run could not be carried out or its output not read."""


#: Headers every request of the current row carries (e.g. an API key); set by the harness.
EXTRA_HEADERS: dict[str, str] = {}


def unique_id(body: str, suffix: str) -> str:
    """``body`` with ``-<suffix>`` appended to its executionId.

    Every load call gets an id of its own, as the platform's calls do: with the SDK's
    idempotency on, a repeated id would be a replay of a stored answer, not a call.
    """
    data = json.loads(body)
    data["executionId"] = f"{data['executionId']}-{suffix}"
    return json.dumps(data)


def call(
    port: int,
    method: str,
    path: str,
    body: str | None = None,
    timeout: float = 10.0,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, Any]:
    """One request; ``(status, parsed JSON body or raw text)``. Reuses ``conn`` when given."""
    own = conn is None
    connection = conn or http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        headers.update(EXTRA_HEADERS)
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        if own:
            connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw.decode(errors="replace")


def wrk_path() -> str | None:
    """Where wrk is installed, if it is."""
    return shutil.which("wrk")


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What one wrk run measured."""

    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def run_wrk(port: int, body: str, duration: float, connections: int) -> WrkResult:
    """``wrk -t1 -c<connections> -d<duration>s --latency -s post.lua`` against ``/exec``.

    wrk inherits the harness's CPU affinity (CPU 1, away from the server on CPU 0): the same as
    ``taskset -c 1 wrk ...``.
    """
    wrk = wrk_path()
    if wrk is None:
        raise LoadError("wrk is not installed (apt-get install wrk)")
    seconds = max(1, round(duration))
    argv = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(POST_LUA),
        f"http://{HOST}:{port}/exec",
    ]
    env = {**os.environ, "BENCH_BODY": body, "BENCH_UNIQUE_IDS": "1"}
    for n, (name, value) in enumerate(EXTRA_HEADERS.items()):
        env[f"BENCH_HEADER_{n}"] = f"{name}: {value}"
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"wrk did not finish within {seconds + 30} s") from exc
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
            break
    else:
        raise LoadError(f"no summary from wrk (exit {done.returncode}): {done.stderr.strip()}")
    errors = sum(
        data[key]
        for key in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1e3,
        p99_ms=data["p99_us"] / 1e3,
        errors=int(errors),
    )


@dataclass(frozen=True, slots=True)
class BurstResult:
    """``calls`` requests sent at once: wall time until the last answer, and how many failed."""

    calls: int
    wall_s: float
    failed: int
    first_error: str | None


def _decode_chunked(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


def _parse_response(raw: bytes) -> tuple[int, Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _decode_chunked(body)
    return status, json.loads(body)


async def _one_call(port: int, request: bytes, done_at: list[float]) -> str | None:
    """One connection, one request, read to EOF; None when the answer is a success envelope."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    done_at.append(time.perf_counter())
    status, data = _parse_response(raw)
    if status != 200 or not isinstance(data, dict) or data.get("success") is not True:
        return f"HTTP {status}: {str(data)[:200]}"
    return None


def _request(port: int, body: str) -> bytes:
    payload = body.encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in EXTRA_HEADERS.items())
    return (
        f"POST /exec HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"{extra}Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode() + payload


async def _burst(port: int, calls: int, body: str, wait_s: float) -> BurstResult:
    requests = [_request(port, unique_id(body, str(n))) for n in range(calls)]
    done_at: list[float] = []
    started = time.perf_counter()
    tasks = [asyncio.create_task(_one_call(port, request, done_at)) for request in requests]
    finished, pending = await asyncio.wait(tasks, timeout=wait_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    errors: list[str] = [f"not answered within {wait_s:.0f} s"] * len(pending)
    for task in finished:
        exc = task.exception()
        if exc is not None:
            errors.append(f"{type(exc).__name__}: {exc}")
        elif (error := task.result()) is not None:
            errors.append(error)
    wall = (max(done_at) if done_at else time.perf_counter()) - started
    if pending:
        wall = wait_s
    return BurstResult(calls, wall, len(errors), errors[0] if errors else None)


def burst(port: int, calls: int, body: str, timeout: float = 30.0) -> BurstResult:
    """Open ``calls`` connections at once, each POSTing ``body`` once; bounded by ``timeout``."""
    return asyncio.run(_burst(port, calls, body, timeout))
