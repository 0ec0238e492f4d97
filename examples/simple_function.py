"""Example functions, ported from the platform's first SDK.

Serve them with ``python -m metatwin_functions serve examples.simple_function`` or
``python examples/main.py``.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from metatwin_functions import Function, current_execution

logger = logging.getLogger(__name__)

_INVOICES = [
    {"id": 1, "amount": 120.0, "paid": True},
    {"id": 2, "amount": 80.5, "paid": False},
    {"id": 3, "amount": 42.0, "paid": True},
    {"id": 4, "amount": 310.0, "paid": False},
    {"id": 5, "amount": 15.25, "paid": True},
]


@Function(name="count_invoices", description="Counts all invoices")
async def count_invoices(includePaid: bool) -> int:  # noqa: N803 - the platform's argument name
    """Count invoices, optionally leaving out the paid ones."""
    return sum(1 for invoice in _INVOICES if includePaid or not invoice["paid"])


@Function(name="add_numbers", description="Adds two numbers together")
async def add_numbers(a: int, b: int) -> int:
    """Add two numbers and return the result."""
    return a + b


@Function(description="Multiply two numbers")
async def multiply(x: float, y: float) -> float:
    """Multiply two numbers."""
    return x * y


@Function
async def echo(message: str) -> str:
    """Echo a message back."""
    return f"Echo: {message}"


@Function(name="generate_user")
async def generate_user(user_id: int, name: str = "John Doe") -> dict[str, Any]:
    """Build a user record (datetimes are converted to ISO 8601 strings)."""
    return {
        "id": user_id,
        "name": name,
        "email": f"{name.lower().replace(' ', '.')}@example.com",
        "created_at": datetime.now(UTC),
        "tags": ["premium", "verified"],
        "metadata": {"preferences": {"theme": "dark"}},
    }


@Function(name="calculate_stats")
async def calculate_stats(numbers: list[float]) -> dict[str, float]:
    """Compute count, sum, mean, median, min and max of a list of numbers."""
    if not numbers:
        raise ValueError("numbers must not be empty")
    return {
        "count": len(numbers),
        "sum": sum(numbers),
        "mean": statistics.fmean(numbers),
        "median": statistics.median(numbers),
        "min": min(numbers),
        "max": max(numbers),
    }


@Function(name="process_data", timeout=60)
async def process_data(items: int, delay: float = 0.1) -> dict[str, Any]:
    """Simulate processing a batch of items (may take up to a minute)."""
    execution = current_execution()
    logger.info("Processing %d items", items)
    await asyncio.sleep(delay)
    return {
        "processed_items": items,
        "status": "completed",
        "execution_id": execution.execution_id if execution else None,
    }


@Function(name="divide")
async def divide(a: float, b: float) -> float:
    """Divide a by b; dividing by zero fails."""
    if b == 0:
        raise ValueError("Cannot divide by zero!")
    return a / b


@Function(name="slow_operation", timeout=5)
async def slow_operation(seconds: float = 1.0) -> str:
    """Sleep for the given number of seconds (times out after 5)."""
    await asyncio.sleep(seconds)
    return f"Slept for {seconds} seconds"


@Function(name="word_count")
def word_count(text: str) -> int:
    """Count the words of a text (a plain def: it runs on the thread pool)."""
    return len(text.split())


@Function(name="blocking_sleep", timeout=10)
def blocking_sleep(seconds: float = 0.5) -> dict[str, Any]:
    """Block a thread for the given seconds (a plain def; never blocks the server)."""
    time.sleep(seconds)
    execution = current_execution()
    return {"slept": seconds, "execution_id": execution.execution_id if execution else None}
