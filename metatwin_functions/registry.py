"""``@Function``: turning Python functions into `FunctionSpec` records of a `FunctionRegistry`."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, overload

from .errors import RegistrationError
from .schedules import Schedule, build_schedule
from .signature import SignatureInfo, read_signature
from .versions import add_definition, check_version, parse_requested_version, version_key

__all__ = ["Function", "FunctionKind", "FunctionRegistry", "FunctionSpec", "default_registry"]

F = TypeVar("F", bound=Callable[..., Any])

# --- streams: how a function is run and what it gives back ---
FunctionKind = Literal["async", "sync", "async_generator", "sync_generator"]
"""``async def``, ``def`` (thread pool), ``async def`` with ``yield``, ``def`` with ``yield``."""


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A registered function and everything serving it needs, computed once."""

    name: str
    description: str
    func: Callable[..., Any]
    is_async: bool
    timeout: float | None
    signature: SignatureInfo = field(repr=False)
    #: The caller needs one of these roles (empty: any authenticated caller, or anyone).
    roles: frozenset[str] = frozenset()
    #: Most calls of this function in flight in this process (None: no limit).
    max_concurrency: int | None = None
    #: Token-bucket rate limit such as ``"100/s"`` (None: no limit).
    rate_limit: str | None = None
    # --- versions and schedules ---
    #: PEP 440 version as declared (None: the name has a single, unversioned definition).
    version: str | None = None
    #: When the function runs by itself (None: only when called).
    schedule: Schedule | None = None
    # --- streams ---
    #: How it runs; generators are collected by ``/exec`` and streamed by streams.
    kind: FunctionKind = "sync"


class FunctionRegistry:
    """An ordered set of functions, addressed by name and, where declared, by version.

    Iteration semantics: ``for spec in registry``, ``len(registry)`` and `names`
    see one entry per name, in the order names were first registered, that entry being the
    name's highest version (what a call without ``version`` runs). `specs` lists every version
    of every name; `versions` the versions of one name, ascending.
    """

    def __init__(self) -> None:
        # Per name, its definitions in ascending version order (one, unversioned, or versioned).
        self._specs: dict[str, list[FunctionSpec]] = {}

    def register(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> FunctionSpec:
        """Register ``func`` and return its spec; `RegistrationError` if it cannot be served.

        ``options`` are `build_spec`'s: ``roles``, ``max_concurrency``, ``rate_limit``,
        ``version``, ``schedule``, ``every``, ``schedule_args``.
        """
        spec = build_spec(func, name=name, description=description, timeout=timeout, **options)
        self._specs[spec.name] = add_definition(self._specs.get(spec.name, []), spec)
        return spec

    def function(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Callable[[F], F]:
        """Decorator form of `register`, bound to this registry."""

        def decorate(func: F) -> F:
            self.register(func, name=name, description=description, timeout=timeout, **options)
            return func

        return decorate

    def get(self, name: str, version: str | None = None) -> FunctionSpec | None:
        """The spec called ``name``: its highest version, or exactly ``version``; else None.

        ``version`` matches under PEP 440 equality (``"1.2"`` finds ``"1.2.0"``); an
        unversioned function has no version to match.
        """
        specs = self._specs.get(name)
        if not specs:
            return None
        if version is None:
            return specs[-1]
        wanted = parse_requested_version(version)
        if wanted is None:
            return None
        for spec in specs:
            if spec.version is not None and version_key(spec.version) == wanted:
                return spec
        return None

    def versions(self, name: str) -> list[FunctionSpec]:
        """Every definition of ``name``, lowest version first (empty if none)."""
        return list(self._specs.get(name, ()))

    def specs(self) -> list[FunctionSpec]:
        """Every registered definition: names in registration order, versions ascending."""
        return [spec for specs in self._specs.values() for spec in specs]

    def unregister(self, name: str, version: str | None = None) -> None:
        """Forget ``name`` (every version, or only ``version``); no error if it is not there."""
        if version is None:
            self._specs.pop(name, None)
            return
        spec = self.get(name, version)
        if spec is not None:
            remaining = [other for other in self._specs[name] if other is not spec]
            if remaining:
                self._specs[name] = remaining
            else:
                del self._specs[name]

    def clear(self) -> None:
        """Forget every function."""
        self._specs.clear()

    @property
    def names(self) -> list[str]:
        """Registered names in registration order, each once."""
        return list(self._specs)

    def __iter__(self) -> Iterator[FunctionSpec]:
        """The highest version of each name, in registration order (see the class docs)."""
        return iter([specs[-1] for specs in self._specs.values()])

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __repr__(self) -> str:
        return f"FunctionRegistry({self.names!r})"


default_registry = FunctionRegistry()
"""The registry ``@Function`` uses unless given another."""


def build_spec(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    roles: Iterable[str] | None = None,
    max_concurrency: int | None = None,
    rate_limit: str | None = None,
    version: str | None = None,
    schedule: str | None = None,
    every: float | None = None,
    schedule_args: Mapping[str, Any] | None = None,
) -> FunctionSpec:
    """Inspect ``func`` once and build its `FunctionSpec`."""
    if not callable(func) or isinstance(func, type):
        raise RegistrationError(
            f"@Function needs a function (async def or def), got {type(func).__name__}: {func!r}"
        )
    resolved_name = getattr(func, "__name__", None) if name is None else name
    if not isinstance(resolved_name, str) or not resolved_name.strip():
        raise RegistrationError(
            f"@Function needs a non-empty string name for {func!r}, got {resolved_name!r}"
        )
    if description is not None and not isinstance(description, str):
        raise RegistrationError(f"Function '{resolved_name}': description must be a string")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise RegistrationError(
            f"Function '{resolved_name}': timeout must be a positive number of seconds, "
            f"got {timeout!r}"
        )
    role_set = _roles(resolved_name, roles)
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise RegistrationError(
            f"Function '{resolved_name}': max_concurrency must be a positive integer, "
            f"got {max_concurrency!r}"
        )
    if rate_limit is not None:
        _check_rate(resolved_name, rate_limit)
    kind = _kind(func)  # generators are served (collected or streamed)
    # checked before the signature is read, so a bad version is named first.
    checked_version = None if version is None else check_version(resolved_name, version)
    signature = read_signature(func, resolved_name)
    return FunctionSpec(
        name=resolved_name,
        description=_first_docstring_line(func) if description is None else description,
        func=func,
        is_async=kind in ("async", "async_generator"),
        kind=kind,
        timeout=None if timeout is None else float(timeout),
        signature=signature,
        roles=role_set,
        max_concurrency=max_concurrency,
        rate_limit=rate_limit,
        version=checked_version,
        schedule=build_schedule(resolved_name, signature, schedule, every, schedule_args),
    )


def _roles(name: str, roles: Iterable[str] | None) -> frozenset[str]:
    if roles is None:
        return frozenset()
    if isinstance(roles, str) or not all(isinstance(r, str) and r.strip() for r in roles):
        raise RegistrationError(
            f"Function '{name}': roles must be a list of non-empty strings, got {roles!r}"
        )
    return frozenset(r.strip() for r in roles)


def _check_rate(name: str, rate_limit: object) -> None:
    from .rates import parse_rate

    if not isinstance(rate_limit, str):
        raise RegistrationError(
            f"Function '{name}': rate_limit must be a string such as \"100/s\", got {rate_limit!r}"
        )
    try:
        parse_rate(rate_limit)
    except ValueError as exc:
        raise RegistrationError(f"Function '{name}': {exc}") from None


@overload
def Function(func: F, /) -> F: ...
@overload
def Function(
    name: str | None = None,
    /,
    *,
    description: str | None = None,
    timeout: float | None = None,
    registry: FunctionRegistry | None = None,
    roles: Iterable[str] | None = None,
    max_concurrency: int | None = None,
    rate_limit: str | None = None,
    version: str | None = None,
    schedule: str | None = None,
    every: float | None = None,
    schedule_args: Mapping[str, Any] | None = None,
) -> Callable[[F], F]: ...
@overload
def Function(
    *,
    name: str | None,
    description: str | None = None,
    timeout: float | None = None,
    registry: FunctionRegistry | None = None,
    roles: Iterable[str] | None = None,
    max_concurrency: int | None = None,
    rate_limit: str | None = None,
    version: str | None = None,
    schedule: str | None = None,
    every: float | None = None,
    schedule_args: Mapping[str, Any] | None = None,
) -> Callable[[F], F]: ...
def Function(  # noqa: N802 - the contract's name for the decorator
    func_or_name: Any = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    registry: FunctionRegistry | None = None,
    roles: Iterable[str] | None = None,
    max_concurrency: int | None = None,
    rate_limit: str | None = None,
    version: str | None = None,
    schedule: str | None = None,
    every: float | None = None,
    schedule_args: Mapping[str, Any] | None = None,
) -> Any:
    """Register a function to be served.

    Every form works: ``@Function``, ``@Function()``, ``@Function("name")`` and
    ``@Function(name=..., description=..., timeout=..., registry=...)``. ``roles`` restricts the
    function to callers holding one of them; ``max_concurrency`` and ``rate_limit`` (``"100/s"``,
    ``"20/m"``, ``"5/h"``) cap its calls in this process. ``version`` (PEP 440, e.g.
    ``"1.2.0"``) lets several definitions of one name sit side by side: a call picks one with
    its envelope's ``version``, else the highest runs. ``schedule`` (5-field cron, UTC) or
    ``every`` (seconds) runs the function by itself with ``schedule_args``. The name defaults to the
    function's ``__name__``, the description to the first line of its docstring, the timeout to
    ``CRBR_FUNCTIONS_TIMEOUT``; no timeout exceeds ``CRBR_FUNCTIONS_MAX_TIMEOUT``. The function is
    returned unchanged, so it stays callable as before.
    """
    target = default_registry if registry is None else registry
    options: dict[str, Any] = {
        "description": description,
        "timeout": timeout,
        "roles": roles,
        "max_concurrency": max_concurrency,
        "rate_limit": rate_limit,
        "version": version,
        "schedule": schedule,
        "every": every,
        "schedule_args": schedule_args,
    }
    if func_or_name is not None and not isinstance(func_or_name, str):
        target.register(func_or_name, name=name, **options)
        return func_or_name
    if func_or_name is not None and name is not None:
        raise RegistrationError("@Function got two names; pass it once")
    return target.function(func_or_name if func_or_name is not None else name, **options)


def _kind(func: Callable[..., Any]) -> FunctionKind:
    call = getattr(func, "__call__", None)  # noqa: B004 - callable objects count too
    for target in (func, call):
        if target is None:
            continue
        if inspect.isasyncgenfunction(target):
            return "async_generator"
        if inspect.iscoroutinefunction(target):
            return "async"
        if inspect.isgeneratorfunction(target):
            return "sync_generator"
    return "sync"


def _first_docstring_line(func: Callable[..., Any]) -> str:
    doc = inspect.getdoc(func)
    if not doc:
        return ""
    return doc.strip().splitlines()[0].strip()
