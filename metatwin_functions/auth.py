"""Authentication (who calls) and authorization (may they call this function).

`build_authenticator` reads the ``CRBR_AUTH_*`` settings once; the call pipeline then asks its
`Authenticator` for the `Principal` behind a request's ``Authorization`` / ``X-API-Key`` headers
and checks it against the function with `authorize`. PyJWT is imported only when a JWT variable
is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .api_keys import JWT_SHAPE, ApiKeyAuthenticator, parse_api_keys
from .context import Principal
from .errors import ConfigurationError, ForbiddenError, UnauthorizedError
from .registry import FunctionSpec
from .settings import Settings

if TYPE_CHECKING:
    from .jwt_auth import JwtVerifier

__all__ = ["Authenticator", "authorize", "build_authenticator"]

_MISSING = "Missing credentials: send 'Authorization: Bearer <token>' or 'X-API-Key: <key>'"
_MALFORMED = "Malformed Authorization header: expected 'Bearer <token>'"


class Authenticator(Protocol):
    """Turns a request's credentials into the `Principal` that sent them."""

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        """The caller behind the raw ``Authorization`` and ``X-API-Key`` header values.

        Raises:
            UnauthorizedError: credentials missing, malformed or not valid; the message says
                which, and never quotes the credential or any claim.
        """
        ...

    async def aclose(self) -> None:
        """Let background work (a JWKS refresh) finish; call once when the runtime stops."""
        ...


class CredentialAuthenticator:
    """API keys and/or JWTs, as configured.

    ``Authorization: Bearer <value>`` is read as a JWT when JWTs are configured and the value
    has a JWT's shape (three base64url parts), else as an API key. ``X-API-Key`` is always an API
    key. When both headers are sent, ``Authorization`` is the one used.
    """

    def __init__(
        self, api_keys: ApiKeyAuthenticator | None = None, jwt: JwtVerifier | None = None
    ) -> None:
        if api_keys is None and jwt is None:
            raise ValueError("an authenticator needs API keys, a JWT verifier, or both")
        self._api_keys = api_keys
        self._jwt = jwt

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        """See `Authenticator.authenticate`."""
        if authorization is not None:
            scheme, _, value = authorization.strip().partition(" ")
            credential = value.strip()
            if scheme.lower() != "bearer" or not credential or " " in credential:
                raise UnauthorizedError(_MALFORMED)
            if self._jwt is not None and (
                self._api_keys is None or JWT_SHAPE.fullmatch(credential)
            ):
                if not JWT_SHAPE.fullmatch(credential):
                    raise UnauthorizedError("Malformed bearer token: not a JWT")
                return await self._jwt.verify(credential)
            return self._check_key(credential)
        if api_key is not None:
            if not api_key.strip():
                raise UnauthorizedError("Malformed X-API-Key header: empty")
            return self._check_key(api_key.strip())
        raise UnauthorizedError(_MISSING)

    async def aclose(self) -> None:
        """See `Authenticator.aclose`."""
        if self._jwt is not None:
            await self._jwt.aclose()

    def _check_key(self, key: str) -> Principal:
        if self._api_keys is None:
            raise UnauthorizedError(
                "API keys are not accepted by this service: send 'Authorization: Bearer <JWT>'"
            )
        return self._api_keys.verify(key)


def build_authenticator(settings: Settings) -> Authenticator | None:
    """The authenticator the ``CRBR_AUTH_*`` settings describe, or None when auth is off.

    Raises:
        ConfigurationError: a setting is malformed or the settings do not fit together; the
            message names the variable (and an API-key entry by position), never a secret.
    """
    jwt_source = any(
        value is not None
        for value in (
            settings.auth_jwt_public_key,
            settings.auth_jwks_url,
            settings.auth_jwt_secret,
        )
    )
    if not jwt_source:
        # Claim checks without a way to verify a token would give a false sense of safety.
        for name, value in (
            ("CRBR_AUTH_JWT_ISSUER", settings.auth_jwt_issuer),
            ("CRBR_AUTH_JWT_AUDIENCE", settings.auth_jwt_audience),
            ("CRBR_AUTH_JWT_ALGORITHMS", settings.auth_jwt_algorithms),
        ):
            if value is not None:
                raise ConfigurationError(
                    f"{name} is set but no JWT key is: set CRBR_AUTH_JWT_PUBLIC_KEY, "
                    "CRBR_AUTH_JWKS_URL or CRBR_AUTH_JWT_SECRET"
                )
    if not settings.auth_enabled:
        return None
    api_keys = None
    if settings.auth_api_keys is not None:
        entries = parse_api_keys(settings.auth_api_keys.get_secret_value())
        if jwt_source:
            for entry in entries:
                if entry.looks_like_jwt:
                    raise ConfigurationError(
                        f"CRBR_AUTH_API_KEYS: entry {entry.position} looks like a JWT (three "
                        "dot-separated parts) and would be checked as one: choose another key"
                    )
        api_keys = ApiKeyAuthenticator(entries)
    verifier = None
    if jwt_source:
        from .jwt_auth import build_jwt_verifier

        verifier = build_jwt_verifier(settings)
    return CredentialAuthenticator(api_keys, verifier)


def authorize(principal: Principal | None, spec: FunctionSpec) -> None:
    """Let the call through when ``spec`` needs no role or the principal has one of its roles.

    A function with roles cannot be called without a principal (auth off included): its roles
    would otherwise mean nothing.

    Raises:
        ForbiddenError: the function requires roles the principal has none of.
    """
    if not spec.roles:
        return
    if principal is not None and not principal.roles.isdisjoint(spec.roles):
        return
    required = ", ".join(sorted(spec.roles))
    raise ForbiddenError(f"Function '{spec.name}' requires one of the roles: {required}")
