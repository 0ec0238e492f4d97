"""Typed settings read from the ``CRBR_*`` environment (and ``.env`` for local development)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError

__all__ = ["LOCAL_DEPLOYMENT_ID", "Settings", "load_settings"]

LOCAL_DEPLOYMENT_ID = "local-dev"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    """Every knob of a function service, read from ``CRBR_*`` variables.

    Construct it directly to override values in code: ``Settings(functions_timeout=5)``.
    """

    model_config = SettingsConfigDict(
        env_prefix="CRBR_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

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

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: object) -> object:
        # Log levels are case-insensitive in the environment; empty strings mean "unset".
        if isinstance(data, dict):
            for key in ("functions_log_level", "uvicorn_log_level"):
                value = data.get(key)
                if isinstance(value, str):
                    data[key] = value.strip().upper()
            for key in ("rabbitmq_hostname", "rabbitmq_username", "rabbitmq_password"):
                if data.get(key) == "":
                    data[key] = None
        return data

    @property
    def is_local(self) -> bool:
        """True for the ``local-dev`` deployment, which logs readable text instead of JSON."""
        return self.deployment_id == LOCAL_DEPLOYMENT_ID

    def effective_timeout(self, function_timeout: float | None) -> float:
        """The deadline for one call: the function's own or the default, never above the cap."""
        wanted = self.functions_timeout if function_timeout is None else function_timeout
        return min(wanted, self.functions_max_timeout)

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


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, raising `ConfigurationError` with every problem."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"CRBR_{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"Invalid configuration: {problems}") from exc
