"""CORS for browser callers: ``CRBR_CORS_ORIGINS`` (off by default), through quart-cors.

Quart routes (``/ready``, ``/metrics``, ``/docs``, ``/openapi.json``, the ``OPTIONS`` preflight of
``/exec``) get their headers from quart-cors, imported only when CORS is configured (extra
``metatwin-functions[cors]``). The raw-ASGI ``/exec`` answers in front of Quart, so it asks
`CorsPolicy.headers` for the same headers quart-cors writes on a simple request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConfigurationError

if TYPE_CHECKING:
    from quart import Quart

__all__ = ["CorsPolicy", "enable_cors", "parse_origins"]

CORS_KEY = "metatwin_functions.cors"
#: Headers a browser may send on a call: the envelope's type, credentials and trace context.
ALLOW_HEADERS = ("Content-Type", "Authorization", "X-API-Key", "traceparent", "tracestate")
#: Headers of our answers a browser script may read (429/503 back-off, 401 challenge).
EXPOSE_HEADERS = ("Retry-After", "WWW-Authenticate")
ALLOW_METHODS = ("GET", "POST", "OPTIONS")
#: How long a browser may cache a preflight answer, seconds.
MAX_AGE = 600

_ORIGIN = re.compile(r"^https?://[^\s/:?#]+(:\d{1,5})?$")


def parse_origins(value: str) -> tuple[str, ...]:
    """The origins of ``CRBR_CORS_ORIGINS`` (comma-separated, or ``*``), checked.

    Raises:
        ConfigurationError: an entry is not ``*`` nor ``scheme://host[:port]``.
    """
    origins = tuple(entry.strip().rstrip("/") for entry in value.split(",") if entry.strip())
    bad = [origin for origin in origins if origin != "*" and not _ORIGIN.match(origin)]
    if bad or not origins:
        raise ConfigurationError(
            "Invalid configuration: CRBR_CORS_ORIGINS: expected '*' or comma-separated origins "
            f"such as 'https://app.example.com', got {', '.join(map(repr, bad)) or repr(value)}"
        )
    return origins


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """Which origins may call, and the headers an answer to them carries."""

    origins: tuple[str, ...]

    @property
    def wildcard(self) -> bool:
        """True when any origin may call (``*``)."""
        return "*" in self.origins

    def headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """The CORS headers of a (non-preflight) answer to a request from ``origin``."""
        allowed = None
        if origin:
            if self.wildcard:
                allowed = "*"
            elif origin in self.origins:
                allowed = origin
        headers: list[tuple[bytes, bytes]] = []
        if allowed is not None:
            headers.append((b"access-control-allow-origin", allowed.encode("latin-1")))
            headers.append((b"access-control-expose-headers", _EXPOSED))
        if allowed != "*":
            # The answer differs by origin: caches must keep them apart.
            headers.append((b"vary", b"Origin"))
        return headers


_EXPOSED = ", ".join(EXPOSE_HEADERS).encode("latin-1")


def enable_cors(app: Quart, origins: str) -> CorsPolicy:
    """Answer CORS requests and preflights from ``origins`` on every route of ``app``.

    Raises:
        ConfigurationError: bad origins, or quart-cors is not installed.
    """
    policy = CorsPolicy(parse_origins(origins))
    try:
        from quart_cors import cors
    except ImportError:
        raise ConfigurationError(
            "CRBR_CORS_ORIGINS is set but quart-cors is not installed: "
            "pip install 'metatwin-functions[cors]'"
        ) from None
    cors(
        app,
        allow_origin=list(policy.origins),
        allow_headers=list(ALLOW_HEADERS),
        allow_methods=list(ALLOW_METHODS),
        expose_headers=list(EXPOSE_HEADERS),
        max_age=MAX_AGE,
    )
    app.extensions[CORS_KEY] = policy
    return policy
