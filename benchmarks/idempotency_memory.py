"""What idempotency costs: the memory of a full in-memory store, and the per-call time.

Run from the repository root: ``python benchmarks/idempotency_memory.py`` (a few seconds).
It fills an `InMemoryIdempotencyStore` with 10,000 stored answers of 1 KiB (the default
``CRBR_IDEMPOTENCY_MAX_ENTRIES``), reports the memory it holds (tracemalloc, and the RSS
growth on Linux), then times `call_fingerprint`, a reserve + complete pair and `replayed_body`.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import timeit
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic_core import to_json

from metatwin_functions.idempotency import (
    InMemoryIdempotencyStore,
    call_fingerprint,
    replayed_body,
)

ENTRIES = 10_000
BODY_SIZE = 1024
SMALL_ARGS = {"a": 5, "b": 3}
NESTED_ARGS = {"filter": {"status": "paid", "year": 2026}, "ids": [1, 2, 3], "limit": 50}


def response_body(execution_id: str) -> bytes:
    """An ``/exec`` success body of exactly `BODY_SIZE` bytes."""
    empty = to_json(
        {"success": True, "result": "", "error": None, "metadata": {"executionId": execution_id}}
    )
    return to_json(
        {
            "success": True,
            "result": "x" * (BODY_SIZE - len(empty)),
            "error": None,
            "metadata": {"executionId": execution_id},
        }
    )


def rss_bytes() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


async def fill(store: InMemoryIdempotencyStore) -> None:
    # Every id, fingerprint and body is made here, so what the store keeps is counted.
    for number in range(ENTRIES):
        execution_id = str(uuid.uuid4())
        fingerprint = call_fingerprint("add_numbers", None, {"a": number, "b": 3}, None)
        await store.reserve(execution_id, fingerprint)
        await store.complete(execution_id, fingerprint, response_body(execution_id), store=True)


def measure_memory() -> None:
    gc.collect()
    before_rss = rss_bytes()
    kept = InMemoryIdempotencyStore(ttl=300, max_entries=ENTRIES)
    asyncio.run(fill(kept))
    gc.collect()
    after_rss = rss_bytes()
    assert len(kept) == ENTRIES

    tracemalloc.start()
    traced = InMemoryIdempotencyStore(ttl=300, max_entries=ENTRIES)
    baseline = tracemalloc.get_traced_memory()[0]
    asyncio.run(fill(traced))
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()

    payload = ENTRIES * BODY_SIZE
    print(f"{ENTRIES} stored answers of {BODY_SIZE} B ({payload / 2**20:.2f} MiB of bodies)")
    print(
        f"  tracemalloc: {held / 2**20:.2f} MiB held, "
        f"{held / ENTRIES:.0f} B per answer ({(held - payload) / ENTRIES:.0f} B beyond the body)"
    )
    if before_rss is not None and after_rss is not None:
        print(f"  RSS growth:  {(after_rss - before_rss) / 2**20:.2f} MiB")


def per_call(statement: Callable[[], object], number: int) -> float:
    """Best of five runs, microseconds per call."""
    runs = timeit.repeat(statement, number=number, repeat=5)
    return min(runs) / number * 1e6


def measure_time() -> None:
    small = per_call(lambda: call_fingerprint("add_numbers", None, SMALL_ARGS, None), 200_000)
    nested = per_call(lambda: call_fingerprint("search", "1.0", NESTED_ARGS, "alice"), 100_000)
    body = response_body("e-1")
    replay = per_call(lambda: replayed_body(body), 50_000)

    store = InMemoryIdempotencyStore(ttl=300, max_entries=ENTRIES)
    fingerprint = call_fingerprint("add_numbers", None, SMALL_ARGS, None)
    ids = [str(n) for n in range(100_000)]

    async def cycle() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for execution_id in ids:
            await store.reserve(execution_id, fingerprint)
            await store.complete(execution_id, fingerprint, body, store=True)
        return (loop.time() - start) / len(ids) * 1e6

    pair = asyncio.run(cycle())
    print(f"call_fingerprint, {SMALL_ARGS}: {small:.2f} us")
    print(f"call_fingerprint, nested args: {nested:.2f} us")
    print(f"reserve + complete (stored, at max_entries): {pair:.2f} us")
    print(f"replayed_body of a 1 KiB body: {replay:.2f} us")


if __name__ == "__main__":
    measure_memory()
    measure_time()
