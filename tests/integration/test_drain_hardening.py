"""SIGTERM meets hostile clients: a body that crawls, a declared 100 MB that never comes."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator

import pytest
from server_process import ServerProcess

SERVE_EXAMPLES = ("-m", "metatwin_functions", "serve", "examples.simple_function")


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    process = ServerProcess(
        *SERVE_EXAMPLES,
        env={"CRBR_FUNCTIONS_BODY_TIMEOUT": "2", "CRBR_DEPLOYMENT_ID": "drain-test"},
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def open_request(port: int, headers: str, body_start: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        f"POST /exec HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{headers}\r\n".encode()
        + body_start
    )
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed without an answer: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest


def test_a_declared_length_over_the_limit_is_413_at_once(server: ServerProcess) -> None:
    sock = open_request(server.port, "Content-Length: 100000000\r\n", b"")
    started = time.monotonic()
    try:
        status, headers, body = read_answer(sock)
    finally:
        sock.close()
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["metadata"]["errorKind"] == "too_large"
    assert time.monotonic() - started < 2


def test_sigterm_while_a_body_crawls_answers_408_json_and_exits_promptly(
    server: ServerProcess,
) -> None:
    body = b'{"executionId": "slow-body", "functionName": "add_numbers", "args": {"a": 1, "b": 2}}'
    sock = open_request(server.port, f"Content-Length: {len(body)}\r\n", body[:10])
    try:
        time.sleep(0.3)  # the request is admitted and its body is on its way
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        status, headers, answer = read_answer(sock)
    finally:
        sock.close()
    assert status == 408
    assert headers["content-type"] == "application/json"
    payload = json.loads(answer)
    assert payload["success"] is False
    assert payload["metadata"]["errorKind"] == "body_timeout"
    assert server.wait(timeout=15) == 0
    assert time.monotonic() - started < 8  # the body timeout (2 s) bounds the drain
    assert "CancelledError" not in server.output
    assert "Traceback" not in server.output
