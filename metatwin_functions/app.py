"""Ready-made apps: `create_app` for Hypercorn and `FunctionServer`, the first SDK's entry point."""

from __future__ import annotations

from quart import Quart
from werkzeug.exceptions import HTTPException

from .errors import ConfigurationError, FatalConfigurationError
from .fastpath import ExecFastPath
from .http import functions_blueprint, http_error_response
from .idempotency import IdempotencyStore
from .logs import configure_logging
from .quart_app import FunctionsApp
from .registry import FunctionRegistry, default_registry
from .server import serve
from .settings import Settings, load_settings

__all__ = ["FunctionServer", "create_app"]


def create_app(
    registry: FunctionRegistry | None = None,
    settings: Settings | None = None,
    *,
    url_prefix: str | None = None,
    docs: bool = True,
    configure_logs: bool = True,
    fast_exec: bool | None = None,
    idempotency_store: IdempotencyStore | None = None,
) -> Quart:
    """A Quart app serving ``registry`` (default: every ``@Function``) at ``/exec`` and ``/ready``.

    Run it with ``app.run()`` locally, ``hypercorn module:app`` in a container, or
    `FunctionServer`. ``docs`` adds ``/openapi.json`` and ``/docs``; ``configure_logs`` sets up
    the contract's log format from the settings. ``fast_exec`` (default
    ``CRBR_FUNCTIONS_FAST_EXEC``, on) serves ``POST /exec`` by the raw-ASGI endpoint in front of
    Quart (see `ExecFastPath` for what that leaves out); off, Quart's view serves it.
    ``idempotency_store`` replaces the per-process store of answers (see `IdempotencyStore`).
    """
    config = load_settings() if settings is None else settings
    if configure_logs:
        configure_logging(config)
    # FunctionsApp.run() binds CRBR_FUNCTIONS_HOST/PORT, without a reloader, and
    # warns about unknown CRBR_* variables when serving starts.
    app = FunctionsApp("metatwin_functions", config, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.functions_max_body_size
    blueprint = functions_blueprint(registry, config, idempotency_store=idempotency_store)
    app.register_blueprint(blueprint, url_prefix=url_prefix)
    if config.functions_fast_exec if fast_exec is None else fast_exec:
        ExecFastPath.install(app, blueprint.name)
    # The app's own pages (404, 405) answer in JSON too: this app is an API, not a website.
    app.register_error_handler(HTTPException, http_error_response)
    if config.cors_origins:  # CORS for browser callers (extra 'cors', imported only when set)
        from .cors import enable_cors

        enable_cors(app, config.cors_origins)
    if docs:
        from .docs import enable_docs

        enable_docs(app, protect=config.auth_protect_docs)
    return app


class FunctionServer:
    """The first SDK's server API: ``FunctionServer().start()`` serves every ``@Function``.

    ``app`` is the Quart app, for mounting or testing; keyword arguments override settings
    (``FunctionServer(functions_port=9000)``), also those of ``settings=``.

    Raises:
        ConfigurationError: a setting is not valid or a keyword is not a setting. Left
            uncaught, it ends the program with the one line the command line prints
            (``error: Invalid configuration: ...``) and no traceback.
    """

    def __init__(
        self,
        registry: FunctionRegistry | None = None,
        settings: Settings | None = None,
        **overrides: object,
    ) -> None:
        try:
            if settings is None:
                settings = load_settings(**overrides)
            elif overrides:
                settings = Settings(_env_file=None, **{**settings.model_dump(), **overrides})
        except ConfigurationError as exc:
            raise FatalConfigurationError(str(exc)) from None
        self.settings = settings
        self.registry = default_registry if registry is None else registry
        self.app = create_app(self.registry, self.settings)

    def start(self) -> None:
        """Serve until SIGTERM or Ctrl-C, then drain calls in flight and return."""
        try:
            serve(self.app, self.settings, self.registry)
        except FatalConfigurationError:
            raise
        except ConfigurationError as exc:
            raise FatalConfigurationError(str(exc)) from None

    run = start
