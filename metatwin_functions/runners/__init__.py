"""The servers the SDK runs its app on: Hypercorn (default) or uvicorn (extra ``[uvicorn]``).

`load_runner` imports only the chosen runner's module, so a deployment that never asks for
uvicorn imports none of it.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from quart import Quart

    from ..registry import FunctionRegistry
    from ..settings import Settings
    from .shutdown import Shutdown

__all__ = ["Runner", "load_runner"]

ServeFunction = Callable[["Quart", "Settings", "FunctionRegistry", "Shutdown"], Awaitable[None]]

# What each runner imports beyond the SDK's own dependencies: all of it comes with its extra.
_EXTRAS: dict[str, tuple[str, ...]] = {
    "hypercorn": (),
    "uvicorn": ("uvicorn", "httptools")
    if sys.platform == "win32"
    else ("uvicorn", "httptools", "uvloop"),
}


@dataclass(frozen=True, slots=True)
class Runner:
    """A server: how to serve the app, and the event loop it wants (None: asyncio's own)."""

    name: str
    serve: ServeFunction
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None


def load_runner(name: str) -> Runner:
    """The runner ``name`` (``hypercorn`` or ``uvicorn``); `ConfigurationError` if not installed."""
    if name not in _EXTRAS:
        raise ConfigurationError(f"Unknown server {name!r}: choose hypercorn or uvicorn")
    for module in _EXTRAS[name]:
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigurationError(
                f"CRBR_FUNCTIONS_SERVER={name} needs the {name} extra "
                f"({', '.join(_EXTRAS[name])}): pip install 'metatwin-functions[{name}]'"
            ) from None
    if name == "uvicorn":
        from . import uvicorn

        return Runner(name, uvicorn.serve, uvicorn.loop_factory())
    from . import hypercorn

    return Runner(name, hypercorn.serve, None)
