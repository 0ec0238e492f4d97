"""``metatwin-functions diff OLD NEW``: what a new deployment breaks for callers of the old one.

Compares two ``describe --json`` documents. Breaking: a removed function or version, a removed
argument, a new required argument (or one that became required), an argument whose type no
longer accepts every value it did, a return type that now returns values the old one did not
allow. Calls without a version run the highest one, so when the highest version changes, the old
highest is compared with the new highest too. Additions are reported, never breaking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from .schema_compat import widens

__all__ = ["Change", "diff_descriptions"]


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two descriptions."""

    breaking: bool
    function: str
    message: str
    version: str | None = None

    def __str__(self) -> str:
        where = self.function if self.version is None else f"{self.function} {self.version}"
        return f"{'BREAKING' if self.breaking else 'ok'}: {where}: {self.message}"


def diff_descriptions(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every change from ``old`` to ``new`` (two ``describe --json`` documents), breaking first."""
    old_functions = {entry["name"]: entry for entry in _functions(old, "OLD")}
    new_functions = {entry["name"]: entry for entry in _functions(new, "NEW")}
    changes: list[Change] = []
    for name, before in old_functions.items():
        after = new_functions.get(name)
        if after is None:
            changes.append(Change(True, name, "function removed"))
        else:
            changes.extend(_function_changes(name, before, after))
    changes.extend(
        Change(False, name, "function added") for name in new_functions if name not in old_functions
    )
    return sorted(changes, key=lambda change: not change.breaking)


def _functions(document: Any, label: str) -> list[dict[str, Any]]:
    functions = document.get("functions") if isinstance(document, dict) else None
    if not isinstance(functions, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("name"), str) for entry in functions
    ):
        raise ValueError(f"{label} is not a 'describe --json' document (no 'functions' list)")
    return functions


def _definitions(entry: dict[str, Any]) -> dict[Version | None, dict[str, Any]]:
    definitions = entry.get("definitions")
    if not definitions:
        return {_key(entry.get("version")): entry}
    return {_key(definition.get("version")): definition for definition in definitions}


def _key(version: Any) -> Version | None:
    if version is None:
        return None
    try:
        return Version(str(version))
    except InvalidVersion:
        return None


def _function_changes(name: str, before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    changes: list[Change] = []
    old_definitions, new_definitions = _definitions(before), _definitions(after)
    versioned = any(key is not None for key in old_definitions)
    for key, definition in old_definitions.items():
        version = definition.get("version")
        if key is None and versioned:
            continue
        counterpart = new_definitions.get(key)
        if counterpart is None and key is not None:
            changes.append(Change(True, name, "version removed", version))
            continue
        if counterpart is not None:
            changes.extend(_signature_changes(name, version, definition, counterpart))
    for key, definition in new_definitions.items():
        if key is not None and key not in old_definitions:
            changes.append(Change(False, name, "version added", definition.get("version")))
    old_top, new_top = before.get("version"), after.get("version")
    if _key(old_top) != _key(new_top):
        # Callers that send no version now reach another definition: compare what they get.
        label = f"calls without a version now run {new_top or 'the unversioned definition'}"
        for change in _signature_changes(name, None, before, after):
            changes.append(
                Change(change.breaking, name, f"{label} (was {old_top}): {change.message}")
            )
    return changes


def _signature_changes(
    name: str, version: str | None, old: dict[str, Any], new: dict[str, Any]
) -> list[Change]:
    changes: list[Change] = []
    old_args = {arg["name"]: arg for arg in old.get("args", [])}
    new_args = {arg["name"]: arg for arg in new.get("args", [])}
    for arg_name, before in old_args.items():
        after = new_args.get(arg_name)
        if after is None:
            changes.append(Change(True, name, f"argument '{arg_name}' removed", version))
            continue
        if after.get("required") and not before.get("required"):
            changes.append(Change(True, name, f"argument '{arg_name}' is now required", version))
        reason = _type_change(before, after, "schema", "type")
        if reason is not None:
            changes.append(
                Change(
                    True,
                    name,
                    f"argument '{arg_name}' no longer accepts what it did: "
                    f"{before.get('type')} -> {after.get('type')} ({reason})",
                    version,
                )
            )
    for arg_name, after in new_args.items():
        if arg_name not in old_args:
            if after.get("required"):
                changes.append(Change(True, name, f"new required argument '{arg_name}'", version))
            else:
                changes.append(Change(False, name, f"new optional argument '{arg_name}'", version))
    reason = _type_change(new, old, "returnSchema", "returnType")
    if reason is not None:
        message = (
            f"return type {old.get('returnType')} -> {new.get('returnType')}: it may return "
            "values the old type did not, which callers do not expect"
        )
        changes.append(Change(True, name, message, version))
    return changes


def _type_change(
    accepted: dict[str, Any], accepting: dict[str, Any], schema_key: str, type_key: str
) -> str | None:
    """Why ``accepting``'s type does not accept all of ``accepted``'s, or None."""
    old_schema, new_schema = accepted.get(schema_key), accepting.get(schema_key)
    if isinstance(old_schema, dict) and isinstance(new_schema, dict):
        return widens(old_schema, new_schema)
    if accepted.get(type_key) == accepting.get(type_key):
        return None
    return "changed, and there is no schema to prove it safe"
