"""Reading ``CRBR_*`` variables: the process environment, a ``.env`` file, and typo hints.

The ``.env`` format is deliberately small (the common subset of docker, compose and dotenv):

- one ``KEY=VALUE`` a line; blank lines and lines starting with ``#`` are skipped;
- an optional ``export`` prefix (``export CRBR_FUNCTIONS_PORT=8080``);
- a value in single quotes is taken literally; in double quotes ``\\"``, ``\\\\`` and ``\\n``
  are escapes; an unquoted value is stripped and ends where a ``#`` follows whitespace (a
  comment), so ``KEY=   # note`` is empty and ``KEY=#x`` is ``#x``;
- no variable expansion and no multi-line values.

Only ``CRBR_*`` names are taken from it; a line that is not ``KEY=VALUE`` is an error naming
the file and line, so a broken ``.env`` never passes silently.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from .errors import ConfigurationError

__all__: list[str] = []

PREFIX = "CRBR_"
# Stripped before looking for a close match, so that ``port`` finds ``functions_port``.
_COMMENT = re.compile(r"\s#")
_NAME_PREFIXES = ("functions_", "rabbitmq_", "amqp_exec_", "auth_", "idempotency_")


def parse_dotenv(text: str, source: str = ".env") -> dict[str, str]:
    """Every ``KEY=VALUE`` of a ``.env`` text (see the module's docstring for the format)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("export ", "export\t")):
            line = line[len("export") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or any(char.isspace() for char in key):
            raise ConfigurationError(f"{source}, line {number}: expected KEY=VALUE, got {raw!r}")
        values[key] = _unquote(value, f"{source}, line {number}")
    return values


def _unquote(raw: str, where: str) -> str:
    value = raw.strip()
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = _closing_quote(value, quote)
        if end < 0:
            raise ConfigurationError(f"{where}: the value has no closing {quote}")
        rest = value[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise ConfigurationError(f"{where}: unexpected text after the closing {quote}")
        inner = value[1:end]
        if quote == "'":
            return inner
        return _unescape(inner)
    # A ``#`` after whitespace starts a comment; ``KEY=#x`` is the value ``#x``.
    comment = _COMMENT.search(raw)
    return (raw[: comment.start()] if comment else raw).strip()


def _closing_quote(value: str, quote: str) -> int:
    index = 1
    while index < len(value):
        if quote == '"' and value[index] == "\\":
            index += 2
            continue
        if value[index] == quote:
            return index
        index += 1
    return -1


def _unescape(inner: str) -> str:
    out: list[str] = []
    chars = iter(inner)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        following = next(chars, "\\")
        out.append({"n": "\n", '"': '"', "\\": "\\"}.get(following, "\\" + following))
    return "".join(out)


def crbr_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """``CRBR_*`` entries by their upper-case name; an upper-case spelling wins over others."""
    found: dict[str, str] = {}
    for name, value in environ.items():
        upper = name.upper()
        if upper.startswith(PREFIX) and (name == upper or upper not in found):
            found[upper] = value
    return found


def read_variables(env_file: str | os.PathLike[str] | None) -> dict[str, str]:
    """``CRBR_*`` variables of ``env_file`` (when it exists) overlaid by the environment's.

    Blank values are dropped: an empty variable means "use the default".
    """
    merged: dict[str, str] = {}
    if env_file is not None:
        path = Path(env_file)
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            merged.update(crbr_variables(parse_dotenv(text, str(env_file))))
    merged.update(crbr_variables(os.environ))
    return {name: value for name, value in merged.items() if value.strip()}


def suggest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name``, if one is close enough to be a likely typo."""
    lowered = name.lower()
    candidates: dict[str, str] = {}
    for field in known:
        candidates.setdefault(field, field)
        for prefix in _NAME_PREFIXES:
            if field.startswith(prefix):
                candidates.setdefault(field[len(prefix) :], field)
    matches = difflib.get_close_matches(lowered, list(candidates), n=1, cutoff=0.6)
    return candidates[matches[0]] if matches else None


def unknown_names_message(names: Iterable[str], known: Iterable[str], *, variables: bool) -> str:
    """``'a' (did you mean b?), 'c'``: the names that are not settings, each with a hint."""
    fields = list(known)
    parts = []
    for name in names:
        field_name = name[len(PREFIX) :] if variables else name
        hint = suggest(field_name, fields)
        if hint is not None and variables:
            hint = PREFIX + hint.upper()
        parts.append(f"{name} (did you mean {hint}?)" if hint else name)
    return ", ".join(parts)
