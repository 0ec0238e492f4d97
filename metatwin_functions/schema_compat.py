"""Does one JSON Schema accept every value another accepts? The core of ``metatwin-functions diff``.

`widens(old, new)` answers for the schemas pydantic writes for Python type hints: ``type`` (with
integer inside number), ``anyOf``/``oneOf``, ``enum``/``const``, ``items``, ``prefixItems``,
object ``properties``/``required``/``additionalProperties``, numeric and length bounds,
``pattern`` and ``format``, and ``$ref`` into ``$defs``. What it cannot prove compatible it
reports as a change, so the check errs on the side of stopping a deployment.
"""

from __future__ import annotations

from typing import Any

__all__ = ["widens"]

_NEUTRAL = frozenset(
    {"title", "description", "default", "examples", "$defs", "deprecated", "readOnly", "writeOnly"}
)
_HANDLED = frozenset(
    {
        "type",
        "anyOf",
        "oneOf",
        "enum",
        "const",
        "items",
        "prefixItems",
        "properties",
        "required",
        "additionalProperties",
        "$ref",
        "minimum",
        "exclusiveMinimum",
        "minLength",
        "minItems",
        "minProperties",
        "maximum",
        "exclusiveMaximum",
        "maxLength",
        "maxItems",
        "maxProperties",
        "uniqueItems",
    }
)
_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_MAX_DEPTH = 32


def widens(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """None if ``new`` accepts every value ``old`` accepts; else why not, in a few words."""
    return _Checker(old.get("$defs", {}), new.get("$defs", {})).check(old, new, 0)


class _Checker:
    def __init__(self, old_defs: dict[str, Any], new_defs: dict[str, Any]) -> None:
        self.old_defs = old_defs
        self.new_defs = new_defs

    def check(self, old: Any, new: Any, depth: int) -> str | None:
        if depth > _MAX_DEPTH:
            return None if old == new else "a nested type changed"
        old = _resolve(old, self.old_defs)
        new = _resolve(new, self.new_defs)
        if new is True or _unconstrained(new):
            return None
        if old is False:
            return None
        if old is True or _unconstrained(old):
            return f"took any value, now only {_name(new)}"
        for branch_key in ("anyOf", "oneOf"):
            if branch_key in old:
                for branch in old[branch_key]:
                    reason = self.check(_merge(old, branch_key, branch), new, depth + 1)
                    if reason is not None:
                        return reason
                return None
        for branch_key in ("anyOf", "oneOf"):
            if branch_key in new:
                reasons = [
                    self.check(old, _merge(new, branch_key, branch), depth + 1)
                    for branch in new[branch_key]
                ]
                if any(reason is None for reason in reasons):
                    return None
                return f"{_name(old)} is no longer accepted (now {_name(new)})"
        return self._plain(old, new, depth)

    def _plain(self, old: dict[str, Any], new: dict[str, Any], depth: int) -> str | None:
        reason = _types(old, new) or _values(old, new) or _bounds(old, new)
        if reason is not None:
            return reason
        if "items" in new and "items" in old:
            reason = self.check(old["items"], new["items"], depth + 1)
            if reason is not None:
                return f"items: {reason}"
        elif "items" in new and not _unconstrained(new["items"]):
            return f"items were any value, now only {_name(new['items'])}"
        if old.get("prefixItems") != new.get("prefixItems") and "prefixItems" in new:
            return "the tuple's items changed"
        reason = self._objects(old, new, depth)
        if reason is not None:
            return reason
        for key in new:
            if key not in _NEUTRAL and key not in _HANDLED and new[key] != old.get(key):
                return f"'{key}' changed from {old.get(key)!r} to {new[key]!r}"
        return None

    def _objects(self, old: dict[str, Any], new: dict[str, Any], depth: int) -> str | None:
        old_properties: dict[str, Any] = old.get("properties", {})
        new_properties: dict[str, Any] = new.get("properties", {})
        missing = set(new.get("required", ())) - set(old.get("required", ()))
        if missing:
            return f"field(s) {', '.join(sorted(missing))} are now required"
        new_extra = new.get("additionalProperties", True)
        for key, schema in old_properties.items():
            target = new_properties.get(key, new_extra)
            reason = self.check(schema, target, depth + 1)
            if reason is not None:
                return f"field '{key}': {reason}"
        old_extra = old.get("additionalProperties", True)
        if old_extra is not False and new_extra is not True:
            reason = self.check(old_extra, new_extra, depth + 1)
            if reason is not None:
                return f"other fields: {reason}"
        return None


def _resolve(schema: Any, defs: dict[str, Any]) -> Any:
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < _MAX_DEPTH:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        rest = {key: value for key, value in schema.items() if key != "$ref"}
        schema = {**defs.get(name, {}), **rest}
        seen += 1
    return schema


def _unconstrained(schema: Any) -> bool:
    return isinstance(schema, dict) and all(key in _NEUTRAL for key in schema)


def _merge(schema: dict[str, Any], key: str, branch: Any) -> Any:
    rest = {k: v for k, v in schema.items() if k != key and k not in _NEUTRAL}
    return {**rest, **branch} if isinstance(branch, dict) else branch


def _type_set(schema: dict[str, Any]) -> set[str] | None:
    declared = schema.get("type")
    if declared is None:
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def _types(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    old_types, new_types = _type_set(old), _type_set(new)
    if new_types is None:
        return None
    if old_types is None:
        if "const" in old or "enum" in old:
            return None  # the values are checked one by one
        return f"took any value, now only {_name(new)}"
    accepted = set(new_types)
    if "number" in accepted:
        accepted.add("integer")
    lost = old_types - accepted
    return f"{', '.join(sorted(lost))} no longer accepted (now {_name(new)})" if lost else None


def _values(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    if "const" not in new and "enum" not in new:
        if "const" in old or "enum" in old:
            return _values_fit_types(old, new)
        return None
    allowed = [new["const"]] if "const" in new else list(new["enum"])
    if "const" not in old and "enum" not in old:
        return f"any {_name(old)} was accepted, now only {allowed!r}"
    given = [old["const"]] if "const" in old else list(old["enum"])
    lost = [value for value in given if value not in allowed]
    return f"value(s) {lost!r} no longer accepted" if lost else None


def _values_fit_types(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    types = _type_set(new)
    if types is None:
        return None
    given = [old["const"]] if "const" in old else list(old["enum"])
    lost = [value for value in given if _json_type(value) not in types | _wider(types)]
    return f"value(s) {lost!r} no longer accepted" if lost else None


def _wider(types: set[str]) -> set[str]:
    return {"integer"} if "number" in types else set()


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _bounds(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    for key in _LOWER:
        if key in new and (key not in old or old[key] < new[key]):
            return f"{key} is now {new[key]!r} (was {old.get(key)!r})"
    for key in _UPPER:
        if key in new and (key not in old or old[key] > new[key]):
            return f"{key} is now {new[key]!r} (was {old.get(key)!r})"
    if new.get("uniqueItems") and not old.get("uniqueItems"):
        return "items must now be unique"
    return None


def _name(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "any value" if schema is True else "no value"
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return f"one of {schema['enum']!r}"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(_name(branch) for branch in schema[key])
    declared = schema.get("type")
    if isinstance(declared, list):
        return " | ".join(declared)
    if declared == "array" and "items" in schema:
        return f"array of {_name(schema['items'])}"
    return str(declared or schema.get("title") or "a constrained value")
