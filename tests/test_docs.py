"""``/docs`` works without internet: Swagger UI's files are served from the package."""

from __future__ import annotations

import re

import pytest

from metatwin_functions import FunctionRegistry, docs
from metatwin_functions.testing import FunctionTestClient


@pytest.fixture
def registry() -> FunctionRegistry:
    functions = FunctionRegistry()

    @functions.function()
    async def add_numbers(a: int, b: int) -> int:
        return a + b

    return functions


async def test_the_docs_page_loads_only_files_the_server_serves(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry) as client:
        page = await (await client.http.get("/docs")).get_data(as_text=True)
        sources = re.findall(r'(?:src|href)="([^"]+)"', page)
        assets = {source: await client.http.get(source) for source in sources}
        spec = re.search(r'url: "([^"]+)"', page)
        assert spec is not None
        document = await client.http.get(spec.group(1))
    assert "://" not in page, "the page loads something from another host"
    assert sorted(sources) == ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"]
    js, css = assets["/docs/swagger-ui-bundle.js"], assets["/docs/swagger-ui.css"]
    assert (js.status_code, js.mimetype) == (200, "text/javascript")
    assert b"SwaggerUIBundle" in await js.get_data()
    assert (css.status_code, css.mimetype) == (200, "text/css")
    assert js.headers["Cache-Control"] == "public, max-age=86400"
    assert (await document.get_json())["openapi"].startswith("3.1")


async def test_the_swagger_ui_version_renders_openapi_3_1() -> None:
    directory = docs.swagger_ui_directory()
    assert directory is not None
    major = int(re.search(r"swagger-ui-(\d+)\.", str(directory)).group(1))  # type: ignore[union-attr]
    assert major >= 5  # Swagger UI 4 cannot render the OpenAPI 3.1 document quart-schema writes


async def test_only_the_known_files_are_served(registry: FunctionRegistry) -> None:
    async with FunctionTestClient(registry) as client:
        for name in ("index.html", "swagger-ui-bundle.js.map", "..%2F__init__.py", "nope"):
            response = await client.http.get(f"/docs/{name}")
            assert response.status_code == 404, name
        openapi = await (await client.http.get("/openapi.json")).get_json()
    assert set(openapi["paths"]) == {"/exec", "/ready"}


async def test_without_the_package_the_page_falls_back_to_the_cdn(
    registry: FunctionRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docs, "swagger_ui_directory", lambda: None)
    async with FunctionTestClient(registry) as client:
        page = await (await client.http.get("/docs")).get_data(as_text=True)
        missing = await client.http.get("/docs/swagger-ui.css")
    assert "https://cdnjs.cloudflare.com/ajax/libs/swagger-ui/5." in page
    assert missing.status_code == 404
