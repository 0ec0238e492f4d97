"""Streams: items per second and server CPU per item over NDJSON and WebSocket; idle socket memory.

Starts ``python -m metatwin_functions serve examples.streaming`` (the SDK as deployed, JSON logs
at WARNING so that only the stream is measured) on 127.0.0.1, then, from this process:

- streams ``items(n=100000)`` (small integers) over ``POST /exec/stream`` and over ``/ws``,
  ``--repeats`` times each: items per second end to end, and the server's CPU time per item
  (``/proc/<pid>/stat``: user + system, so the client's own parsing is not counted);
- opens ``--sockets`` idle WebSockets (each answers one ping first, so it is established) and
  reports the server's resident memory before and after (``/proc/<pid>/status`` VmRSS).

Linux only. Usage: ``python benchmarks/streams.py [--items 100000] [--repeats 3] [--sockets 1000]``.
The client is Python too (`metatwin_functions.stream_client`); on one shared machine items/s is
bounded by whichever side is slower, so the server's CPU per item is the figure to compare.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from metatwin_functions.stream_client import WebSocketClient, stream_call  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def wait_ready(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head = await reader.read(64)
            writer.close()
            if b" 200 " in head:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not become ready")


async def ndjson_run(base: str, items: int) -> int:
    count = 0
    async for event in stream_call(base, "items", {"n": items}):
        if event["type"] == "item":
            count += 1
        elif not event["success"]:
            raise RuntimeError(event)
    return count


async def ws_run(ws: WebSocketClient, items: int, execution_id: str) -> int:
    count = 0
    async for event in ws.call("items", {"n": items}, execution_id=execution_id):
        if event["type"] == "item":
            count += 1
        elif not event["success"]:
            raise RuntimeError(event)
    return count


async def measure(pid: int, port: int, items: int, repeats: int) -> dict[str, dict[str, float]]:
    base = f"http://127.0.0.1:{port}"
    figures: dict[str, dict[str, float]] = {}
    ws = await WebSocketClient.connect(f"ws://127.0.0.1:{port}/ws")
    try:
        for transport in ("ndjson", "websocket"):
            rates, cpu = [], []
            for repeat in range(repeats):
                cpu_before, started = cpu_seconds(pid), time.perf_counter()
                if transport == "ndjson":
                    got = await ndjson_run(base, items)
                else:
                    got = await ws_run(ws, items, f"bench-{repeat}")
                elapsed, used = time.perf_counter() - started, cpu_seconds(pid) - cpu_before
                if got != items:
                    raise RuntimeError(f"{transport}: {got} items of {items}")
                rates.append(items / elapsed)
                cpu.append(used / items * 1e6)
            figures[transport] = {
                "items_per_second_median": round(statistics.median(rates)),
                "items_per_second_best": round(max(rates)),
                "server_cpu_us_per_item_median": round(statistics.median(cpu), 2),
            }
    finally:
        await ws.close()
    return figures


async def idle_sockets(pid: int, port: int, count: int) -> dict[str, float]:
    await asyncio.sleep(0.5)
    before = rss_mib(pid)
    sockets = []
    try:
        for _ in range(count):
            client = await WebSocketClient.connect(f"ws://127.0.0.1:{port}/ws")
            await client.send({"type": "ping"})
            await client.receive()
            sockets.append(client)
        await asyncio.sleep(1.0)
        after = rss_mib(pid)
    finally:
        await asyncio.gather(*(client.close() for client in sockets))
    return {
        "sockets": count,
        "rss_before_mib": round(before, 1),
        "rss_after_mib": round(after, 1),
        "kib_per_idle_socket": round((after - before) * 1024 / count, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sockets", type=int, default=1000)
    options = parser.parse_args()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CRBR_")} | {
        "CRBR_FUNCTIONS_HOST": "127.0.0.1",
        "CRBR_FUNCTIONS_PORT": str(port),
        "CRBR_DEPLOYMENT_ID": "bench",
        "CRBR_FUNCTIONS_LOG_LEVEL": "WARNING",
        "CRBR_ENABLE_EVENTS": "false",
        "CRBR_FUNCTIONS_TIMEOUT": "120",
        "PYTHONPATH": str(ROOT),
    }
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "metatwin_functions",
        "serve",
        "examples.streaming",
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_ready(port)
        report = {
            "items": options.items,
            "repeats": options.repeats,
            "streams": await measure(server.pid, port, options.items, options.repeats),
            "idle_websockets": await idle_sockets(server.pid, port, options.sockets),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        }
        print(json.dumps(report, indent=2))
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 30)


if __name__ == "__main__":
    asyncio.run(main())
