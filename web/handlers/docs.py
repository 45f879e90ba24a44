"""The OpenAPI document (DESIGN decision 14: under ``/api/v1``)."""

from __future__ import annotations

import json

from aiohttp import web

from web import openapi
from web.apidoc import doc
from web.auth import public


@public
@doc("The OpenAPI 3.1 document of this API", envelope=False, tag="Docs",
     response={"type": "object", "required": ["openapi", "info", "paths"],
               "properties": {"openapi": {"const": "3.1.0"}}})
async def openapi_json(request: web.Request) -> web.Response:
    """Generated from the route table and the marshmallow schemas; not wrapped in the envelope."""
    return web.Response(text=json.dumps(openapi.document(request.app)), content_type="application/json")

