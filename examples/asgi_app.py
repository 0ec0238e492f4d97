"""The example functions as an ASGI app, for ``hypercorn examples.asgi_app:app``.

``app.run()`` works too for a quick local try (Quart's development server).
"""

from __future__ import annotations

import examples.simple_function  # noqa: F401 - registers the example functions
from metatwin_functions import create_app

app = create_app()

if __name__ == "__main__":
    app.run()
