"""API keys: parsing ``CRBR_AUTH_API_KEYS`` and checking a presented key in constant time.

Entry grammar (entries separated by ``,``, blanks around them ignored, empty entries skipped):

- ``KEY`` or ``KEY:role1|role2``: the key itself. The roles suffix is whatever follows the
  **last** ``:``, so a key that itself contains ``:`` must end with a ``:`` (``a:b:`` is the key
  ``a:b`` with no roles; ``a:b:admin`` is the key ``a:b`` with the role ``admin``), or be given
  in its ``sha256:`` form.
- ``sha256:<64 hex digits>`` or ``sha256:<64 hex digits>:role1|role2``: the SHA-256 of the key,
  so that the secret need not sit in a manifest. An entry starting with ``sha256:`` (in any
  letter case) is always read this way: a plain key cannot start with ``sha256:``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from .context import Principal
from .errors import ConfigurationError, UnauthorizedError

__all__ = ["ApiKeyAuthenticator", "ApiKeyEntry", "parse_api_keys"]

VARIABLE = "CRBR_AUTH_API_KEYS"
_SHA256_PREFIX = "sha256:"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
#: What a JWT looks like on the wire: three base64url parts (the last empty for ``alg: none``).
JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class ApiKeyEntry:
    """One configured key: the SHA-256 digest of the key and the roles it grants."""

    digest: bytes
    roles: frozenset[str]
    #: The entry's position in the variable (1-based), to name it in errors without the key.
    position: int = 0
    #: True when the entry held the key itself (not its digest): used to spot JWT-shaped keys.
    looks_like_jwt: bool = False

    @property
    def subject(self) -> str:
        """``api-key:<first 12 hex digits of the key's SHA-256>``: names a key, reveals nothing."""
        return f"api-key:{self.digest.hex()[:12]}"


def digest(key: str) -> bytes:
    """The SHA-256 of a key's UTF-8 bytes (lone surrogates from odd bytes kept, not refused)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def parse_api_keys(text: str) -> list[ApiKeyEntry]:
    """Parse ``CRBR_AUTH_API_KEYS``; `ConfigurationError` names a bad entry by position only."""
    entries: list[ApiKeyEntry] = []
    seen: dict[bytes, int] = {}
    for position, raw in enumerate(text.split(","), start=1):
        item = raw.strip()
        if not item:
            continue
        entry = _parse_entry(item, position)
        earlier = seen.get(entry.digest)
        if earlier is not None:
            raise ConfigurationError(
                f"{VARIABLE}: entries {earlier} and {position} are the same key; "
                "list each key once, with all its roles"
            )
        seen[entry.digest] = position
        entries.append(entry)
    if not entries:
        raise ConfigurationError(f"{VARIABLE} is set but holds no key")
    return entries


def _parse_entry(item: str, position: int) -> ApiKeyEntry:
    where = f"{VARIABLE}: entry {position}"
    # Any case: ``SHA256:<hex>`` read as a plain key would make the digest a role.
    if item[: len(_SHA256_PREFIX)].lower() == _SHA256_PREFIX:
        digest_hex, sep, roles_text = item[len(_SHA256_PREFIX) :].partition(":")
        if not _HEX64.fullmatch(digest_hex):
            raise ConfigurationError(
                f"{where}: a 'sha256:' entry needs exactly 64 hexadecimal digits"
            )
        return ApiKeyEntry(
            bytes.fromhex(digest_hex), _roles(roles_text, sep, where), position=position
        )
    key, sep, roles_text = item.rpartition(":")
    if not sep:
        key, roles_text = item, ""
    key = key.strip()
    if not key:
        raise ConfigurationError(f"{where}: the key is empty")
    return ApiKeyEntry(
        digest(key),
        _roles(roles_text, sep, where),
        position=position,
        looks_like_jwt=JWT_SHAPE.fullmatch(key) is not None,
    )


def _roles(text: str, sep: str, where: str) -> frozenset[str]:
    if not sep or not text.strip():
        return frozenset()
    roles = text.split("|")
    if any(len(role.split()) != 1 for role in roles):
        raise ConfigurationError(
            f"{where}: roles must be non-empty names without spaces, separated by '|'"
        )
    return frozenset(role.strip() for role in roles)


class ApiKeyAuthenticator:
    """Checks a presented key against every configured key, in constant time."""

    def __init__(self, entries: list[ApiKeyEntry]) -> None:
        self._entries = tuple(entries)

    def verify(self, key: str) -> Principal:
        """The principal of ``key``, or `UnauthorizedError` when no entry matches."""
        presented = digest(key)
        match: ApiKeyEntry | None = None
        # Compare with every entry, without stopping at a match: the time taken says nothing
        # about which entry (or whether any) matched.
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.digest):
                match = entry
        if match is None:
            raise UnauthorizedError("Unknown API key")
        return Principal(subject=match.subject, roles=match.roles, claims={})
