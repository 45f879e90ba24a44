"""The OpenAPI document and its Swagger UI page (DESIGN decision 14: both under ``/api/v1``).

The page's scripts and styles come from the ``swagger-ui-bundle-v2`` package and are served by this
app, so the docs work on a self-hosted instance with no internet access.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from orchestrator.errors import NotFound
from web import openapi
from web.apidoc import doc
from web.auth import public

ASSETS = Path(str(swagger_ui_path))
#: The files the page loads; nothing else in the package is served.
SERVED = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                    "favicon-32x32.png", "favicon-16x16.png"})
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>OFFER-HUB Orchestrator API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true, persistAuthorization: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "BaseLayout"
    });
  </script>
</body>
</html>
"""


@public
@doc("The OpenAPI 3.1 document of this API", envelope=False, tag="Docs",
     response={"type": "object", "required": ["openapi", "info", "paths"],
               "properties": {"openapi": {"const": "3.1.0"}}})
async def openapi_json(request: web.Request) -> web.Response:
    """Generated from the route table and the marshmallow schemas; not wrapped in the envelope."""
    return web.Response(text=json.dumps(openapi.document(request.app)), content_type="application/json")


@public
@doc("This API's documentation, for people (Swagger UI)", envelope=False, tag="Docs", media_type="text/html",
     response={"type": "string"})
async def docs_page(request: web.Request) -> web.Response:
    """Renders ``openapi.json`` in the browser; works offline (the assets are served by this app)."""
    return web.Response(text=PAGE, content_type="text/html")


@public
@doc("A static file of the documentation page", envelope=False, tag="Docs", media_type="application/octet-stream",
     response={"type": "string"}, errors=("NOT_FOUND",))
async def docs_asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["asset"]
    if name not in SERVED:
        raise NotFound(f"No documentation asset {name}", code="NOT_FOUND")
    return web.FileResponse(ASSETS / name)
