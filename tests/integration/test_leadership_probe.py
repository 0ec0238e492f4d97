"""The leader's probe loop against the real broker: it leaves nothing behind on its connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from metatwin_functions import leadership
from metatwin_functions.leadership import BrokerLeadership
from metatwin_functions.settings import Settings

pytestmark = pytest.mark.broker


async def test_leading_keeps_the_close_callbacks_of_its_connection_constant(
    broker: str,
    make_settings: Callable[..., Settings],
    eventually: Callable[[Callable[[], bool], float], Awaitable[bool]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(leadership, "PROBE_INTERVAL", 0.02)
    lead = BrokerLeadership(make_settings(enable_events=False))
    await lead.start()
    try:
        assert await eventually(lambda: lead.is_leader, 10)
        connection = lead._connection
        assert connection is not None
        await asyncio.sleep(0.1)  # the lead has begun probing
        first = len(connection.close_callbacks)
        counts = []
        for _ in range(10):  # about 25 probes in all
            await asyncio.sleep(0.05)
            counts.append(len(connection.close_callbacks))
        assert lead.is_leader
        assert counts == [first] * 10
    finally:
        await lead.stop()
