"""Versions side by side and functions that run by themselves.

Serve with ``python -m metatwin_functions serve examples.versions_and_schedules``; describe with
``python -m metatwin_functions describe --json examples.versions_and_schedules``.
"""

from __future__ import annotations

import logging
from typing import Literal

from metatwin_functions import Function, current_execution

logger = logging.getLogger(__name__)


@Function("quote", version="1.0.0")
async def quote_v1(sku: str, quantity: int) -> float:
    """Price of an order line, in EUR."""
    return 9.99 * quantity


@Function("quote", version="2.0.0")
async def quote_v2(sku: str, quantity: int, currency: Literal["EUR", "USD"] = "EUR") -> dict:
    """Price of an order line, in the currency asked for."""
    rate = 1.0 if currency == "EUR" else 1.08
    return {"sku": sku, "amount": round(9.99 * quantity * rate, 2), "currency": currency}


@Function(schedule="*/5 * * * *", schedule_args={"older_than_days": 30})
async def purge_exports(older_than_days: int) -> int:
    """Deletes old exports every five minutes (UTC)."""
    execution = current_execution()
    logger.info("purging exports older than %d days (%s)", older_than_days, execution)
    return 0


@Function(every=30, schedule_args={"region": "eu"}, timeout=20)
def refresh_rates(region: str) -> str:
    """Refreshes exchange rates every 30 seconds."""
    return f"rates refreshed for {region}"
