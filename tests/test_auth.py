"""API keys, the Authorization / X-API-Key headers, role checks and how auth is configured."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metatwin_functions import Settings
from metatwin_functions.api_keys import ApiKeyAuthenticator, parse_api_keys
from metatwin_functions.auth import authorize, build_authenticator
from metatwin_functions.context import Principal
from metatwin_functions.errors import ConfigurationError, ForbiddenError, UnauthorizedError
from metatwin_functions.registry import FunctionSpec, build_spec

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-key-value"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def auth_settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def spec(roles: list[str] | None = None) -> FunctionSpec:
    def admin_task() -> int:
        return 1

    return build_spec(admin_task, roles=roles)


async def rejection(authorization: str | None, api_key: str | None, **values: object) -> str:
    authenticator = build_authenticator(auth_settings(**values))
    assert authenticator is not None
    with pytest.raises(UnauthorizedError) as caught:
        await authenticator.authenticate(authorization, api_key)
    assert caught.value.status == 401
    assert caught.value.kind == "unauthorized"
    assert caught.value.headers == {"WWW-Authenticate": "Bearer"}
    return caught.value.message


# --- CRBR_AUTH_API_KEYS entries ------------------------------------------------------------


def test_plain_entries_hash_the_key_and_read_roles_after_the_last_colon() -> None:
    plain, with_roles, colon_key, colon_key_roles = parse_api_keys(
        "alpha, beta:admin|ops ,a:b:, c:d:reader"
    )
    assert plain.digest.hex() == sha("alpha")
    assert plain.roles == frozenset()
    assert with_roles.digest.hex() == sha("beta")
    assert with_roles.roles == {"admin", "ops"}
    assert colon_key.digest.hex() == sha("a:b")
    assert colon_key.roles == frozenset()
    assert colon_key_roles.digest.hex() == sha("c:d")
    assert colon_key_roles.roles == {"reader"}


def test_sha256_entries_hold_the_digest_with_optional_roles() -> None:
    bare, with_roles = parse_api_keys(f"sha256:{sha('one')},SHA256:{sha('two').upper()}:admin")
    assert bare.digest.hex() == sha("one")
    assert bare.roles == frozenset()
    assert with_roles.digest.hex() == sha("two")
    assert with_roles.roles == {"admin"}


def test_empty_entries_are_skipped_but_a_variable_without_keys_is_refused() -> None:
    assert len(parse_api_keys("one,,two,")) == 2
    with pytest.raises(ConfigurationError, match="CRBR_AUTH_API_KEYS is set but holds no key"):
        parse_api_keys(" , ,")


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        (f"fine,sha256:{SECRET}", "entry 2: a 'sha256:' entry needs exactly 64 hexadecimal"),
        (f"fine,sha256:{sha(SECRET)[:-1]}:admin", "entry 2: a 'sha256:' entry needs"),
        (f"fine,:{SECRET}", "entry 2: the key is empty"),
        (f"{SECRET}:admin||ops", "entry 1: roles must be non-empty names"),
        (f"{SECRET}:admin|two words", "entry 1: roles must be non-empty names"),
        (f"{SECRET}:a,x,sha256:{sha(SECRET)}:b", "entries 1 and 3 are the same key"),
    ],
)
def test_malformed_entries_name_the_variable_and_position_never_the_key(
    entries: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_api_keys(entries)
    message = str(caught.value)
    assert message.startswith("CRBR_AUTH_API_KEYS")
    assert problem in message
    assert SECRET not in message
    assert sha(SECRET) not in message


def test_every_configured_key_is_compared_even_after_a_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return compare(a, b)

    monkeypatch.setattr("metatwin_functions.api_keys.hmac.compare_digest", counting)
    checker = ApiKeyAuthenticator(parse_api_keys("first,second,third,fourth"))
    assert checker.verify("first").subject == f"api-key:{sha('first')[:12]}"
    assert len(calls) == 4
    with pytest.raises(UnauthorizedError):
        checker.verify("nope")
    assert len(calls) == 8


# --- headers -------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_bearer_scheme_is_case_insensitive(scheme: str) -> None:
    authenticator = build_authenticator(auth_settings(auth_api_keys=f"{SECRET}:admin|ops"))
    assert authenticator is not None
    principal = await authenticator.authenticate(f"{scheme} {SECRET}", None)
    assert principal == Principal(
        subject=f"api-key:{sha(SECRET)[:12]}", roles=frozenset({"admin", "ops"}), claims={}
    )


async def test_x_api_key_header_authenticates_and_sha256_entries_give_the_same_subject() -> None:
    plain = build_authenticator(auth_settings(auth_api_keys=SECRET))
    hashed = build_authenticator(auth_settings(auth_api_keys=f"sha256:{sha(SECRET)}:reader"))
    assert plain is not None
    assert hashed is not None
    by_plain = await plain.authenticate(None, SECRET)
    by_hash = await hashed.authenticate(None, f" {SECRET} ")
    assert by_plain.subject == by_hash.subject == f"api-key:{sha(SECRET)[:12]}"
    assert by_hash.roles == {"reader"}


async def test_a_key_containing_colons_is_accepted_when_written_with_a_trailing_colon() -> None:
    authenticator = build_authenticator(auth_settings(auth_api_keys="user:pass:"))
    assert authenticator is not None
    assert (await authenticator.authenticate("Bearer user:pass", None)).roles == frozenset()


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer   ", f"Basic {SECRET}", f"Token {SECRET}", f"Bearer {SECRET} extra"],
)
async def test_authorization_without_a_bearer_value_is_malformed(authorization: str) -> None:
    message = await rejection(authorization, SECRET, auth_api_keys=SECRET)
    assert message == "Malformed Authorization header: expected 'Bearer <token>'"


async def test_missing_credentials_empty_api_key_and_unknown_key_say_so() -> None:
    assert (await rejection(None, None, auth_api_keys=SECRET)).startswith("Missing credentials")
    assert await rejection(None, "  ", auth_api_keys=SECRET) == "Malformed X-API-Key header: empty"
    assert await rejection("Bearer other", None, auth_api_keys=SECRET) == "Unknown API key"
    assert await rejection(None, "other", auth_api_keys=SECRET) == "Unknown API key"


async def test_a_jwt_shaped_bearer_value_is_an_api_key_when_only_keys_are_configured() -> None:
    authenticator = build_authenticator(auth_settings(auth_api_keys="aaa.bbb.ccc"))
    assert authenticator is not None
    principal = await authenticator.authenticate("Bearer aaa.bbb.ccc", None)
    assert principal.subject == f"api-key:{sha('aaa.bbb.ccc')[:12]}"


# --- configuration -------------------------------------------------------------------------


def test_auth_is_off_without_key_or_jwt_variables() -> None:
    assert build_authenticator(auth_settings()) is None


@pytest.mark.parametrize(
    "variable", ["auth_jwt_issuer", "auth_jwt_audience", "auth_jwt_algorithms"]
)
def test_jwt_claim_settings_without_a_jwt_key_are_refused(variable: str) -> None:
    with pytest.raises(ConfigurationError, match=f"CRBR_{variable.upper()} is set but no JWT"):
        build_authenticator(auth_settings(auth_api_keys=SECRET, **{variable: "RS256"}))


def test_a_jwt_shaped_api_key_is_refused_when_jwts_are_accepted_too() -> None:
    settings = auth_settings(auth_api_keys=f"fine,{SECRET}.b.c", auth_jwt_secret="x" * 32)
    with pytest.raises(ConfigurationError) as caught:
        build_authenticator(settings)
    assert "CRBR_AUTH_API_KEYS: entry 2 looks like a JWT" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_importing_the_package_and_api_key_auth_never_imports_pyjwt(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import metatwin_functions\n"
        "from metatwin_functions import Settings\n"
        "from metatwin_functions.auth import build_authenticator\n"
        "assert build_authenticator(Settings(_env_file=None)) is None\n"
        "assert build_authenticator(Settings(_env_file=None, auth_api_keys='k')) is not None\n"
        "print(sorted(m for m in sys.modules if m == 'jwt' or m.startswith('jwt.')))\n"
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
    assert done.stdout.strip() == "[]"


# --- authorize -----------------------------------------------------------------------------


def test_a_function_without_roles_is_open_to_anyone() -> None:
    authorize(None, spec())
    authorize(Principal(subject="x"), spec())


def test_a_caller_with_one_of_the_roles_may_call() -> None:
    authorize(Principal(subject="x", roles=frozenset({"ops"})), spec(["admin", "ops"]))


@pytest.mark.parametrize("principal", [None, Principal(subject="x", roles=frozenset({"reader"}))])
def test_a_caller_without_any_of_the_roles_is_forbidden(principal: Principal | None) -> None:
    with pytest.raises(ForbiddenError) as caught:
        authorize(principal, spec(["ops", "admin"]))
    assert caught.value.status == 403
    assert caught.value.kind == "forbidden"
    assert caught.value.message == "Function 'admin_task' requires one of the roles: admin, ops"
