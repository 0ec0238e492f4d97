"""The example functions as an ASGI app, for ``hypercorn examples.asgi_app:app``.

``python examples/asgi_app.py`` runs ``app.run()`` for a quick local try: Quart's development
server on ``CRBR_FUNCTIONS_HOST``:``CRBR_FUNCTIONS_PORT``, without a reloader.
"""

from __future__ import annotations

import os
import sys

# Run as a script from anywhere: make the repository root importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import examples.simple_function  # noqa: F401 - registers the example functions
from metatwin_functions import create_app

app = create_app()

if __name__ == "__main__":
    app.run()
