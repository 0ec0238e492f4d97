"""A cache of the signing keys published at a JWKS endpoint (no PyJWT needed here).

Keys are fetched on first use and kept. A token whose ``kid`` is not cached triggers a refetch
(key rotation), at most once per `MIN_REFETCH_INTERVAL` seconds, so that a flood of tokens with
made-up key ids cannot hammer the identity provider. Cached keys older than `MAX_AGE` are
refreshed in the background while the cached ones keep serving. Every fetch runs on a thread
(the event loop never blocks) and is bounded by the configured timeout; when the endpoint is down
or slow, the cached keys still verify the tokens they can.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from .errors import ConfigurationError, UnauthorizedError

__all__ = ["JwksCache"]

K = TypeVar("K")

logger = logging.getLogger(__name__)

#: Seconds between two fetches triggered by unknown key ids (or failures).
MIN_REFETCH_INTERVAL = 5.0
#: Seconds after which cached keys are refreshed in the background.
MAX_AGE = 300.0
#: A JWKS document larger than this is refused (a real one is a few KiB).
MAX_DOCUMENT_BYTES = 1024 * 1024

UNKNOWN_KID = "Token signed with an unknown key id"
UNAVAILABLE = "Token signing keys unavailable"


class JwksCache(Generic[K]):
    """The keys of one JWKS endpoint by ``kid``, each turned into a ``K`` by ``parse_key``.

    ``parse_key`` receives one JWK (a dict) and returns the key, or ``None`` to skip it.
    """

    def __init__(
        self,
        url: str,
        *,
        parse_key: Callable[[Mapping[str, Any]], K | None],
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError("CRBR_AUTH_JWKS_URL must be an http:// or https:// URL")
        self._url = url
        # Logged instead of the URL: user information in it (``user:pass@``) stays out of logs.
        self._where = f"{parts.scheme}://{parts.hostname}{parts.path}"
        self._parse_key = parse_key
        self._timeout = timeout
        self._clock = clock
        self._min_interval = MIN_REFETCH_INTERVAL
        self._max_age = MAX_AGE
        self._keys: dict[str, K] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_failed = False
        self._lock = asyncio.Lock()
        self._refresh_task: asyncio.Task[None] | None = None

    async def get(self, kid: str) -> K:
        """The key named ``kid``; `UnauthorizedError` when it is unknown or keys are unavailable."""
        key = self._keys.get(kid)
        if key is not None:
            if self._is_stale() and self._may_fetch():
                self._start_background_refresh()
            return key
        async with self._lock:
            # Another caller may have fetched while this one waited for the lock.
            key = self._keys.get(kid)
            if key is not None:
                return key
            if not self._may_fetch():
                raise UnauthorizedError(UNAVAILABLE if self._last_failed else UNKNOWN_KID)
            fetched = await self._refresh()
            key = self._keys.get(kid)
            if key is not None:
                return key
            raise UnauthorizedError(UNKNOWN_KID if fetched else UNAVAILABLE)

    async def aclose(self) -> None:
        """Wait for a background refresh still running (bounded by the fetch timeout)."""
        task = self._refresh_task
        if task is not None and not task.done():
            await task

    def _is_stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._max_age

    def _may_fetch(self) -> bool:
        return (
            self._attempted_at is None or self._clock() - self._attempted_at >= self._min_interval
        )

    def _start_background_refresh(self) -> None:
        if self._refresh_task is not None and not self._refresh_task.done():
            return
        self._attempted_at = self._clock()
        self._refresh_task = asyncio.get_running_loop().create_task(self._locked_refresh())

    async def _locked_refresh(self) -> None:
        async with self._lock:
            await self._refresh()

    async def _refresh(self) -> bool:
        """Fetch the document and replace the cached keys; False (keys kept) when that fails."""
        self._attempted_at = self._clock()
        try:
            document = await asyncio.wait_for(
                asyncio.to_thread(_fetch_json, self._url, self._timeout), self._timeout
            )
            keys = self._parse(document)
        except (OSError, TimeoutError, ValueError, http.client.HTTPException) as exc:
            self._last_failed = True
            logger.warning(
                "Fetching signing keys from %s failed (%s); keeping %d cached key(s)",
                self._where,
                type(exc).__name__,
                len(self._keys),
            )
            return False
        self._keys = keys
        self._fetched_at = self._clock()
        self._last_failed = False
        return True

    def _parse(self, document: object) -> dict[str, K]:
        jwks = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(jwks, list):
            raise ValueError("not a JWKS document")
        keys: dict[str, K] = {}
        for jwk in jwks:
            if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
                continue
            kid = jwk.get("kid")
            if not isinstance(kid, str):
                continue
            key = self._parse_key(jwk)
            if key is not None:
                keys[kid] = key
        if not keys:
            raise ValueError("no usable signing key")
        return keys


def _fetch_json(url: str, timeout: float) -> object:
    # http(s) only, redirects included: no file:// or ftp:// handler is installed.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    # The socket timeout bounds each read; the deadline bounds them all, so that a server that
    # drips its answer cannot hold this thread long after the caller stopped waiting.
    deadline = time.monotonic() + timeout
    body = bytearray()
    with opener.open(request, timeout=timeout) as response:
        while chunk := response.read1(64 * 1024):
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise ValueError("JWKS document too large")
            if time.monotonic() > deadline:
                raise TimeoutError("JWKS fetch took too long")
    return json.loads(body)
