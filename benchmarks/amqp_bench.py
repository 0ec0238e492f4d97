"""Execution over RabbitMQ: throughput, CPU per call, end-to-end latency, and scaling by replicas.

Run from the repository root with the broker on 127.0.0.1:5672 (guest/guest):

    python benchmarks/amqp_bench.py            # about a minute
    python benchmarks/amqp_bench.py --quick    # about 25 s

Replicas are real server processes (``python -m metatwin_functions serve
examples.simple_function``) as deployed: JSON logs at INFO to a file, events on (each call's
completed event is confirmed before its message is acked), ``CRBR_AMQP_EXEC_PREFETCH`` 16, on a
fresh deployment id and exchange (deleted afterwards). The caller is this process: aio-pika,
one exclusive reply queue, ``reply_to`` and a ``correlation_id`` on every request.

1. One replica, ``add_numbers``: a closed loop of ``--concurrency`` calls in flight for
   ``--seconds`` s after a warm-up: calls per second, the replica's CPU per call (user + system
   from ``/proc``, and the broker's when ``beam.smp`` is visible), and end-to-end latency (publish
   to reply) p50/p99; then the same latency with one call at a time.
2. Scaling: 1,000 calls of ``slow_operation(seconds=0.1)`` published at once, drained by 1, 2 and
   3 replicas: wall time from the first publish to the last reply.

Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from metatwin_functions.amqp import execute_routing_key  # noqa: E402

BROKER = "amqp://guest:guest@127.0.0.1:5672/"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def broker_pid() -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    return int(entry.name)
            except OSError:
                continue
    return None


class Replica:
    """One server process consuming the deployment's execution queue."""

    def __init__(self, deployment: str, exchange: str, log_dir: Path, index: int) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRBR_")}
        env.update(
            {
                "PYTHONPATH": str(REPO),
                "CRBR_DEPLOYMENT_ID": deployment,
                "CRBR_FUNCTIONS_HOST": "127.0.0.1",
                "CRBR_FUNCTIONS_PORT": str(self.port),
                "CRBR_AMQP_EXEC_ENABLED": "true",
                "CRBR_AMQP_EXEC_PREFETCH": "16",
                "CRBR_RABBITMQ_HOSTNAME": "127.0.0.1",
                "CRBR_RABBITMQ_USERNAME": "guest",
                "CRBR_RABBITMQ_PASSWORD": "guest",
                "CRBR_RABBITMQ_EXCHANGE": exchange,
            }
        )
        self.log = (log_dir / f"replica-{index}.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "metatwin_functions", "serve", "examples.simple_function"],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_consuming(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"replica exited early, see {self.log.name}")
            try:
                url = f"http://127.0.0.1:{self.port}/ready"
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if json.loads(answer.read())["amqp_exec"]["consuming"]:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"replica not consuming after {timeout} s, see {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


class Caller:
    """Publishes requests with ``reply_to`` and resolves one future per correlation id."""

    def __init__(self, deployment: str, exchange: str) -> None:
        self.routing_key = execute_routing_key(deployment)
        self.exchange_name = exchange
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.exchange: aio_pika.abc.AbstractExchange | None = None
        self.reply_queue = ""

    async def open(self) -> aio_pika.abc.AbstractConnection:
        connection = await aio_pika.connect(BROKER)
        channel = await connection.channel(publisher_confirms=True)
        self.exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.consume(self._on_reply, no_ack=True)
        self.reply_queue = queue.name
        return connection

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self.waiting.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            if not json.loads(message.body)["success"]:
                future.set_exception(RuntimeError(message.body.decode()))
            else:
                future.set_result(time.perf_counter())

    async def call(self, function: str, args: dict[str, Any]) -> float:
        """One call; returns its end-to-end latency in seconds."""
        assert self.exchange is not None
        execution_id = uuid.uuid4().hex
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[execution_id] = future
        body = json.dumps({"executionId": execution_id, "functionName": function, "args": args})
        started = time.perf_counter()
        await self.exchange.publish(
            aio_pika.Message(
                body.encode(),
                content_type="application/json",
                correlation_id=execution_id,
                reply_to=self.reply_queue,
            ),
            self.routing_key,
        )
        async with asyncio.timeout(120):
            return await future - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def closed_loop(caller: Caller, concurrency: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < end:
            latencies.append(await caller.call("add_numbers", {"a": 5, "b": 3}))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def throughput(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    deployment, exchange = f"bench-amqp-{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}"
    replica = Replica(deployment, exchange, log_dir, 0)
    caller = Caller(deployment, exchange)
    connection = await caller.open()
    try:
        await asyncio.to_thread(replica.wait_consuming)
        await closed_loop(caller, args.concurrency, 1.0)  # warm-up
        beam = broker_pid()
        cpu0 = cpu_seconds(replica.process.pid)
        beam0 = cpu_seconds(beam) if beam else 0.0
        own0 = time.process_time()
        wall0 = time.perf_counter()
        latencies = await closed_loop(caller, args.concurrency, args.seconds)
        wall = time.perf_counter() - wall0
        calls = len(latencies)
        replica_cpu = cpu_seconds(replica.process.pid) - cpu0
        broker_cpu = cpu_seconds(beam) - beam0 if beam else None
        caller_cpu = time.process_time() - own0
        single = [await caller.call("add_numbers", {"a": 5, "b": 3}) for _ in range(args.single)]
        return {
            "concurrency": args.concurrency,
            "calls": calls,
            "calls_per_second": calls / wall,
            "replica_cpu_ms_per_call": replica_cpu / calls * 1000,
            "broker_cpu_ms_per_call": None if broker_cpu is None else broker_cpu / calls * 1000,
            "caller_cpu_ms_per_call": caller_cpu / calls * 1000,
            "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "single_p50_ms": statistics.median(single) * 1000,
            "single_p99_ms": percentile(single, 0.99) * 1000,
        }
    finally:
        await cleanup(connection, deployment, exchange)
        replica.stop()


async def scaling(replicas: int, calls: int, log_dir: Path) -> dict[str, Any]:
    deployment, exchange = f"bench-amqp-{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}"
    started = [Replica(deployment, exchange, log_dir, i) for i in range(replicas)]
    caller = Caller(deployment, exchange)
    connection = await caller.open()
    try:
        await asyncio.gather(*(asyncio.to_thread(r.wait_consuming) for r in started))
        wall0 = time.perf_counter()
        await asyncio.gather(
            *(caller.call("slow_operation", {"seconds": 0.1}) for _ in range(calls))
        )
        wall = time.perf_counter() - wall0
        return {
            "replicas": replicas,
            "calls": calls,
            "wall_s": wall,
            "calls_per_second": calls / wall,
            "ideal_s": calls * 0.1 / (16 * replicas),
        }
    finally:
        await cleanup(connection, deployment, exchange)
        for replica in started:
            replica.stop()


async def cleanup(
    connection: aio_pika.abc.AbstractConnection, deployment: str, exchange: str
) -> None:
    channel = await connection.channel()
    await channel.queue_delete(f"metatwin-functions.exec.{deployment}")
    await channel.exchange_delete(exchange)
    await connection.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--single", type=int, default=300)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.single = 4.0, 100
    with tempfile.TemporaryDirectory(prefix="amqp-bench-") as logs:
        log_dir = Path(logs)
        figures: dict[str, Any] = {"throughput": await throughput(args, log_dir), "scaling": []}
        t = figures["throughput"]
        print(
            f"one replica, {t['concurrency']} calls in flight: {t['calls_per_second']:.0f} calls/s"
            f"; CPU per call: replica {t['replica_cpu_ms_per_call']:.3f} ms"
            + (
                f", broker {t['broker_cpu_ms_per_call']:.3f} ms"
                if t["broker_cpu_ms_per_call"] is not None
                else ""
            )
            + f", caller {t['caller_cpu_ms_per_call']:.3f} ms"
        )
        print(
            f"end-to-end latency: p50 {t['p50_ms']:.2f} ms, p99 {t['p99_ms']:.2f} ms under load; "
            f"one at a time p50 {t['single_p50_ms']:.2f} ms, p99 {t['single_p99_ms']:.2f} ms"
        )
        print(f"\n{args.calls} calls of slow_operation(0.1), prefetch 16 per replica:")
        print("| replicas | wall time | calls/s | ideal (calls x 0.1 s / 16 / replicas) |")
        print("|---|---|---|---|")
        for replicas in (1, 2, 3):
            row = await scaling(replicas, args.calls, log_dir)
            figures["scaling"].append(row)
            print(
                f"| {replicas} | {row['wall_s']:.2f} s | {row['calls_per_second']:.0f} | "
                f"{row['ideal_s']:.2f} s |"
            )
        if args.json is not None:
            args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
