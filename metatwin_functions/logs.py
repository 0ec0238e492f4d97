"""Log set-up: readable text for ``local-dev``, one JSON object per line everywhere else.

A handler filter copies the current call's execution id and function name onto every record, so
lines written by user code during a call carry them too; with tracing on, also the current span's
``trace_id`` and ``span_id``. The server's own loggers (Hypercorn's or uvicorn's) share the
handler, so their lines follow the same format.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from pydantic_core import to_json
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from .context import _current
from .settings import Settings

__all__ = ["ExecutionContextFilter", "configure_logging"]

SDK_LOGGER = "metatwin_functions"
# Naming a logger imports nothing: a deployment on Hypercorn never loads uvicorn for this.
SERVER_LOGGERS = (
    "hypercorn.error",
    "hypercorn.access",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
)
# aiormq logs an ERROR per failed connect and aio-pika a WARNING (with a traceback) per
# reconnect; the events service reports each outage itself, once.
BROKER_CLIENT_LOGGERS = ("aiormq", "aio_pika")
# uvicorn adds its message again with terminal colour codes, for its own text formatter.
_NOT_IN_JSON = (*RESERVED_ATTRS, "color_message")

#: Set by `tracing.build_tracer` when calls are traced: the current span's (trace_id, span_id).
#: None otherwise, so that without tracing the filter does no extra work.
trace_ids_hook: Callable[[], tuple[str, str] | None] | None = None


class ExecutionContextFilter(logging.Filter):
    """Adds ``execution_id`` and ``function_name`` of the call in progress to each record.

    With tracing on, ``trace_id`` and ``span_id`` of the current span too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        if context is not None:
            record.execution_id = context.execution_id
            record.function_name = context.function_name
        if trace_ids_hook is not None:
            ids = trace_ids_hook()
            if ids is not None:
                record.trace_id, record.span_id = ids
        return True


# Control characters are written as escapes, so that no name or id a client sends can start a
# line of its own (a forged log line) or move the terminal's cursor.
# C0 and C1 controls and the Unicode line and paragraph separators all count: each can end a
# line or drive a terminal.
_CONTROL_ESCAPES = {
    code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if chr(code) != "\t"
} | {ord("\n"): "\\n", ord("\r"): "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}


class TextFormatter(logging.Formatter):
    """Human-readable lines with the call's identity appended when there is one.

    Control characters in the message and the fields are escaped (``\\n``, ``\\x1b``): one record
    is one line, whatever a client put in a function name or an execution id. A traceback still
    follows on lines of its own.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return self._identity(record, super().formatMessage(record)).translate(_CONTROL_ESCAPES)

    def _identity(self, record: logging.LogRecord, line: str) -> str:
        execution_id = getattr(record, "execution_id", None)
        if execution_id is None:
            return line
        suffix = f" [{record.function_name} execution_id={execution_id!r}"  # type: ignore[attr-defined]
        status = getattr(record, "status", None)
        if status is not None:
            suffix += f" status={status}"
        return line + suffix + "]"


class _JsonLinesFormatter(JsonFormatter):
    """python-json-logger's fields and names, built in one pass and serialized by pydantic-core.

    Every call writes one line, so this is on every call's path: its own `format` builds the
    same object python-json-logger does (``level``, ``message``, ``logger``, ``deployment_id``,
    the record's extra fields, ``exc_info``, ``timestamp``) at about a third of the cost.
    """

    def __init__(self, deployment_id: str) -> None:
        super().__init__(
            "%(levelname)s %(message)s %(name)s",
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"deployment_id": deployment_id},
            reserved_attrs=_NOT_IN_JSON,
            timestamp=True,
        )
        self._deployment_id = deployment_id
        self._reserved = frozenset(_NOT_IN_JSON)

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "deployment_id": self._deployment_id,
        }
        reserved = self._reserved
        for key, value in record.__dict__.items():
            if key not in reserved:
                data[key] = value
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter.formatException(self, record.exc_info)
            data["exc_info"] = record.exc_text
        elif record.exc_text:
            data["exc_info"] = record.exc_text
        if record.stack_info:
            data["stack_info"] = self.formatStack(record.stack_info)
        data["timestamp"] = datetime.fromtimestamp(record.created, UTC)
        return to_json(data, fallback=str).decode()


def _json_formatter(deployment_id: str) -> logging.Formatter:
    return _JsonLinesFormatter(deployment_id)


class _SdkHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler we installed, so configuring twice replaces instead of doubling."""


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Route the root logger (and the server's) through one handler in the contract's format.

    ``CRBR_FUNCTIONS_LOG_LEVEL`` sets the level of the SDK and user code, ``CRBR_UVICORN_LOG_LEVEL``
    that of the server's own lines. Calling it again replaces the previous set-up.
    """
    handler = _SdkHandler(sys.stdout if stream is None else stream)
    handler.addFilter(ExecutionContextFilter())
    formatter = TextFormatter() if settings.is_local else _json_formatter(settings.deployment_id)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for existing in [h for h in root.handlers if isinstance(h, _SdkHandler)]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.functions_log_level)
    logging.getLogger(SDK_LOGGER).setLevel(settings.functions_log_level)

    for name in SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
        server_logger.setLevel(settings.uvicorn_log_level)
    broker_level = logging.DEBUG if settings.functions_log_level == "DEBUG" else logging.CRITICAL
    for name in BROKER_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(broker_level)
