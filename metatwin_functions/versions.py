"""PEP 440 versions of functions: checking them at decoration, ordering them, matching a request.

Several versions of one name sit side by side in a `FunctionRegistry`. A call without a version
runs the highest; a call with one runs the version equal to it under PEP 440 (so ``"1.2"`` finds
``"1.2.0"``, and ``"v1.2.0"`` finds it too), or is not found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from packaging.version import InvalidVersion, Version

from .envelope import MAX_VERSION_LENGTH
from .errors import RegistrationError

if TYPE_CHECKING:
    from .registry import FunctionSpec

__all__ = ["add_definition", "check_version", "parse_requested_version", "version_key"]


def check_version(function_name: str, version: object) -> str:
    """The declared version, checked; `RegistrationError` naming the function if not PEP 440."""
    if not isinstance(version, str):
        raise RegistrationError(
            f"Function '{function_name}': version must be a PEP 440 string such as '1.2.0', "
            f"got {version!r}"
        )
    text = version.strip()
    try:
        if len(text) > MAX_VERSION_LENGTH:
            raise InvalidVersion(version)
        Version(text)
    except InvalidVersion:
        raise RegistrationError(
            f"Function '{function_name}': version {version!r} is not a PEP 440 version "
            "(such as '1.2.0', '2.0rc1' or '1.0.post1')"
        ) from None
    return text


def version_key(version: str) -> Version:
    """The sort key of a version already accepted by `check_version`."""
    return Version(version)


def parse_requested_version(version: str) -> Version | None:
    """The version a request asks for; None if it is no PEP 440 version (nothing matches)."""
    if len(version) > MAX_VERSION_LENGTH:
        return None
    try:
        return Version(version.strip())
    except InvalidVersion:
        return None


def add_definition(existing: list[FunctionSpec], spec: FunctionSpec) -> list[FunctionSpec]:
    """``existing`` with ``spec`` added or (same code registered again) replaced; sorted."""
    for index, other in enumerate(existing):
        if spec.version is None or other.version is None:
            if spec.version is None and other.version is None:
                clash = (
                    f"A function named '{spec.name}' is already registered "
                    f"({_where(other.func)}); pick another name for {_where(spec.func)}"
                )
            else:
                clash = (
                    f"Function '{spec.name}': {_where(spec.func)} and {_where(other.func)} "
                    "share the name but only one has a version; give every definition of "
                    f"'{spec.name}' a version"
                )
        elif version_key(spec.version) == version_key(other.version):
            clash = (
                f"Function '{spec.name}': version '{spec.version}' is registered twice "
                f"({_where(other.func)} and {_where(spec.func)}); give each a version of its own"
            )
        else:
            continue
        same = _same_definition(other.func, spec.func)
        if same and spec.version is not None:
            # Two definitions of one version in one scope (same qualname) are a mistake too;
            # only the same code registered again (a module imported twice) replaces.
            same = _code_line(other.func) == _code_line(spec.func)
        if not same:
            raise RegistrationError(clash)
        return [*existing[:index], spec, *existing[index + 1 :]]
    scheduled = next((other for other in existing if other.schedule is not None), None)
    if spec.schedule is not None and scheduled is not None:
        # Both would tick under one execution id (schedule:<name>:<tick>): one schedule a name.
        raise RegistrationError(
            f"Function '{spec.name}': versions '{scheduled.version}' and '{spec.version}' both "
            "have a schedule; schedule one version of a name only"
        )
    specs = [*existing, spec]
    if spec.version is not None:
        specs.sort(key=lambda item: version_key(item.version or "0"))
    return specs


def _same_definition(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # A module imported twice (e.g. as a script and as a module) re-registers the same code.
    return a is b or (
        getattr(a, "__module__", None) == getattr(b, "__module__", None)
        and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None)
    )


def _code_line(func: Callable[..., Any]) -> tuple[str, int] | None:
    code = getattr(func, "__code__", None)
    return None if code is None else (code.co_filename, code.co_firstlineno)


def _where(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", "?")
    qualname = getattr(func, "__qualname__", repr(func))
    return f"{module}.{qualname}"
