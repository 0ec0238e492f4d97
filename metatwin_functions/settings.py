"""Typed settings read from the ``CRBR_*`` environment (and ``.env`` for local development).

A plain frozen pydantic model and a small loader of our own (`environ`): the environment wins
over ``.env``, values given in code win over both, an empty variable means "the default", and
a name that is not a setting is an error in code and a WARNING in the environment.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)

from .environ import PREFIX, read_variables, unknown_names_message
from .errors import ConfigurationError

__all__ = ["LOCAL_DEPLOYMENT_ID", "Settings", "load_settings"]

LOCAL_DEPLOYMENT_ID = "local-dev"
#: The ``.env`` file read by default: in the working directory, only when it exists.
DOTENV = ".env"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

logger = logging.getLogger("metatwin_functions.settings")


class Settings(BaseModel):
    """Every knob of a function service, read from ``CRBR_*`` variables.

    ``Settings(functions_timeout=5)`` reads the environment (and ``.env``) like
    `load_settings` and overrides what is given in code. ``_env_file`` names another file to
    read, or ``None`` for none. Any problem, a misspelt name included, raises
    `ConfigurationError` naming the variable.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment_id: str = Field(default=LOCAL_DEPLOYMENT_ID, min_length=1)
    functions_host: str = "0.0.0.0"
    functions_port: int = Field(default=8000, ge=0, le=65535)
    functions_timeout: float = Field(default=30.0, gt=0)
    functions_max_timeout: float = Field(default=300.0, gt=0)
    functions_log_level: LogLevel = "INFO"
    uvicorn_log_level: LogLevel = "INFO"
    functions_max_body_size: int = Field(default=1024 * 1024, ge=1024)
    functions_sync_workers: int = Field(default=32, ge=1, le=1024)
    functions_backlog: int = Field(default=2048, ge=1)
    functions_body_timeout: float = Field(default=30.0, gt=0)
    functions_max_result_size: int = Field(default=16 * 1024 * 1024, ge=1024)
    #: Plain ``def`` threads left running past their deadline that may exist at once.
    functions_max_abandoned_threads: int = Field(default=256, ge=0, le=65536)
    functions_server: Literal["hypercorn", "uvicorn"] = "hypercorn"
    #: Serve ``POST /exec`` at the ASGI level, in front of Quart (see the README).
    functions_fast_exec: bool = True

    # Authentication and authorization: on as soon as a key or JWT variable is set.
    auth_api_keys: SecretStr | None = None
    auth_jwt_public_key: SecretStr | None = None
    auth_jwks_url: str | None = None
    auth_jwt_secret: SecretStr | None = None
    auth_jwt_issuer: str | None = None
    auth_jwt_audience: str | None = None
    auth_jwt_algorithms: str | None = None
    auth_roles_claim: str = "roles"
    auth_jwks_timeout: float = Field(default=5.0, gt=0)
    auth_protect_metrics: bool = False
    auth_protect_docs: bool = False

    # Traffic limits (0 / unset = off).
    functions_max_concurrency: int = Field(default=0, ge=0)
    functions_rate_limit: str | None = None

    # Idempotency on executionId.
    idempotency_ttl: float = Field(default=300.0, ge=0)
    idempotency_max_entries: int = Field(default=10_000, ge=1)
    #: Bytes of stored answers at most (oldest evicted first), so large results cannot fill RAM.
    idempotency_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)

    # Observability.
    metrics_enabled: bool = True
    publish_http_executions: bool = False

    rabbitmq_hostname: str | None = None
    rabbitmq_port: int = Field(default=5672, ge=1, le=65535)
    rabbitmq_username: str | None = None
    rabbitmq_password: SecretStr | None = None
    rabbitmq_vhost: str = "/"
    rabbitmq_exchange: str = Field(default="event.exchange", min_length=1)
    enable_events: bool = True
    health_check_interval: float = Field(default=60.0, ge=1, le=3600)
    connection_timeout: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    retry_delay: float = Field(default=5.0, gt=0)
    #: AMQP heartbeat, seconds: a partitioned broker is noticed within about two of them.
    rabbitmq_heartbeat: int = Field(default=10, ge=0, le=600)

    # Execution over RabbitMQ.
    amqp_exec_enabled: bool = False
    amqp_exec_queue: str | None = None
    amqp_exec_prefetch: int = Field(default=16, ge=1, le=65535)
    amqp_exec_max_deliveries: int = Field(default=5, ge=1)

    #: Origins allowed to call from a browser (comma-separated, or ``*``); unset: no CORS.
    cors_origins: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: object) -> object:
        # Log levels are case-insensitive in the environment; empty strings mean "unset".
        if isinstance(data, dict):
            for key in ("functions_log_level", "uvicorn_log_level"):
                value = data.get(key)
                if isinstance(value, str):
                    data[key] = value.strip().upper()
            for key in (
                "rabbitmq_hostname",
                "rabbitmq_username",
                "rabbitmq_password",
                "auth_api_keys",
                "auth_jwt_public_key",
                "auth_jwks_url",
                "auth_jwt_secret",
                "auth_jwt_issuer",
                "auth_jwt_audience",
                "auth_jwt_algorithms",
                "functions_rate_limit",
                "amqp_exec_queue",
            ):
                if data.get(key) == "":
                    data[key] = None
        return data

    _unknown_variables: tuple[str, ...] = PrivateAttr(default=())

    def __init__(self, _env_file: str | os.PathLike[str] | None = DOTENV, **values: Any) -> None:
        unknown = sorted(set(values) - set(type(self).model_fields))
        if unknown:
            names = unknown_names_message(unknown, type(self).model_fields, variables=False)
            noun = "setting" if len(unknown) == 1 else "settings"
            raise ConfigurationError(f"Invalid configuration: unknown {noun} {names}")
        data: dict[str, Any] = {}
        strays: list[str] = []
        for variable, value in read_variables(_env_file).items():
            name = variable[len(PREFIX) :].lower()
            if name in type(self).model_fields:
                data[name] = value
            else:
                strays.append(variable)
        data.update(values)
        try:
            super().__init__(**data)
        except ValidationError as exc:
            # ``from None``: the one line names every problem; pydantic's text repeats it.
            raise ConfigurationError(_describe(exc)) from None
        self._unknown_variables = tuple(sorted(strays))

    @property
    def unknown_variables(self) -> tuple[str, ...]:
        """``CRBR_*`` names found in the environment or ``.env`` that are not settings."""
        return self._unknown_variables

    def warn_unknown_variables(self) -> None:
        """Log one WARNING per unknown ``CRBR_*`` variable, with the likely intended name."""
        for variable in self._unknown_variables:
            hint = unknown_names_message([variable], type(self).model_fields, variables=True)
            logger.warning("Ignoring unknown variable %s: it is not a setting", hint)

    @property
    def is_local(self) -> bool:
        """True for the ``local-dev`` deployment, which logs readable text instead of JSON."""
        return self.deployment_id == LOCAL_DEPLOYMENT_ID

    def effective_timeout(self, function_timeout: float | None) -> float:
        """The deadline for one call: the function's own or the default, never above the cap."""
        wanted = self.functions_timeout if function_timeout is None else function_timeout
        return min(wanted, self.functions_max_timeout)

    @property
    def auth_enabled(self) -> bool:
        """True when any API-key or JWT variable is set: every call then needs credentials."""
        return any(
            value is not None
            for value in (
                self.auth_api_keys,
                self.auth_jwt_public_key,
                self.auth_jwks_url,
                self.auth_jwt_secret,
            )
        )

    @property
    def amqp_exec_queue_name(self) -> str:
        """The execution queue: ``CRBR_AMQP_EXEC_QUEUE`` or one named after the deployment."""
        return self.amqp_exec_queue or f"metatwin-functions.exec.{self.deployment_id}"

    @property
    def amqp_exec_configured(self) -> bool:
        """True when execution over RabbitMQ is enabled and the broker settings are complete."""
        return self.amqp_exec_enabled and not self.missing_rabbitmq_settings

    @property
    def missing_rabbitmq_settings(self) -> list[str]:
        """Names of the variables events need but that are not set."""
        missing = []
        if not self.rabbitmq_hostname:
            missing.append("CRBR_RABBITMQ_HOSTNAME")
        if not self.rabbitmq_username:
            missing.append("CRBR_RABBITMQ_USERNAME")
        if self.rabbitmq_password is None:
            missing.append("CRBR_RABBITMQ_PASSWORD")
        return missing

    @property
    def incomplete_events_warning(self) -> str | None:
        """What to log when events are enabled but the broker settings are incomplete."""
        missing = self.missing_rabbitmq_settings
        if not self.enable_events or not missing:
            return None
        verb = "is" if len(missing) == 1 else "are"
        return (
            f"RabbitMQ events are enabled but {', '.join(missing)} {verb} not set: "
            "running without events"
        )

    @property
    def events_configured(self) -> bool:
        """True when events are enabled and the broker settings are complete."""
        return self.enable_events and not self.missing_rabbitmq_settings


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment and ``.env``; ``overrides`` win over both.

    Raises:
        ConfigurationError: naming every variable that is not valid, at once.
    """
    return Settings(**overrides)


def _describe(exc: ValidationError) -> str:
    problems = "; ".join(
        f"{PREFIX}{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
        for err in exc.errors()
    )
    return f"Invalid configuration: {problems}"
