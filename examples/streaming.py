"""Streaming functions: generators and progress, served over /exec, /exec/stream and /ws.

Serve them with ``python -m metatwin_functions serve examples.streaming`` and consume them with
``python examples/stream_consumer.py`` (no browser needed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

from metatwin_functions import Function, current_execution


@Function(description="Counts from 0 to n - 1, one item at a time")
async def count_to(n: int, pause: float = 0.0) -> AsyncIterator[int]:
    for i in range(n):
        yield i
        if pause:
            await asyncio.sleep(pause)


@Function(description="Reads rows slowly in a thread, reporting progress")
def read_rows(rows: int) -> Iterator[dict[str, int]]:
    context = current_execution()
    for i in range(rows):
        time.sleep(0.05)  # a blocking driver: a plain generator runs on the thread pool
        if context is not None:
            context.progress((i + 1) / rows, f"row {i + 1} of {rows}")
        yield {"row": i, "square": i * i}


@Function(description="Small items as fast as they come (the benchmark's stream)")
async def items(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i
