"""A replica with one function ticking every second, for the scheduler election tests.

The result says which process ran the tick and how late the run started after its tick.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

from metatwin_functions import Function, current_execution


@Function(every=1, schedule_args={"label": "tick"})
def heartbeat_job(label: str) -> dict[str, Any]:
    """Says which replica ran this tick and how late it started."""
    started = time.time()
    execution = current_execution()
    assert execution is not None
    tick = datetime.fromisoformat(execution.execution_id.split(":", 2)[2])
    return {"label": label, "pid": os.getpid(), "lag_ms": (started - tick.timestamp()) * 1000}
