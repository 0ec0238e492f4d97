"""``describe --json`` and ``diff OLD NEW``: the exit code says whether callers of OLD break."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from metatwin_functions import FunctionRegistry, default_registry
from metatwin_functions.cli import main
from metatwin_functions.describe import describe_registry
from metatwin_functions.schema_compat import widens


class Item(BaseModel):
    sku: str
    qty: int


class ItemV2(BaseModel):
    sku: str
    qty: int
    warehouse: str  # a newly required field


def base(functions: FunctionRegistry) -> None:
    @functions.function("price", version="1.0")
    def price_v1(sku: str, quantity: int, discount: float = 0.0) -> float:
        return 1.0

    @functions.function("price", version="2.0")
    def price_v2(sku: str, quantity: int, currency: str = "EUR") -> float:
        return 1.0

    @functions.function()
    def ship(items: list[Item], mode: Literal["air", "sea"] = "sea") -> int | None:
        return 1


def describe(define: Callable[[FunctionRegistry], None]) -> dict[str, Any]:
    functions = FunctionRegistry()
    define(functions)
    return describe_registry(functions, "dep")


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, Callable[[FunctionRegistry], None]], str]:
    def writer(name: str, define: Callable[[FunctionRegistry], None]) -> str:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(describe(define)))
        return str(path)

    return writer


def run_diff(old: str, new: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["diff", old, new])
    return code, capsys.readouterr().out


# --- the document ------------------------------------------------------------------------------


def test_describe_json_is_the_started_payload_plus_schemas_and_versions() -> None:
    document = describe(base)
    assert document["describeFormat"] == 1
    price, ship = document["functions"]
    assert price["version"] == "2.0"
    assert price["versions"] == ["1.0", "2.0"]
    assert [d["version"] for d in price["definitions"]] == ["1.0", "2.0"]
    assert [a["name"] for a in price["definitions"][0]["args"]] == ["sku", "quantity", "discount"]
    assert price["args"][1] == {
        "name": "quantity",
        "type": "int",
        "required": True,
        "description": None,
        "schema": {"type": "integer"},
    }
    assert price["returnSchema"] == {"type": "number"}
    assert "version" not in ship
    assert "definitions" not in ship
    items = ship["args"][0]["schema"]
    assert items["items"] == {"$ref": "#/$defs/Item"}
    assert "Item" in items["$defs"]  # self-contained


def test_describe_json_through_the_command_line(
    isolated_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = isolated_cwd / "versioned_functions_for_describe.py"
    module.write_text(
        "from metatwin_functions import Function\n"
        "@Function('vf_describe', version='1.0')\n"
        "def one(x: int) -> int:\n    return x\n"
        "@Function('vf_describe', version='1.1')\n"
        "def two(x: int, y: int = 0) -> int:\n    return x\n"
    )
    try:
        assert main(["describe", "--json", "versioned_functions_for_describe"]) == 0
    finally:
        default_registry.unregister("vf_describe")
        sys.modules.pop("versioned_functions_for_describe", None)
    document = json.loads(capsys.readouterr().out)
    entry = next(f for f in document["functions"] if f["name"] == "vf_describe")
    assert entry["versions"] == ["1.0", "1.1"]


# --- exit codes --------------------------------------------------------------------------------


def test_identical_descriptions_exit_zero(write: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_diff(write("old", base), write("new", base), capsys)
    assert code == 0
    assert "no breaking change" in out


def test_compatible_changes_exit_zero_and_are_listed(
    write: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    def newer(functions: FunctionRegistry) -> None:
        @functions.function("price", version="1.0")
        def price_v1(sku: str, quantity: float, discount: float = 0.0, note: str = "") -> int:
            return 1  # wider argument, narrower return, new optional argument: all compatible

        @functions.function("price", version="2.0")
        def price_v2(sku: str, quantity: int, currency: str = "EUR") -> float:
            return 1.0

        @functions.function("price", version="2.1")
        def price_v21(sku: str, quantity: int, currency: str = "EUR") -> float:
            return 1.0

        @functions.function()
        def ship(
            items: list[Item], mode: Literal["air", "sea", "rail"] | None = "sea"
        ) -> int | None:
            return 1

        @functions.function()
        def track(parcel: str) -> str:
            return parcel

    code, out = run_diff(write("old", base), write("new", newer), capsys)
    assert code == 0, out
    assert "ok: price 1.0: new optional argument 'note'" in out
    assert "ok: price 2.1: version added" in out
    assert "ok: track: function added" in out


def _variant(**changes: Any) -> Callable[[FunctionRegistry], None]:
    """``base`` with one definition replaced."""

    def define(functions: FunctionRegistry) -> None:
        scratch = FunctionRegistry()
        base(scratch)
        for spec in scratch.specs():
            key = spec.name if spec.version is None else f"{spec.name}@{spec.version}"
            if key in changes:
                if changes[key] is not None:
                    functions.register(changes[key], name=spec.name, version=spec.version)
                continue
            functions.register(spec.func, name=spec.name, version=spec.version)

    return define


def _price_removed_arg(sku: str, discount: float = 0.0) -> float:
    return 1.0


def _price_new_required(sku: str, quantity: int, region: str, discount: float = 0.0) -> float:
    return 1.0


def _price_became_required(sku: str, quantity: int, discount: float) -> float:
    return 1.0


def _price_narrower_arg(sku: str, quantity: bool, discount: float = 0.0) -> float:
    return 1.0


def _price_bounded_arg(
    sku: str, quantity: Annotated[int, Field(ge=1)], discount: float = 0.0
) -> float:
    return 1.0


def _price_wider_return(sku: str, quantity: int, discount: float = 0.0) -> float | str:
    return 1.0


def _ship_fewer_modes(items: list[Item], mode: Literal["air"] = "air") -> int | None:
    return 1


def _ship_stricter_items(items: list[ItemV2], mode: Literal["air", "sea"] = "sea") -> int | None:
    return 1


BREAKING: dict[str, tuple[dict[str, Any], str]] = {
    "removed function": ({"ship": None}, "ship: function removed"),
    "removed version": ({"price@1.0": None}, "price 1.0: version removed"),
    "removed argument": ({"price@1.0": _price_removed_arg}, "argument 'quantity' removed"),
    "new required argument": (
        {"price@1.0": _price_new_required},
        "new required argument 'region'",
    ),
    "argument became required": (
        {"price@1.0": _price_became_required},
        "argument 'discount' is now required",
    ),
    "narrower argument type": (
        {"price@1.0": _price_narrower_arg},
        "argument 'quantity' no longer accepts what it did: int -> bool",
    ),
    "bounded argument": (
        {"price@1.0": _price_bounded_arg},
        "minimum is now 1",
    ),
    "wider return type": (
        {"price@1.0": _price_wider_return},
        "return type float -> float | str: it may return values",
    ),
    "fewer literal values": ({"ship": _ship_fewer_modes}, "value(s) ['sea'] no longer accepted"),
    "nested model field now required": (
        {"ship": _ship_stricter_items},
        "field(s) warehouse are now required",
    ),
}


@pytest.mark.parametrize("case", list(BREAKING))
def test_each_kind_of_breaking_change_exits_one_and_says_why(
    case: str, write: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    changes, expected = BREAKING[case]
    code, out = run_diff(write("old", base), write("new", _variant(**changes)), capsys)
    assert code == 1, out
    assert "BREAKING" in out
    assert expected in out, out


def test_a_new_highest_version_is_compared_for_callers_without_a_version(
    write: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    def newer(functions: FunctionRegistry) -> None:
        base(functions)

        @functions.function("price", version="3.0")
        def price_v3(sku: str, quantity: int, region: str) -> float:
            return 1.0

    code, out = run_diff(write("old", base), write("new", newer), capsys)
    assert code == 1
    assert "calls without a version now run 3.0 (was 2.0): new required argument 'region'" in out


def test_a_module_is_compared_against_a_saved_file(
    isolated_cwd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = isolated_cwd / "deployed.json"
    saved.write_text(json.dumps(describe(base)))
    (isolated_cwd / "diff_module_for_tests.py").write_text(
        "from metatwin_functions import Function\n"
        "@Function('price', version='2.0')\n"
        "def price(sku: str, quantity: int, currency: str = 'EUR') -> float:\n    return 1.0\n"
    )
    try:
        code, out = run_diff(str(saved), "diff_module_for_tests", capsys)
    finally:
        default_registry.unregister("price")
        sys.modules.pop("diff_module_for_tests", None)
    assert code == 1
    assert "BREAKING: price 1.0: version removed" in out
    assert "BREAKING: ship: function removed" in out


def test_input_that_cannot_be_read_exits_two_with_a_clear_error(
    isolated_cwd: Path, write: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    new = write("new", base)
    (isolated_cwd / "other.json").write_text('{"hello": 1}')
    (isolated_cwd / "broken.json").write_text("{")
    cases = {
        "other.json": "OLD is not a 'describe --json' document",
        "broken.json": "cannot read description 'broken.json'",
        "no_such_module_for_diff": "cannot import 'no_such_module_for_diff'",
    }
    for old, message in cases.items():
        assert main(["diff", old, new]) == 2
        assert message in capsys.readouterr().err


# --- the schema check on its own ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "compatible"),
    [
        ({"type": "integer"}, {"type": "number"}, True),
        ({"type": "number"}, {"type": "integer"}, False),
        ({"type": "string"}, {"anyOf": [{"type": "string"}, {"type": "null"}]}, True),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, {"type": "string"}, False),
        ({}, {"type": "string"}, False),
        ({"type": "string"}, {}, True),
        ({"enum": ["a", "b"]}, {"type": "string"}, True),
        ({"type": "string", "maxLength": 5}, {"type": "string", "maxLength": 10}, True),
        ({"type": "string"}, {"type": "string", "pattern": "^a"}, False),
        ({"type": "string"}, {"type": "string", "format": "date-time"}, False),
        (
            {"type": "object", "additionalProperties": {"type": "integer"}},
            {"type": "object", "additionalProperties": {"type": "number"}},
            True,
        ),
        ({"type": "array", "items": {"type": "integer"}}, {"type": "array"}, True),
    ],
)
def test_widens_decides_the_common_pydantic_schemas(
    old: dict[str, Any], new: dict[str, Any], compatible: bool
) -> None:
    assert (widens(old, new) is None) is compatible


@pytest.fixture(autouse=True)
def _no_leftover_default_functions() -> Iterator[None]:
    before = set(default_registry.names)
    yield
    assert set(default_registry.names) == before


def test_the_example_module_describes_itself_and_diffs_clean_in_a_fresh_process(
    tmp_path: Path,
) -> None:
    import subprocess

    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "metatwin_functions"]
    described = subprocess.run(
        [*command, "describe", "--json", "examples.versions_and_schedules"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=root,
    )
    saved = tmp_path / "deployed.json"
    saved.write_text(described.stdout)
    quote = next(f for f in json.loads(described.stdout)["functions"] if f["name"] == "quote")
    assert quote["versions"] == ["1.0.0", "2.0.0"]
    compared = subprocess.run(
        [*command, "diff", str(saved), "examples.versions_and_schedules"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=root,
    )
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "no breaking change" in compared.stdout
