"""Mount the functions into an existing Quart app, next to its own routes.

Run it with ``hypercorn examples.mounted_app:app`` or ``python examples/mounted_app.py``; the
functions answer at ``/functions/exec`` and ``/functions/ready``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from quart import Quart

from metatwin_functions import FunctionRegistry, functions_blueprint

registry = FunctionRegistry()


@registry.function(description="Greets someone")
async def greet(name: str = "world") -> str:
    """Say hello."""
    return f"Hello, {name}!"


app = Quart(__name__)


@app.get("/")
async def index() -> dict[str, str]:
    """The host app's own route, untouched by the blueprint."""
    return {"app": "my existing service", "functions": "/functions/ready"}


app.register_blueprint(functions_blueprint(registry), url_prefix="/functions")

if __name__ == "__main__":
    from metatwin_functions import load_settings, serve

    serve(app, load_settings(), registry)
