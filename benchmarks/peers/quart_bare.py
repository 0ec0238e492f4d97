"""quart-bare: a minimal Quart app with the `/exec` contract on Hypercorn, no per-call logging.

Our stack's framework ceiling: what the SDK would cost if it added nothing to Quart.
Run: ``python benchmarks/peers/quart_bare.py`` (binds to CRBR_FUNCTIONS_HOST:CRBR_FUNCTIONS_PORT).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench_functions import (
    MAX_BODY_BYTES,
    EnvelopeError,
    build_targets,
    invoke,
    parse_envelope,
    ready_body,
    serve_hypercorn,
)
from quart import Quart, request

TARGETS = build_targets()

app = Quart(__name__)
app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES


@app.post("/exec")
async def execute() -> Any:
    """One call of a function, answered with the contract's envelope."""
    raw = await request.get_data()
    try:
        execution_id, name, args = parse_envelope(raw)
    except EnvelopeError as exc:
        return {"detail": str(exc)}, 422
    return await invoke(TARGETS, execution_id, name, args)


@app.get("/ready")
async def ready() -> Any:
    """Readiness: the functions served."""
    return ready_body(TARGETS)


if __name__ == "__main__":
    asyncio.run(serve_hypercorn(app))
