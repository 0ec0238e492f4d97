"""Functions the replica processes of the AMQP tests serve (``serve tests/integration/...``)."""

from __future__ import annotations

import asyncio
import os

from metatwin_functions import Function, current_execution


@Function
async def work(seconds: float = 0.0) -> dict[str, int]:
    """Sleep, then say which process answered."""
    execution = current_execution()
    # A line the test waits for, to act while the call is in flight.
    print(f"WORK-STARTED {execution.execution_id if execution else '?'}", flush=True)
    await asyncio.sleep(seconds)
    return {"pid": os.getpid()}
