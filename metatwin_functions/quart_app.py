"""`FunctionsApp`: the Quart app `create_app` builds, whose ``run()`` honours ``CRBR_*``."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Quart

from .settings import Settings

__all__ = ["FunctionsApp"]


class FunctionsApp(Quart):
    """A Quart app that knows its `Settings`.

    ``run()`` binds ``CRBR_FUNCTIONS_HOST``:``CRBR_FUNCTIONS_PORT`` unless given a host or port,
    and starts no reloader unless asked (``use_reloader=True``).
    """

    def __init__(self, import_name: str, settings: Settings, **kwargs: Any) -> None:
        super().__init__(import_name, **kwargs)
        self.functions_settings = settings

    def run(
        self,
        host: str | None = None,
        port: int | None = None,
        debug: bool | None = None,
        use_reloader: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        ca_certs: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Serve with Quart's development runner on the configured host and port.

        For production use `FunctionServer` or ``metatwin-functions serve``: they add the
        drain on SIGTERM, the backlog and the log setup of the settings.
        """
        settings = self.functions_settings
        super().run(
            host=settings.functions_host if host is None else host,
            port=settings.functions_port if port is None else port,
            debug=debug,
            use_reloader=use_reloader,
            loop=loop,
            ca_certs=ca_certs,
            certfile=certfile,
            keyfile=keyfile,
            **kwargs,
        )
