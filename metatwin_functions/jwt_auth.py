"""JWT verification: the only module that imports PyJWT, and only when JWT auth is configured.

Which key verifies a token is decided by us, never by the token: an ``HS*`` token is checked
with ``CRBR_AUTH_JWT_SECRET`` only; any other algorithm with the configured public key or the
JWKS key named by ``kid``, and only when that key's type fits the algorithm. A public key is thus
never used as an HMAC secret (algorithm confusion), and ``none`` is never accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .context import Principal
from .errors import ConfigurationError, UnauthorizedError
from .jwks import JwksCache
from .settings import Settings

try:
    import jwt
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ConfigurationError(
        "JWT authentication needs PyJWT with its crypto extra: "
        "pip install 'metatwin-functions[jwt]'"
    ) from exc

__all__ = ["JwtVerifier", "build_jwt_verifier", "roles_from_claims"]

#: Seconds of clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
LEEWAY = 30

#: Where the caller's identity is read, in this order: a service token from a client-credentials
#: grant may name its client (``azp``, ``client_id``) instead of a user (``sub``).
SUBJECT_CLAIMS = ("sub", "azp", "client_id")
DEFAULT_ALGORITHMS = ("RS256", "ES256")

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "RS": (rsa.RSAPublicKey,),
    "PS": (rsa.RSAPublicKey,),
    "ES": (ec.EllipticCurvePublicKey,),
    "Ed": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}
_MISMATCH = "Token algorithm does not fit its signing key"


def _subject_of(claims: dict[str, Any]) -> str | None:
    for name in SUBJECT_CLAIMS:
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None


@dataclass(frozen=True, slots=True)
class _Jwk:
    key: PublicKey
    #: The JWK's own ``alg``, when it names one: tokens must then use exactly that algorithm.
    algorithm: str | None


class JwtVerifier:
    """Verifies a JWT and turns its claims into a `Principal`."""

    def __init__(
        self,
        *,
        algorithms: frozenset[str],
        secret: bytes | None = None,
        public_key: PublicKey | None = None,
        jwks: JwksCache[_Jwk] | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        roles_claim: str = "roles",
    ) -> None:
        self._algorithms = algorithms
        self._secret = secret
        self._public_key = public_key
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._roles_claim = roles_claim
        self._required = ["exp"]
        self._required += ["iss"] if issuer is not None else []
        self._required += ["aud"] if audience is not None else []

    async def verify(self, token: str) -> Principal:
        """The principal the token names; `UnauthorizedError` saying why when it is not valid."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise UnauthorizedError("Malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise UnauthorizedError("Token algorithm is not accepted")
        key = await self._key_for(alg, header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self._issuer,
                audience=self._audience,
                leeway=LEEWAY,
                options={
                    "require": self._required,
                    # Without a configured audience the ``aud`` of a token is not checked.
                    "verify_aud": self._audience is not None,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            # PyJWT's own messages may quote parts of the token: never pass them on.
            raise UnauthorizedError(_reason(exc)) from None
        except (TypeError, ValueError):
            raise UnauthorizedError("Malformed token") from None
        subject = _subject_of(claims)
        if subject is None:
            raise UnauthorizedError("Token names no subject ('sub', 'azp' or 'client_id')")
        roles = roles_from_claims(claims, self._roles_claim)
        return Principal(subject=subject, roles=roles, claims=MappingProxyType(claims))

    async def aclose(self) -> None:
        """Let a background refresh of the JWKS keys finish."""
        if self._jwks is not None:
            await self._jwks.aclose()

    async def _key_for(self, alg: str, kid: object) -> PublicKey | bytes:
        if alg.startswith("HS"):
            if self._secret is None:  # excluded at start-up; kept as a second lock
                raise UnauthorizedError("Token algorithm is not accepted")
            return self._secret
        key: PublicKey
        if kid is not None and self._jwks is not None:
            if not isinstance(kid, str):
                raise UnauthorizedError("Malformed token")
            jwk = await self._jwks.get(kid)
            if jwk.algorithm is not None and jwk.algorithm != alg:
                raise UnauthorizedError(_MISMATCH)
            key = jwk.key
        elif self._public_key is not None:
            key = self._public_key
        elif self._jwks is not None:
            raise UnauthorizedError("Token has no key id ('kid')")
        else:
            raise UnauthorizedError("No key is configured for the token's algorithm")
        if not isinstance(key, _KEY_TYPES.get(alg[:2], ())):
            raise UnauthorizedError(_MISMATCH)
        return key


def _reason(exc: Exception) -> str:
    """A message for a PyJWT failure that names the problem and quotes nothing of the token."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "Token expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "Token not yet valid"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "Token has the wrong issuer"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "Token has the wrong audience"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"Token lacks the required claim '{exc.claim}'"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "Token signature is not valid"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "Token algorithm is not accepted"
    if isinstance(exc, jwt.InvalidKeyError):
        return "Token signing key is not acceptable"
    if isinstance(exc, jwt.DecodeError):
        return "Malformed token"
    return "Token is not valid"


def roles_from_claims(claims: Mapping[str, Any], claim: str) -> frozenset[str]:
    """The roles in ``claim``: a list of strings, or a space-separated string like ``scope``.

    A claim named exactly ``claim`` wins (names such as ``https://example.com/roles`` hold
    dots); otherwise a dotted path reaches nested claims (``realm_access.roles``). A missing
    claim, or one of another type, grants no role.
    """
    value: object = claims.get(claim)
    if claim not in claims:
        value = claims
        for part in claim.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str) and v)
    return frozenset()


def build_jwt_verifier(settings: Settings) -> JwtVerifier:
    """A verifier for the JWT settings; `ConfigurationError` when they do not fit together."""
    secret = None
    if settings.auth_jwt_secret is not None:
        secret = settings.auth_jwt_secret.get_secret_value().encode()
    algorithms = _algorithms(settings.auth_jwt_algorithms, secret)
    public_key = None
    if settings.auth_jwt_public_key is not None:
        public_key = _load_public_key(settings.auth_jwt_public_key.get_secret_value())
    jwks = None
    if settings.auth_jwks_url is not None:
        jwks = JwksCache(
            settings.auth_jwks_url, parse_key=_parse_jwk, timeout=settings.auth_jwks_timeout
        )
    if not settings.auth_roles_claim.strip():
        raise ConfigurationError("CRBR_AUTH_ROLES_CLAIM must not be empty")
    return JwtVerifier(
        algorithms=algorithms,
        secret=secret,
        public_key=public_key,
        jwks=jwks,
        issuer=settings.auth_jwt_issuer,
        audience=settings.auth_jwt_audience,
        roles_claim=settings.auth_roles_claim.strip(),
    )


def _algorithms(configured: str | None, secret: bytes | None) -> frozenset[str]:
    var = "CRBR_AUTH_JWT_ALGORITHMS"
    if configured is None:
        names = [*DEFAULT_ALGORITHMS, *(["HS256"] if secret is not None else [])]
    else:
        names = [name.strip() for name in configured.split(",") if name.strip()]
    known = {name.lower(): name for name in jwt.algorithms.get_default_algorithms()}
    accepted: set[str] = set()
    for name in names:
        if name.lower() == "none":
            raise ConfigurationError(f"{var}: 'none' is never accepted")
        canonical = known.get(name.lower())
        if canonical is None:
            raise ConfigurationError(f"{var}: unknown algorithm {name!r}")
        if canonical.startswith("HS"):
            if secret is None:
                raise ConfigurationError(
                    f"{var} names {canonical} but CRBR_AUTH_JWT_SECRET is not set: an HMAC "
                    "algorithm needs a secret (a public key is never used as one)"
                )
            least = int(canonical[2:]) // 8
            if len(secret) < least:
                raise ConfigurationError(
                    f"CRBR_AUTH_JWT_SECRET is too short for {canonical}: use at least {least} bytes"
                )
        accepted.add(canonical)
    if not accepted:
        raise ConfigurationError(f"{var} names no algorithm")
    if secret is not None and not any(name.startswith("HS") for name in accepted):
        raise ConfigurationError(
            f"CRBR_AUTH_JWT_SECRET is set but {var} names no HS algorithm to use it with"
        )
    return frozenset(accepted)


def _load_public_key(value: str) -> PublicKey:
    var = "CRBR_AUTH_JWT_PUBLIC_KEY"
    text = value.strip()
    if not text.startswith("-----BEGIN"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            # The value is not echoed: it may be a key pasted without its PEM armour.
            reason = exc.strerror if isinstance(exc, OSError) else "not a path"
            raise ConfigurationError(
                f"{var} is neither PEM text nor a readable file ({reason})"
            ) from None
    data = text.encode()
    try:
        if b"-----BEGIN CERTIFICATE" in data:
            key: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except ValueError:
        raise ConfigurationError(f"{var} does not hold a PEM public key or certificate") from None
    if not isinstance(key, PublicKey):
        raise ConfigurationError(f"{var}: only RSA, EC and Ed25519/Ed448 keys are supported")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise ConfigurationError(f"{var}: an RSA key needs at least 2048 bits")
    return key


def _parse_jwk(jwk: Mapping[str, Any]) -> _Jwk | None:
    # Only asymmetric keys: a symmetric ("oct") key published in a JWKS is never trusted.
    if jwk.get("kty") not in ("RSA", "EC", "OKP"):
        return None
    alg = jwk.get("alg")
    try:
        key = jwt.PyJWK(dict(jwk)).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    if not isinstance(key, PublicKey):  # a JWKS holding a private key: ignore it
        return None
    return _Jwk(key=key, algorithm=alg if isinstance(alg, str) else None)
