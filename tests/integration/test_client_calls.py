"""`metatwin_functions.client` and ``metatwin-functions call --url/--amqp`` against a real server
process that serves HTTP and consumes its execution queue on the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from metatwin_functions.amqp import execute_routing_key
from metatwin_functions.cli import main
from metatwin_functions.client import AmqpFunctionClient, HttpFunctionClient
from metatwin_functions.errors import ClientError, ClientTimeoutError

try:
    from .amqp_caller import BROKER_URL
    from .server_process import ServerProcess
except ImportError:
    from amqp_caller import BROKER_URL  # type: ignore[no-redef]
    from server_process import ServerProcess  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.broker

DEPLOYMENT = f"dep-client-{uuid.uuid4().hex[:8]}"
EXCHANGE = f"test.metatwin-client.{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def server(broker: str) -> Iterator[ServerProcess]:
    process = ServerProcess(
        "-m",
        "metatwin_functions",
        "serve",
        "examples.simple_function",
        env={
            "CRBR_DEPLOYMENT_ID": DEPLOYMENT,
            "CRBR_AMQP_EXEC_ENABLED": "true",
            "CRBR_RABBITMQ_HOSTNAME": "127.0.0.1",
            "CRBR_RABBITMQ_USERNAME": "guest",
            "CRBR_RABBITMQ_PASSWORD": "guest",
            "CRBR_RABBITMQ_EXCHANGE": EXCHANGE,
        },
    )
    try:
        process.wait_ready()
        deadline = time.monotonic() + 15
        while not httpx.get(process.base_url + "/ready").json()["amqp_exec"]["consuming"]:
            assert time.monotonic() < deadline, process.output
            time.sleep(0.05)
        yield process
    finally:
        process.stop()
        asyncio.run(_delete_topology())


async def _delete_topology() -> None:
    connection = await aio_pika.connect(BROKER_URL)
    channel = await connection.channel()
    await channel.queue_delete(f"metatwin-functions.exec.{DEPLOYMENT}")
    await channel.exchange_delete(EXCHANGE)
    await connection.close()


@pytest.fixture
async def amqp_client(server: ServerProcess) -> AsyncIterator[AmqpFunctionClient]:
    async with AmqpFunctionClient(
        BROKER_URL, deployment_id=DEPLOYMENT, exchange=EXCHANGE, timeout=10
    ) as client:
        yield client


async def test_http_client_returns_the_answer_and_the_status(server: ServerProcess) -> None:
    client = HttpFunctionClient(server.base_url)
    response = await client.call("add_numbers", {"a": 3, "b": 5}, execution_id="h-1")
    assert (response.success, response.result, response.status) == (True, 8, 200)
    assert response.execution_id == "h-1"
    missing = await client.call("nope")
    assert (missing.success, missing.error_kind) == (False, "not_found")
    refused = client.call_sync_envelope({"executionId": 5, "functionName": "x"})
    assert (refused.status, refused.error_kind) == (422, "invalid_envelope")


async def test_amqp_client_calls_concurrently_and_gets_each_answer(
    amqp_client: AmqpFunctionClient,
) -> None:
    responses = await asyncio.gather(
        *(amqp_client.call("add_numbers", {"a": i, "b": 1}) for i in range(50))
    )
    assert [r.result for r in responses] == [i + 1 for i in range(50)]
    assert all(r.status is None for r in responses)
    failed = await amqp_client.call("divide", {"a": 1, "b": 0})
    assert failed.error_kind == "execution_failed"


async def test_amqp_client_without_a_consumer_for_the_deployment_fails_at_once(
    server: ServerProcess,
) -> None:
    async with AmqpFunctionClient(BROKER_URL, deployment_id="nobody", exchange=EXCHANGE) as client:
        with pytest.raises(ClientError, match="no queue is bound"):
            await client.call("add_numbers", {"a": 1, "b": 2})


async def test_amqp_client_gives_up_at_its_deadline(server: ServerProcess) -> None:
    # A queue bound for the deployment that nobody consumes.
    deployment = f"idle-{uuid.uuid4().hex[:6]}"
    connection = await aio_pika.connect(BROKER_URL)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(EXCHANGE, execute_routing_key(deployment))
    try:
        async with AmqpFunctionClient(
            BROKER_URL, deployment_id=deployment, exchange=EXCHANGE
        ) as client:
            with pytest.raises(ClientTimeoutError, match=r"within 0\.3 s"):
                await client.call("add_numbers", {"a": 1, "b": 2}, timeout=0.3)
    finally:
        await connection.close()


async def test_amqp_client_sends_its_deadline_as_expiration_and_the_publishing_time(
    server: ServerProcess,
) -> None:
    deployment = f"idle-{uuid.uuid4().hex[:6]}"
    connection = await aio_pika.connect(BROKER_URL)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(EXCHANGE, execute_routing_key(deployment))
    try:
        async with AmqpFunctionClient(
            BROKER_URL, deployment_id=deployment, exchange=EXCHANGE
        ) as client:
            arrived: asyncio.Future[aio_pika.abc.AbstractIncomingMessage] = (
                asyncio.get_running_loop().create_future()
            )
            await queue.consume(arrived.set_result, no_ack=True)  # before it expires
            before = time.time()
            with pytest.raises(ClientTimeoutError):
                await client.call("add_numbers", {"a": 1, "b": 2}, timeout=0.5)
        message = await asyncio.wait_for(arrived, 5)
        assert message.expiration == 0.5
        assert message.timestamp is not None
        # Whole seconds on the wire: published at most a second after the timestamp.
        assert before - 1 <= message.timestamp.timestamp() <= before + 1
    finally:
        await connection.close()


async def test_amqp_client_to_a_missing_exchange_says_so() -> None:
    client = AmqpFunctionClient(BROKER_URL, exchange=f"missing-{uuid.uuid4().hex}")
    with pytest.raises(ClientError, match="cannot use exchange"):
        await client.connect()


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_cli_calls_a_deployment_over_http(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, answer = _cli(["call", "--url", server.base_url, "add_numbers", "a=3", "b=5"], capsys)
    assert (code, answer["result"]) == (0, 8)
    code, answer = _cli(["call", "--url", server.base_url, "divide", "a=1", "b=0"], capsys)
    assert code == 1
    assert answer["metadata"]["errorKind"] == "execution_failed"


def test_cli_calls_a_deployment_over_amqp(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["call", "--amqp", BROKER_URL, "--deployment-id", DEPLOYMENT, "--exchange", EXCHANGE]
    code, answer = _cli([*argv, "--execution-id", "cli-1", "echo", "message=hi"], capsys)
    assert (code, answer["result"], answer["metadata"]["executionId"]) == (0, "Echo: hi", "cli-1")


def test_cli_over_amqp_takes_the_deployment_and_exchange_from_dotenv(
    server: ServerProcess,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / ".env").write_text(
        f"CRBR_DEPLOYMENT_ID={DEPLOYMENT}\nCRBR_RABBITMQ_EXCHANGE={EXCHANGE}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRBR_DEPLOYMENT_ID", raising=False)
    monkeypatch.delenv("CRBR_RABBITMQ_EXCHANGE", raising=False)
    code, answer = _cli(["call", "--amqp", BROKER_URL, "echo", "message=env"], capsys)
    assert (code, answer["result"]) == (0, "Echo: env")


def test_cli_says_when_no_deployment_answers(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["call", "--amqp", BROKER_URL, "--deployment-id", "nobody", "--exchange", "amq.topic"]
    assert main([*argv, "echo", "message=hi"]) == 2
    assert "no queue is bound" in capsys.readouterr().err


def test_the_client_example_runs_as_written(server: ServerProcess) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "examples/amqp_client.py",
            "--deployment-id",
            DEPLOYMENT,
            "--exchange",
            EXCHANGE,
            "--url",
            server.base_url,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "amqp: [1, 2, 3, 4, 5]",
        "amqp: False execution_failed Function execution failed: Cannot divide by zero!",
        "http: True 8.0 200",
    ]
