"""JWT authentication with real RSA/EC keys, an HMAC secret and a JWKS endpoint on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from metatwin_functions import Settings, jwks
from metatwin_functions.auth import Authenticator, build_authenticator
from metatwin_functions.context import Principal
from metatwin_functions.errors import ConfigurationError, UnauthorizedError

ROOT = Path(__file__).resolve().parents[1]
HMAC_SECRET = "hmac-secret-0123456789-abcdefghijklmnop"
DROP = object()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def make_token(key: Any, alg: str = "RS256", kid: str | None = None, **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "user-1", "exp": now + 300, "iat": now, **claims}
    body = {name: value for name, value in body.items() if value is not DROP}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_signed_with(secret: bytes, claims: dict[str, Any]) -> str:
    """An HS256 token signed with any bytes (PyJWT refuses to sign with a PEM key)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def jwk(key: Any, kid: str, alg: str | None = "RS256") -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else None
    algorithm = algorithm or jwt.algorithms.ECAlgorithm
    data: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    data.update({"kid": kid, "use": "sig"})
    if alg is not None:
        data["alg"] = alg
    return data


def make_authenticator(**values: Any) -> Authenticator:
    authenticator = build_authenticator(Settings(_env_file=None, **values))  # type: ignore[call-arg]
    assert authenticator is not None
    return authenticator


async def reason(authenticator: Authenticator, token: str) -> str:
    with pytest.raises(UnauthorizedError) as caught:
        await authenticator.authenticate(f"Bearer {token}", None)
    assert caught.value.headers == {"WWW-Authenticate": "Bearer"}
    return caught.value.message


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 whose document, delay and request count tests control."""

    def __init__(self) -> None:
        self.document: object = {"keys": []}
        self.delay = 0.0
        self.requests = 0
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                if owner.delay:
                    owner.release.wait(owner.delay)
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up on a slow answer is expected here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks"


# --- a public key, a secret ----------------------------------------------------------------


async def test_an_rs256_token_gives_its_subject_roles_and_claims(rsa_key: Any) -> None:
    authenticator = make_authenticator(auth_jwt_public_key=pem(rsa_key))
    token = make_token(rsa_key, roles=["admin", "ops"], tenant="t-1")
    principal = await authenticator.authenticate(f"Bearer {token}", None)
    assert principal.subject == "user-1"
    assert principal.roles == {"admin", "ops"}
    assert principal.claims["tenant"] == "t-1"


async def test_the_public_key_may_be_a_file_and_es256_is_accepted(
    ec_key: Any, tmp_path: Path
) -> None:
    path = tmp_path / "key.pem"
    path.write_text(pem(ec_key))
    authenticator = make_authenticator(auth_jwt_public_key=str(path))
    principal = await authenticator.authenticate(f"Bearer {make_token(ec_key, 'ES256')}", None)
    assert principal.subject == "user-1"


async def test_an_hs256_token_is_verified_with_the_secret() -> None:
    authenticator = make_authenticator(auth_jwt_secret=HMAC_SECRET)
    principal = await authenticator.authenticate(
        f"Bearer {make_token(HMAC_SECRET, 'HS256', roles=['writer'])}", None
    )
    assert principal.roles == {"writer"}


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"exp": int(time.time()) - 3600}, "Token expired"),
        ({"nbf": int(time.time()) + 3600}, "Token not yet valid"),
        ({"exp": DROP}, "Token lacks the required claim 'exp'"),
        ({"sub": DROP}, "Token names no subject ('sub', 'azp' or 'client_id')"),
        ({"sub": ""}, "Token names no subject ('sub', 'azp' or 'client_id')"),
        ({"iss": "https://evil.example"}, "Token has the wrong issuer"),
        ({"iss": DROP}, "Token lacks the required claim 'iss'"),
        ({"aud": "someone-else"}, "Token has the wrong audience"),
        ({"aud": DROP}, "Token lacks the required claim 'aud'"),
    ],
)
async def test_claims_that_fail_say_what_is_wrong(
    rsa_key: Any, claims: dict[str, Any], expected: str
) -> None:
    authenticator = make_authenticator(
        auth_jwt_public_key=pem(rsa_key),
        auth_jwt_issuer="https://idp.example",
        auth_jwt_audience="metatwin",
    )
    good = {"iss": "https://idp.example", "aud": "metatwin"}
    assert await reason(authenticator, make_token(rsa_key, **{**good, **claims})) == expected


async def test_thirty_seconds_of_clock_skew_are_tolerated(rsa_key: Any) -> None:
    authenticator = make_authenticator(auth_jwt_public_key=pem(rsa_key))
    now = int(time.time())
    skewed = make_token(rsa_key, exp=now - 10, nbf=now + 10, iat=now + 10)
    assert (await authenticator.authenticate(f"Bearer {skewed}", None)).subject == "user-1"


async def test_without_a_configured_audience_the_aud_claim_is_not_checked(rsa_key: Any) -> None:
    authenticator = make_authenticator(auth_jwt_public_key=pem(rsa_key))
    token = make_token(rsa_key, aud="anything")
    assert (await authenticator.authenticate(f"Bearer {token}", None)).subject == "user-1"


async def test_a_token_signed_with_another_key_is_refused(rsa_key: Any, other_rsa_key: Any) -> None:
    authenticator = make_authenticator(auth_jwt_public_key=pem(rsa_key))
    message = await reason(authenticator, make_token(other_rsa_key))
    assert message == "Token signature is not valid"


async def test_alg_none_is_never_accepted(rsa_key: Any) -> None:
    authenticator = make_authenticator(
        auth_jwt_public_key=pem(rsa_key), auth_jwt_secret=HMAC_SECRET
    )
    unsigned = jwt.encode({"sub": "admin", "exp": int(time.time()) + 60}, None, algorithm="none")
    assert await reason(authenticator, unsigned) == "Token algorithm is not accepted"


@pytest.mark.parametrize("with_secret", [False, True])
async def test_a_token_hmac_signed_with_the_public_key_is_refused(
    rsa_key: Any, with_secret: bool
) -> None:
    extra = {"auth_jwt_secret": HMAC_SECRET} if with_secret else {}
    authenticator = make_authenticator(auth_jwt_public_key=pem(rsa_key), **extra)
    forged = hs256_signed_with(
        pem(rsa_key).encode(), {"sub": "admin", "exp": int(time.time()) + 60}
    )
    expected = "Token signature is not valid" if with_secret else "Token algorithm is not accepted"
    assert await reason(authenticator, forged) == expected


async def test_an_es256_token_against_an_rsa_key_does_not_fit(rsa_key: Any, ec_key: Any) -> None:
    authenticator = make_authenticator(auth_jwt_public_key=pem(rsa_key))
    message = await reason(authenticator, make_token(ec_key, "ES256"))
    assert message == "Token algorithm does not fit its signing key"


async def test_only_the_configured_algorithms_are_accepted(rsa_key: Any) -> None:
    authenticator = make_authenticator(
        auth_jwt_public_key=pem(rsa_key), auth_jwt_algorithms="rs512"
    )
    assert await reason(authenticator, make_token(rsa_key)) == "Token algorithm is not accepted"
    principal = await authenticator.authenticate(f"Bearer {make_token(rsa_key, 'RS512')}", None)
    assert principal.subject == "user-1"


async def test_garbage_in_jwt_shape_is_malformed(rsa_key: Any) -> None:
    authenticator = make_authenticator(auth_jwt_public_key=pem(rsa_key))
    assert await reason(authenticator, "abc.def.ghi") == "Malformed token"
    assert await reason(authenticator, "not-a-jwt") == "Malformed bearer token: not a JWT"


async def test_with_keys_and_jwts_a_bearer_value_is_routed_by_its_shape(rsa_key: Any) -> None:
    authenticator = make_authenticator(
        auth_jwt_public_key=pem(rsa_key), auth_api_keys="plain-key:ops"
    )
    by_jwt = await authenticator.authenticate(f"Bearer {make_token(rsa_key)}", None)
    by_key = await authenticator.authenticate("Bearer plain-key", None)
    by_header = await authenticator.authenticate(None, "plain-key")
    assert by_jwt.subject == "user-1"
    assert by_key.roles == by_header.roles == {"ops"}
    assert await reason(authenticator, "x.y.z") == "Malformed token"


async def test_an_api_key_is_refused_when_only_jwts_are_configured(rsa_key: Any) -> None:
    authenticator = make_authenticator(auth_jwt_public_key=pem(rsa_key))
    with pytest.raises(UnauthorizedError, match="API keys are not accepted"):
        await authenticator.authenticate(None, "some-key")


# --- roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roles_claim", "claims", "roles"),
    [
        ("roles", {"roles": ["a", "b", 3, ""]}, {"a", "b"}),
        ("scope", {"scope": "read  write"}, {"read", "write"}),
        ("realm_access.roles", {"realm_access": {"roles": ["admin"]}}, {"admin"}),
        ("https://x.example/roles", {"https://x.example/roles": ["ops"]}, {"ops"}),
        ("realm_access.roles", {"realm_access": "flat"}, set()),
        ("roles", {"roles": {"admin": True}}, set()),
        ("roles", {}, set()),
    ],
)
async def test_roles_come_from_the_configured_claim(
    rsa_key: Any, roles_claim: str, claims: dict[str, Any], roles: set[str]
) -> None:
    authenticator = make_authenticator(
        auth_jwt_public_key=pem(rsa_key), auth_roles_claim=roles_claim
    )
    principal = await authenticator.authenticate(f"Bearer {make_token(rsa_key, **claims)}", None)
    assert principal.roles == roles


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"auth_jwt_algorithms": "RS256,HS256"}, "names HS256 but CRBR_AUTH_JWT_SECRET is not"),
        ({"auth_jwt_algorithms": "RS256,none"}, "'none' is never accepted"),
        ({"auth_jwt_algorithms": "RS257"}, "unknown algorithm 'RS257'"),
        ({"auth_jwt_algorithms": " , "}, "CRBR_AUTH_JWT_ALGORITHMS names no algorithm"),
        (
            {"auth_jwt_public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"},
            "does not hold a PEM public key",
        ),
        ({"auth_jwt_public_key": "/no/such/file.pem"}, "neither PEM text nor a readable file"),
        ({"auth_jwks_url": "file:///etc/passwd"}, "must be an http:// or https:// URL"),
        ({"auth_roles_claim": " "}, "CRBR_AUTH_ROLES_CLAIM must not be empty"),
    ],
)
def test_jwt_settings_that_cannot_work_are_refused_at_start(
    rsa_key: Any, values: dict[str, Any], problem: str
) -> None:
    settings = {"auth_jwt_public_key": pem(rsa_key), **values}
    with pytest.raises(ConfigurationError, match=problem):
        make_authenticator(**settings)


def test_a_secret_too_short_or_unused_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="too short for HS256: use at least 32") as caught:
        make_authenticator(auth_jwt_secret="short-secret")
    assert "short-secret" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="names no HS algorithm"):
        make_authenticator(auth_jwt_secret=HMAC_SECRET, auth_jwt_algorithms="RS256")


def test_without_pyjwt_jwt_settings_say_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['jwt'] = None\n"
        "from metatwin_functions import Settings\n"
        "from metatwin_functions.auth import build_authenticator\n"
        "try:\n"
        "    build_authenticator(Settings(_env_file=None, auth_jwt_secret='x' * 32))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRBR_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ConfigurationError ")
    assert "pip install 'metatwin-functions[jwt]'" in done.stdout


# --- JWKS ----------------------------------------------------------------------------------


async def test_jwks_keys_are_fetched_once_and_cached(
    jwks_server: JwksServer, rsa_key: Any, ec_key: Any
) -> None:
    jwks_server.document = {"keys": [jwk(rsa_key, "r1"), jwk(ec_key, "e1", "ES256")]}
    authenticator = make_authenticator(auth_jwks_url=jwks_server.url)
    for _ in range(3):
        assert (
            await authenticator.authenticate(f"Bearer {make_token(rsa_key, kid='r1')}", None)
        ).subject == "user-1"
    principal = await authenticator.authenticate(
        f"Bearer {make_token(ec_key, 'ES256', kid='e1')}", None
    )
    assert principal.subject == "user-1"
    assert jwks_server.requests == 1


async def test_a_new_kid_triggers_a_refetch_so_rotated_keys_work(
    jwks_server: JwksServer, rsa_key: Any, other_rsa_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jwks, "MIN_REFETCH_INTERVAL", 0.0)
    jwks_server.document = {"keys": [jwk(rsa_key, "old")]}
    authenticator = make_authenticator(auth_jwks_url=jwks_server.url)
    await authenticator.authenticate(f"Bearer {make_token(rsa_key, kid='old')}", None)
    jwks_server.document = {"keys": [jwk(rsa_key, "old"), jwk(other_rsa_key, "new")]}
    principal = await authenticator.authenticate(
        f"Bearer {make_token(other_rsa_key, kid='new')}", None
    )
    assert principal.subject == "user-1"
    assert jwks_server.requests == 2


async def test_a_flood_of_unknown_kids_fetches_the_keys_once(
    jwks_server: JwksServer, rsa_key: Any
) -> None:
    jwks_server.document = {"keys": [jwk(rsa_key, "r1")]}
    authenticator = make_authenticator(auth_jwks_url=jwks_server.url)
    tokens = [make_token(rsa_key, kid=f"made-up-{n}") for n in range(20)]
    messages = await asyncio.gather(*(reason(authenticator, token) for token in tokens))
    assert set(messages) == {"Token signed with an unknown key id"}
    assert jwks_server.requests == 1


async def test_jwks_keys_are_checked_against_the_token(
    jwks_server: JwksServer, rsa_key: Any
) -> None:
    oct_key = {"kty": "oct", "kid": "shared", "k": b64(b"x" * 32), "alg": "HS256"}
    jwks_server.document = {"keys": [jwk(rsa_key, "r512", "RS512"), oct_key]}
    authenticator = make_authenticator(auth_jwks_url=jwks_server.url)
    mismatch = await reason(authenticator, make_token(rsa_key, kid="r512"))
    assert mismatch == "Token algorithm does not fit its signing key"
    # A symmetric key published in a JWKS is never trusted.
    assert await reason(authenticator, make_token(rsa_key, kid="shared")) == (
        "Token signed with an unknown key id"
    )
    assert await reason(authenticator, make_token(rsa_key)) == "Token has no key id ('kid')"


async def test_an_unreachable_jwks_endpoint_answers_401_and_logs_a_warning(
    rsa_key: Any, caplog: pytest.LogCaptureFixture
) -> None:
    authenticator = make_authenticator(auth_jwks_url=refused_url())
    with caplog.at_level(logging.WARNING, logger="metatwin_functions.jwks"):
        message = await reason(authenticator, make_token(rsa_key, kid="r1"))
    assert message == "Token signing keys unavailable"
    assert "Fetching signing keys from http://127.0.0.1/jwks failed" in caplog.text


async def test_a_slow_jwks_endpoint_is_waited_for_no_longer_than_the_timeout(
    jwks_server: JwksServer, rsa_key: Any
) -> None:
    jwks_server.document = {"keys": [jwk(rsa_key, "r1")]}
    jwks_server.delay = 30
    authenticator = make_authenticator(auth_jwks_url=jwks_server.url, auth_jwks_timeout=0.3)
    started = time.monotonic()
    message = await reason(authenticator, make_token(rsa_key, kid="r1"))
    assert message == "Token signing keys unavailable"
    assert time.monotonic() - started < 3


async def test_cached_keys_keep_serving_while_a_refresh_is_slow(
    jwks_server: JwksServer, rsa_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jwks, "MAX_AGE", 0.0)  # every use finds the cache stale
    monkeypatch.setattr(jwks, "MIN_REFETCH_INTERVAL", 0.0)
    jwks_server.document = {"keys": [jwk(rsa_key, "r1")]}
    authenticator = make_authenticator(auth_jwks_url=jwks_server.url, auth_jwks_timeout=10)
    token = make_token(rsa_key, kid="r1")
    await authenticator.authenticate(f"Bearer {token}", None)
    jwks_server.delay = 30
    started = time.monotonic()
    principal = await authenticator.authenticate(f"Bearer {token}", None)
    assert time.monotonic() - started < 3  # did not wait for the 10 s fetch
    assert principal.subject == "user-1"
    jwks_server.release.set()
    await authenticator.aclose()
    assert jwks_server.requests == 2


# --- no secret in logs or messages ---------------------------------------------------------


async def test_no_key_token_or_claim_value_reaches_a_log_record_or_error(
    rsa_key: Any, other_rsa_key: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api_key = "apikey-7f3c9e1a-unique"
    secrets = [api_key, "subject-5d2b-unique", "role-9a8b-unique", "claim-4c1d-unique"]
    claims = {"sub": secrets[1], "roles": [secrets[2]], "custom": secrets[3]}
    good = make_token(rsa_key, **claims)
    tokens = [
        good,
        make_token(other_rsa_key, **claims),
        make_token(rsa_key, **claims, exp=int(time.time()) - 3600),
        make_token(rsa_key, **claims, iss="wrong"),
        make_token(rsa_key, kid="kid-unique", **claims),
    ]
    authenticator = make_authenticator(
        auth_jwt_public_key=pem(rsa_key),
        auth_jwks_url=refused_url(),
        auth_jwt_issuer="https://idp.example",
        auth_api_keys=f"{api_key}:{secrets[2]}",
    )
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for headers in [
            *((f"Bearer {token}", None) for token in tokens),
            (f"Basic {api_key}", None),
            (f"Bearer {api_key}x", None),
            (None, f"{api_key}x"),
        ]:
            with pytest.raises(UnauthorizedError) as caught:
                await authenticator.authenticate(*headers)
            texts.append(str(caught.value))
            texts.append("".join(traceback.format_exception(caught.value)))
        principal = await authenticator.authenticate(None, api_key)
    assert isinstance(principal, Principal)
    texts.extend(record.getMessage() for record in caplog.records)
    texts.append(caplog.text)
    for text in texts:
        for secret in [*secrets, *tokens, "kid-unique"]:
            assert secret not in text


@pytest.mark.parametrize("document", ["not a jwks", {"keys": []}, {"keys": [{"kty": "RSA"}]}])
async def test_a_jwks_document_without_usable_keys_leaves_keys_unavailable(
    jwks_server: JwksServer, rsa_key: Any, document: object
) -> None:
    jwks_server.document = document
    authenticator = make_authenticator(auth_jwks_url=jwks_server.url)
    message = await reason(authenticator, make_token(rsa_key, kid="r1"))
    assert message == "Token signing keys unavailable"


async def test_a_service_token_without_sub_is_known_by_its_client(rsa_key: Any) -> None:
    authenticator = make_authenticator(auth_jwt_public_key=pem(rsa_key))
    token = make_token(rsa_key, sub=DROP, azp="billing-service")
    principal = await authenticator.authenticate(f"Bearer {token}", None)
    assert principal.subject == "billing-service"
