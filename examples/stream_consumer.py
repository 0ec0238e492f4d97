"""Consume streamed calls without a browser: NDJSON over HTTP, then a WebSocket.

Start the server first: ``python -m metatwin_functions serve examples.streaming``; then
``python examples/stream_consumer.py [http://127.0.0.1:8000]``.
"""

from __future__ import annotations

import asyncio
import sys

from metatwin_functions.stream_client import WebSocketClient, stream_call


async def main(base_url: str) -> None:
    print("-- POST /exec/stream")
    async for event in stream_call(base_url, "read_rows", {"rows": 3}, execution_id="rows-1"):
        print(event)

    print("-- GET /ws: two calls at once, the second cancelled")
    ws_url = base_url.replace("http://", "ws://") + "/ws"
    async with await WebSocketClient.connect(ws_url) as ws:
        await ws.send({"executionId": "a", "functionName": "count_to", "args": {"n": 3}})
        await ws.send(
            {"executionId": "b", "functionName": "count_to", "args": {"n": 100, "pause": 0.1}}
        )
        await ws.send({"type": "cancel", "executionId": "b"})
        results = 0
        while results < 2:
            event = await ws.receive()
            if event is None:
                break
            print(event)
            results += event["type"] == "result"


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"))
