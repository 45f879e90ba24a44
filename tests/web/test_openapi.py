"""The OpenAPI 3.1 document (api.md §16): valid, complete, and saying what each route really does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from tests.api import Api
from web import openapi

#: Every error status the document may name (docs/reference/errors.md).
STATUS_FAMILIES = {400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 502, 503, 504}
#: The error catalogue, generated from the code by scripts/docs_gen.py (tests/docs keeps it current).
ERRORS_MD = Path(__file__).resolve().parents[2] / "docs" / "reference" / "errors.md"


@pytest.fixture
async def document(api: Api) -> dict[str, Any]:
    async with api.client.get("/api/v1/openapi.json") as resp:  # public: no credential
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        return await resp.json()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def validator(document: dict[str, Any], schema: dict[str, Any]) -> OAS31Validator:
    """A validator for ``schema`` whose ``#/components/…`` references resolve in the document."""
    return OAS31Validator({**schema, "components": document["components"]})


async def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


async def test_every_route_of_the_app_is_documented(api: Api, document: dict[str, Any]) -> None:
    """A route added without a ``@doc`` declaration fails here."""
    served = set(openapi.routes(api.client.app))
    documented = {(method, path) for method, path, _ in operations(document)}
    assert served - documented == set(), "routes missing from the OpenAPI document (add @doc to the handler)"
    assert documented - served == set()
    assert len(served) > 40


async def test_each_operation_names_its_scope_as_the_handler_enforces_it(api: Api,
                                                                         document: dict[str, Any]) -> None:
    by_path = {}
    for route in api.client.app.router.routes():
        if route.method != "HEAD" and route.resource is not None:
            for path, _ in openapi.variants(route.resource):
                by_path[(route.method.lower(), path)] = route.handler
    for method, path, op in operations(document):
        handler = by_path[(method, path)]
        if getattr(handler, "public", False):
            assert op["security"] == [], path
            assert op["x-required-scope"] == "public", path
        else:
            scope = getattr(handler, "required_scope", None)
            assert op["security"] == [{"bearer": [scope] if scope else []}], (method, path)
            assert op["x-required-scope"] == (scope or "any")
            assert {"401", "403"} <= set(op["responses"]), (method, path)


async def test_each_operation_answers_in_the_envelopes_with_its_error_codes(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        statuses = {int(s) for s in op["responses"]}
        successes = {s for s in statuses if 200 <= s < 400}
        assert successes, (method, path)
        assert statuses - STATUS_FAMILIES - successes == set(), (method, path)
        for status in statuses - successes:
            response = op["responses"][str(status)]
            content = response["content"]["application/json"]
            if "data" in content["schema"]["properties"]:
                assert (method, path, status) == ("get", "/health/detailed", 503)  # unhealthy: still the data
                continue
            error = content["schema"]["properties"]["error"]
            codes = error["properties"]["code"]["enum"]
            assert codes
            assert error["properties"]["statusCode"] == {"const": status}
            assert set(content["examples"]) == set(codes)
            check = validator(document, content["schema"])
            for example in content["examples"].values():
                check.validate(example["value"])
        success = op["responses"][str(min(successes))]
        json_body = success.get("content", {}).get("application/json")
        if json_body is not None and path != "/openapi.json":  # §1.6: every JSON success is enveloped
            assert json_body["schema"]["required"] == ["data", "meta"], (method, path)
        if method in ("post", "delete") and op["security"]:
            assert any(p["name"] == "Idempotency-Key" for p in op["parameters"]), (method, path)


async def test_request_examples_match_their_schemas(document: dict[str, Any]) -> None:
    examples = 0
    for _method, _path, op in operations(document):
        content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        if "example" in content:
            validator(document, content["schema"]).validate(content["example"])
            examples += 1
    assert examples >= 10


async def test_the_validation_error_lists_fields(api: Api, document: dict[str, Any]) -> None:
    """The documented 400 matches what the server really answers for a bad body."""
    op = document["paths"]["/users"]["post"]
    reply = await api.post("/users", {"externalUserId": "", "type": "buyer", "colour": "red"})
    assert reply.status == 400
    validator(document, op["responses"]["400"]["content"]["application/json"]["schema"]).validate(reply.body)
    assert {f["field"] for f in reply.error["details"]["fields"]} == {"externalUserId", "type", "colour"}


async def test_aliases_are_documented_on_request_schemas(document: dict[str, Any]) -> None:
    create_order = document["components"]["schemas"]["CreateOrder"]["properties"]
    assert create_order["buyer_id"]["description"] == "Alias of `buyerId`."
    assert create_order["buyer_id"]["pattern"] == create_order["buyerId"]["pattern"]


async def test_the_docs_page_renders_the_document_from_this_server_alone(api: Api) -> None:
    """Self-hosted and offline: the page loads its scripts and styles from this server, no CDN."""
    async with api.client.get("/api/v1/docs") as resp:
        page = await resp.text()
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert 'url: "openapi.json"' in page
    assert "http://" not in page
    assert "https://" not in page
    assert "//" not in page.replace("<!--", "")
    for asset, media in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui-standalone-preset.js", "javascript"),
                         ("swagger-ui.css", "text/css")):
        assert f'"docs/{asset}"' in page
        async with api.client.get(f"/api/v1/docs/{asset}") as resp:
            body = await resp.read()
        assert resp.status == 200, asset
        assert media in resp.content_type, asset
        assert len(body) > 10_000, asset


async def test_only_the_pages_own_assets_are_served(api: Api) -> None:
    for name in ("index.html", "..%2F..%2Fsetup.cfg", "swagger-initializer.js", "nope.js"):
        async with api.client.get(f"/api/v1/docs/{name}") as resp:
            body = await resp.json()
        assert resp.status == 404, name
        assert body["error"]["code"] == "NOT_FOUND"


async def test_every_error_code_is_one_of_errors_md_with_its_status(document: dict[str, Any]) -> None:
    """A declaration cannot invent a code or give one another status than the catalog's."""
    catalog = {code: int(status) for code, status in
               re.findall(r"^\| `([A-Z_]+)` \| (\d{3}) \|", ERRORS_MD.read_text(), re.MULTILINE)}
    assert len(catalog) > 40
    named = 0
    for method, path, op in operations(document):
        for status, response in op["responses"].items():
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            error = schema.get("properties", {}).get("error")
            for code in (error or {}).get("properties", {}).get("code", {}).get("enum", []):
                assert catalog.get(code) == int(status), (method, path, code, status)
                named += 1
    assert named > 300
