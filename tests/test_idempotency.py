"""Idempotency on executionId: fingerprints, joined duplicates, replays, conflicts, bounds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic_core import from_json, to_json

from metatwin_functions import Settings
from metatwin_functions.idempotency import (
    Acquired,
    Conflict,
    InMemoryIdempotencyStore,
    Running,
    Stored,
    build_idempotency_store,
    call_fingerprint,
    replayed_body,
)


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def body(execution_id: str, result: Any = 8, *, success: bool = True) -> bytes:
    return to_json(
        {
            "success": success,
            "result": result if success else None,
            "error": None if success else "Function execution failed: boom",
            "metadata": {"executionId": execution_id},
        }
    )


FP = call_fingerprint("add", None, {"a": 1, "b": 2}, None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> InMemoryIdempotencyStore:
    return InMemoryIdempotencyStore(ttl=300, max_entries=100, clock=clock)


def test_fingerprint_ignores_key_order_at_every_depth() -> None:
    flat = call_fingerprint("f", None, {"a": 1, "b": "x", "c": None}, "alice")
    assert flat == call_fingerprint("f", None, {"c": None, "b": "x", "a": 1}, "alice")
    nested = call_fingerprint("f", "1.0", {"a": {"x": 1, "y": [1, {"p": 1, "q": 2}]}}, None)
    assert nested == call_fingerprint("f", "1.0", {"a": {"y": [1, {"q": 2, "p": 1}], "x": 1}}, None)
    assert len(flat) == 16


@pytest.mark.parametrize(
    "other",
    [
        ("g", None, {"a": 1}, None),
        ("f", "2.0", {"a": 1}, None),
        ("f", None, {"a": 2}, None),
        ("f", None, {"a": 1.0}, None),
        ("f", None, {"a": True}, None),
        ("f", None, {"a": "1"}, None),
        ("f", None, {"a": 1, "b": None}, None),
        ("f", None, {"a": [1]}, None),
        ("f", None, {"a": 1}, "alice"),
        ("f", None, {"a": 1}, ""),
    ],
)
def test_fingerprint_tells_apart_function_version_args_and_caller(
    other: tuple[str, str | None, dict[str, Any], str | None],
) -> None:
    assert call_fingerprint("f", None, {"a": 1}, None) != call_fingerprint(*other)


def test_fingerprint_tells_apart_nested_values() -> None:
    assert call_fingerprint("f", None, {"a": {"x": [1, 2]}}, None) != call_fingerprint(
        "f", None, {"a": {"x": [2, 1]}}, None
    )


async def test_first_reservation_is_acquired_and_a_duplicate_joins_it(
    store: InMemoryIdempotencyStore,
) -> None:
    assert isinstance(await store.reserve("e-1", FP), Acquired)
    duplicate = await store.reserve("e-1", FP)
    assert isinstance(duplicate, Running)
    await store.complete("e-1", FP, body("e-1"), store=True)
    assert await duplicate.wait() == body("e-1")


async def test_many_concurrent_duplicates_all_get_the_one_body(
    store: InMemoryIdempotencyStore,
) -> None:
    assert isinstance(await store.reserve("e-1", FP), Acquired)
    duplicates = 50
    all_waiting = asyncio.Event()
    joined = 0

    async def duplicate() -> bytes | None:
        nonlocal joined
        reservation = await store.reserve("e-1", FP)
        assert isinstance(reservation, Running)
        joined += 1
        if joined == duplicates:
            all_waiting.set()
        return await reservation.wait()

    async def original() -> None:
        await all_waiting.wait()
        await store.complete("e-1", FP, body("e-1", 42), store=True)

    *answers, _ = await asyncio.gather(*(duplicate() for _ in range(duplicates)), original())
    assert answers == [body("e-1", 42)] * duplicates


async def test_success_is_stored_and_given_again(store: InMemoryIdempotencyStore) -> None:
    await store.reserve("e-1", FP)
    await store.complete("e-1", FP, body("e-1"), store=True)
    assert await store.reserve("e-1", FP) == Stored(body("e-1"))


async def test_failure_is_not_stored_but_reaches_its_waiters(
    store: InMemoryIdempotencyStore,
) -> None:
    await store.reserve("e-1", FP)
    waiter = await store.reserve("e-1", FP)
    assert isinstance(waiter, Running)
    failure = body("e-1", success=False)
    await store.complete("e-1", FP, failure, store=False)
    assert await waiter.wait() == failure
    assert isinstance(await store.reserve("e-1", FP), Acquired)


async def test_waiter_gets_none_when_the_original_is_cancelled_and_may_run_it(
    store: InMemoryIdempotencyStore,
) -> None:
    started = asyncio.Event()

    async def original_call() -> None:
        assert isinstance(await store.reserve("e-1", FP), Acquired)
        try:
            started.set()
            await asyncio.Event().wait()  # a call that only ends by cancellation
        finally:
            await store.complete("e-1", FP, None, store=False)

    call = asyncio.create_task(original_call())
    await started.wait()
    waiter = await store.reserve("e-1", FP)
    assert isinstance(waiter, Running)
    call.cancel()
    assert await waiter.wait() is None
    assert isinstance(await store.reserve("e-1", FP), Acquired)
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_a_waiter_giving_up_leaves_the_others_waiting(
    store: InMemoryIdempotencyStore,
) -> None:
    await store.reserve("e-1", FP)
    first = await store.reserve("e-1", FP)
    second = await store.reserve("e-1", FP)
    assert isinstance(first, Running)
    assert isinstance(second, Running)
    impatient = asyncio.create_task(first.wait())
    patient = asyncio.create_task(second.wait())
    await asyncio.sleep(0)  # let both tasks start waiting
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    await store.complete("e-1", FP, body("e-1"), store=True)
    assert await patient == body("e-1")


async def test_joining_after_the_call_ended_gets_its_body_at_once(
    store: InMemoryIdempotencyStore,
) -> None:
    await store.reserve("e-1", FP)
    late = await store.reserve("e-1", FP)
    assert isinstance(late, Running)
    await store.complete("e-1", FP, body("e-1"), store=False)
    assert await late.wait() == body("e-1")


async def test_stored_answer_expires_after_the_ttl(
    store: InMemoryIdempotencyStore, clock: FakeClock
) -> None:
    await store.reserve("e-1", FP)
    await store.complete("e-1", FP, body("e-1"), store=True)
    clock.advance(299.9)
    assert isinstance(await store.reserve("e-1", FP), Stored)
    clock.advance(0.1)
    assert isinstance(await store.reserve("e-1", FP), Acquired)
    assert len(store) == 0


async def test_expired_answers_are_dropped_when_a_new_one_is_stored(clock: FakeClock) -> None:
    store = InMemoryIdempotencyStore(ttl=10, max_entries=100, clock=clock)
    for name in ("e-1", "e-2"):
        await store.reserve(name, FP)
        await store.complete(name, FP, body(name), store=True)
    clock.advance(11)
    await store.reserve("e-3", FP)
    await store.complete("e-3", FP, body("e-3"), store=True)
    assert len(store) == 1


async def test_oldest_answer_is_evicted_at_max_entries(clock: FakeClock) -> None:
    store = InMemoryIdempotencyStore(ttl=300, max_entries=3, clock=clock)
    for number in range(4):
        clock.advance(1)
        await store.reserve(f"e-{number}", FP)
        await store.complete(f"e-{number}", FP, body(f"e-{number}"), store=True)
    assert len(store) == 3
    assert isinstance(await store.reserve("e-0", FP), Acquired)
    for number in (1, 2, 3):
        assert await store.reserve(f"e-{number}", FP) == Stored(body(f"e-{number}"))


@pytest.mark.parametrize(
    "other",
    [
        call_fingerprint("add", None, {"a": 1, "b": 3}, None),
        call_fingerprint("multiply", None, {"a": 1, "b": 2}, None),
        call_fingerprint("add", "2.0", {"a": 1, "b": 2}, None),
        call_fingerprint("add", None, {"a": 1, "b": 2}, "mallory"),
    ],
    ids=["other-args", "other-function", "other-version", "other-caller"],
)
async def test_same_id_for_another_call_conflicts_running_or_stored(
    store: InMemoryIdempotencyStore, other: bytes
) -> None:
    await store.reserve("e-1", FP)
    assert isinstance(await store.reserve("e-1", other), Conflict)
    await store.complete("e-1", other, body("e-1", 99), store=True)  # not its reservation
    assert store.running == 1
    await store.complete("e-1", FP, body("e-1"), store=True)
    assert isinstance(await store.reserve("e-1", other), Conflict)
    assert await store.reserve("e-1", FP) == Stored(body("e-1"))


async def test_same_args_in_another_key_order_is_the_same_call(
    store: InMemoryIdempotencyStore,
) -> None:
    await store.reserve("e-1", call_fingerprint("add", None, {"a": 1, "b": 2}, "alice"))
    await store.complete(
        "e-1", call_fingerprint("add", None, {"b": 2, "a": 1}, "alice"), body("e-1"), store=True
    )
    again = await store.reserve("e-1", call_fingerprint("add", None, {"b": 2, "a": 1}, "alice"))
    assert again == Stored(body("e-1"))


async def test_completing_an_id_never_reserved_does_nothing(
    store: InMemoryIdempotencyStore,
) -> None:
    await store.complete("ghost", FP, body("ghost"), store=True)
    assert len(store) == 0
    assert isinstance(await store.reserve("ghost", FP), Acquired)


def test_replayed_body_adds_the_flag_and_keeps_everything_else() -> None:
    original = to_json(
        {
            "success": True,
            "result": {"total": 1.5, "items": ["ä", 2**70]},
            "error": None,
            "metadata": {"executionId": "e-1", "durationMs": 0.4},
        }
    )
    replayed = from_json(replayed_body(original))
    expected = from_json(original)
    expected["metadata"]["replayed"] = True
    assert replayed == expected
    assert list(replayed) == ["success", "result", "error", "metadata"]


def test_build_store_is_none_when_ttl_is_zero() -> None:
    assert build_idempotency_store(Settings(_env_file=None, idempotency_ttl=0)) is None  # type: ignore[call-arg]


async def test_built_store_honours_the_size_setting() -> None:
    settings = Settings(_env_file=None, idempotency_max_entries=1)  # type: ignore[call-arg]
    store = build_idempotency_store(settings)
    assert store is not None
    for name in ("e-1", "e-2"):
        await store.reserve(name, FP)
        await store.complete(name, FP, body(name), store=True)
    assert isinstance(await store.reserve("e-1", FP), Acquired)
    assert isinstance(await store.reserve("e-2", FP), Stored)


async def test_stored_answers_are_bounded_in_bytes_too_oldest_first() -> None:
    from metatwin_functions.idempotency import InMemoryIdempotencyStore, Stored

    store = InMemoryIdempotencyStore(300, 1000, max_bytes=3000)
    for n in range(5):
        key = f"big-{n}"
        await store.reserve(key, b"fp")
        await store.complete(key, b"fp", b"x" * 1000, store=True)
    assert store.stored_bytes <= 3000
    assert len(store) == 3
    assert not isinstance(await store.reserve("big-0", b"fp"), Stored)  # evicted: runs again
    assert isinstance(await store.reserve("big-4", b"fp"), Stored)
    await store.reserve("huge", b"fp")
    await store.complete("huge", b"fp", b"y" * 5000, store=True)  # over the whole budget
    assert not isinstance(await store.reserve("huge", b"fp"), Stored)
    assert isinstance(await store.reserve("big-4", b"fp"), Stored)  # nothing evicted for it
