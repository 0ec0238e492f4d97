"""Idempotency on ``executionId``: join a running duplicate, replay a recent success.

A call is identified by its ``executionId`` and described by a fingerprint (function, version,
arguments, caller). The pipeline reserves the id before running the call and completes it
afterwards; the store decides whether a request runs, waits for the running call, gets the
stored answer, or conflicts. `InMemoryIdempotencyStore` is the per-process default; any object
with the `IdempotencyStore` methods can replace it (a shared store for several replicas).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeAlias

from pydantic_core import from_json, to_json

from .settings import Settings

__all__ = [
    "Acquired",
    "Conflict",
    "IdempotencyStore",
    "InMemoryIdempotencyStore",
    "Reservation",
    "Running",
    "Stored",
    "build_idempotency_store",
    "call_fingerprint",
    "replayed_body",
]


@dataclass(frozen=True, slots=True)
class Acquired:
    """The id is free: run the call, then `IdempotencyStore.complete` it, whatever happens."""


@dataclass(frozen=True, slots=True)
class Running:
    """The same call is running: `wait` for its answer instead of running it again."""

    waiter: Callable[[], Awaitable[bytes | None]] = field(repr=False)

    async def wait(self) -> bytes | None:
        """The running call's response body, or ``None`` if it ended without an answer.

        On ``None`` (the call was cancelled) reserve the id again. Cancelling this wait does
        not affect the running call or other waiters.
        """
        return await self.waiter()


@dataclass(frozen=True, slots=True)
class Stored:
    """The same call succeeded less than the TTL ago: answer with `replayed_body` of it."""

    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Conflict:
    """The id belongs to another call (function, version, arguments or caller): HTTP 409."""


Reservation: TypeAlias = Acquired | Running | Stored | Conflict
"""What `IdempotencyStore.reserve` answers."""


class IdempotencyStore(Protocol):
    """Where calls are deduplicated by ``executionId``; plug in your own for a shared store.

    The pipeline calls `reserve` before a call with a non-empty ``executionId`` and, after an
    `Acquired`, exactly one `complete` when the call ends (also when it fails or is
    cancelled). Fingerprints come from `call_fingerprint`.

    A store shared by replicas (Redis, say) would implement:

    * `reserve`: ``SET key "running:<fingerprint>" NX PX <call deadline>`` claims the id
      (`Acquired`). When the key exists, compare its stored fingerprint: another one is a
      `Conflict`; a stored answer is `Stored`; a running marker is `Running`, whose waiter
      polls the key (or subscribes to a pub/sub channel named after the id) until the answer
      or the key's disappearance (then ``None``).
    * `complete`: with ``store=True``, ``SET key "<fingerprint><body>" PX <ttl>`` (replacing
      the marker); else ``DEL key``; then publish the body (or a "gone" message) for waiters.
      Bound the body size or keep large answers out of the store.
    """

    async def reserve(self, execution_id: str, fingerprint: bytes) -> Reservation:
        """Claim ``execution_id`` for the call described by ``fingerprint``."""
        ...

    async def complete(
        self, execution_id: str, fingerprint: bytes, body: bytes | None, *, store: bool
    ) -> None:
        """End the reservation: hand ``body`` to waiters and keep it when ``store`` is true.

        Args:
            execution_id: the reserved id.
            fingerprint: the fingerprint it was reserved with.
            body: the final ``/exec`` response body, or ``None`` when the call ended without
                an answer (cancelled).
            store: true only for a success: it is replayed for the TTL.
        """
        ...


_SCALARS = frozenset({str, int, float, bool, type(None)})
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
)


def call_fingerprint(
    function_name: str,
    version: str | None,
    args: Mapping[str, Any],
    caller_subject: str | None,
) -> bytes:
    """A 16-byte digest of the call: the same arguments in any key order give the same bytes."""
    for value in args.values():
        if type(value) not in _SCALARS:
            try:
                text = _CANONICAL.encode([function_name, version, caller_subject, args])
            except (TypeError, ValueError):  # unsortable keys, a cycle: repr still tells apart
                text = repr([function_name, version, caller_subject, sorted(args.items())])
            data = text.encode()
            break
    else:
        # Flat arguments (the common case): pydantic-core is about twice as fast as json.
        data = to_json([function_name, version, caller_subject, sorted(args.items())])
    return hashlib.blake2b(data, digest_size=16).digest()


def replayed_body(body: bytes) -> bytes:
    """``body`` (an ``/exec`` response) with ``metadata.replayed: true`` added."""
    response = from_json(body)
    metadata = response.get("metadata")
    if not isinstance(metadata, dict):
        metadata = response["metadata"] = {}
    metadata["replayed"] = True
    return to_json(response)


class _Call:
    """A call in progress; duplicates wait on a future made only when the first one joins."""

    __slots__ = ("body", "done", "fingerprint", "future")

    def __init__(self, fingerprint: bytes) -> None:
        self.fingerprint = fingerprint
        self.future: asyncio.Future[bytes | None] | None = None
        self.done = False
        self.body: bytes | None = None

    async def wait(self) -> bytes | None:
        if self.done:
            return self.body
        if self.future is None:
            self.future = asyncio.get_running_loop().create_future()
        # Shielded: one waiter giving up must not cancel the answer for the others.
        return await asyncio.shield(self.future)

    def finish(self, body: bytes | None) -> None:
        self.done = True
        self.body = body
        if self.future is not None and not self.future.done():
            self.future.set_result(body)


class _Answer(NamedTuple):
    # A tuple: one allocation per stored answer (it is on every call's path).
    fingerprint: bytes
    body: bytes
    expires: float


_ACQUIRED = Acquired()
_CONFLICT = Conflict()


class InMemoryIdempotencyStore:
    """The per-process store: running calls joinable, successes kept for ``ttl`` seconds.

    At most ``max_entries`` answers are kept, the oldest evicted first; expired ones are
    dropped when looked up and when a new answer is stored, so no background task is needed.
    Failures are forgotten at completion (waiters still receive their body).
    """

    def __init__(
        self,
        ttl: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_bytes: int | None = None,
    ) -> None:
        if ttl <= 0 or max_entries < 1 or (max_bytes is not None and max_bytes < 1):
            raise ValueError("an idempotency store needs ttl > 0, max_entries and max_bytes >= 1")
        self._ttl = ttl
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._clock = clock
        self._running: dict[str, _Call] = {}
        # Insertion order is expiry order (one TTL for all), so the oldest sit at the front.
        self._answers: OrderedDict[str, _Answer] = OrderedDict()

    def __len__(self) -> int:
        """Stored answers, expired ones not yet dropped included."""
        return len(self._answers)

    @property
    def running(self) -> int:
        """Calls reserved and not yet completed."""
        return len(self._running)

    async def reserve(self, execution_id: str, fingerprint: bytes) -> Reservation:
        """See `IdempotencyStore.reserve`."""
        return self.reserve_now(execution_id, fingerprint)

    def reserve_now(self, execution_id: str, fingerprint: bytes) -> Reservation:
        """`reserve` without the coroutine: this store never waits to reserve (hot path)."""
        call = self._running.get(execution_id)
        if call is not None:
            return Running(call.wait) if call.fingerprint == fingerprint else _CONFLICT
        answer = self._answers.get(execution_id)
        if answer is not None:
            if answer.expires > self._clock():
                return Stored(answer.body) if answer.fingerprint == fingerprint else _CONFLICT
            del self._answers[execution_id]
            self._bytes -= len(answer.body)
        self._running[execution_id] = _Call(fingerprint)
        return _ACQUIRED

    async def complete(
        self, execution_id: str, fingerprint: bytes, body: bytes | None, *, store: bool
    ) -> None:
        """See `IdempotencyStore.complete`."""
        self.complete_now(execution_id, fingerprint, body, store=store)

    def complete_now(
        self, execution_id: str, fingerprint: bytes, body: bytes | None, *, store: bool
    ) -> None:
        """`complete` without the coroutine (hot path)."""
        call = self._running.get(execution_id)
        if call is None or call.fingerprint != fingerprint:
            return
        del self._running[execution_id]
        call.finish(body)
        if store and body is not None:
            self._remember(execution_id, fingerprint, body)

    @property
    def stored_bytes(self) -> int:
        """Bytes of the answers kept (expired ones not yet dropped included)."""
        return self._bytes

    def _remember(self, execution_id: str, fingerprint: bytes, body: bytes) -> None:
        answers = self._answers
        now = self._clock()
        while answers:
            oldest = next(iter(answers.values()))
            if oldest.expires > now:
                break
            self._drop_oldest()
        previous = answers.pop(execution_id, None)
        if previous is not None:
            self._bytes -= len(previous.body)
        if self._max_bytes is not None and len(body) > self._max_bytes:
            return  # larger than the whole budget: a retry runs again rather than evict all
        answers[execution_id] = _Answer(fingerprint, body, now + self._ttl)
        self._bytes += len(body)
        while len(answers) > self._max_entries or (
            self._max_bytes is not None and self._bytes > self._max_bytes
        ):
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, dropped = self._answers.popitem(last=False)
        self._bytes -= len(dropped.body)


def build_idempotency_store(settings: Settings) -> IdempotencyStore | None:
    """The store ``CRBR_IDEMPOTENCY_*`` asks for, or ``None`` when ``CRBR_IDEMPOTENCY_TTL=0``."""
    if settings.idempotency_ttl == 0:
        return None
    return InMemoryIdempotencyStore(
        settings.idempotency_ttl,
        settings.idempotency_max_entries,
        max_bytes=settings.idempotency_max_bytes,
    )
