"""The OpenAPI 3.1 document, generated from the route table, the ``@doc`` declarations next to the
handlers, their ``@requires`` scopes and the marshmallow schemas (apispec).

Every operation carries its scope, its request schema, its success answer in the §1.6 envelope
(``202`` for writes that may outlive the wait), and each error status it can answer in the §1.7
envelope with the codes of errors.md (the route's own plus the common ones of api.md §1.14).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, class_registry, fields

from orchestrator import errors, ids
from schemas import fields as ours
from schemas.common import Time
from schemas.disputes import Evidence
from schemas.orders import Milestones
from schemas.wallets import LedgerAmount
from web.apidoc import Doc, Shape, declared
from web.errors import status_of
from web.handlers.platform import VERSION

V1 = "/api/v1"
#: Each app's document, built on first request (the route table is frozen by then).
_BUILT: weakref.WeakKeyDictionary[web.Application, dict[str, Any]] = weakref.WeakKeyDictionary()
AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,12})\.[0-9]{2}$"
BALANCE_PATTERN = r"^-?[0-9]+\.[0-9]{2,7}$"
UUID4 = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
#: Paths whose writes maintenance mode still lets through (api.md §1.13); mirrors web/middlewares.py.
MAINTENANCE_EXEMPT = re.compile(r"/(admin/maintenance/.*|webhooks/(airtm|trustless-work)|auth/api-keys/[^/]+/token)")
PROVIDER_CODES = ("PROVIDER_ERROR", "PROVIDER_RATE_LIMITED", "STELLAR_NETWORK_ERROR", "PROVIDER_UNAVAILABLE",
                  "PROVIDER_TIMEOUT")
#: Tags whose handler module's name does not read well as one.
TAGS = {"api_keys": "API keys", "sse": "Events"}
#: Path parameters named after a resource whose name differs from its id prefix's.
PATH_RESOURCES = {"key_id": "api_key", "endpoint_id": "webhook_endpoint", "delivery_id": "webhook_delivery"}
DESCRIPTION = """The OFFER-HUB Orchestrator's HTTP contract (`spec/api.md`).

Send `Authorization: Bearer <credential>` (the master key, an `ohk_test_…`/`ohk_live_…` API key or an
`ohk_tok_…` token); each operation names the scope it needs. Successes use the envelope
`{data, meta}`, errors `{error: {code, message, statusCode, details}}`; every authenticated
`POST`/`DELETE` accepts an `Idempotency-Key` (UUID v4). Writes that involve ledger transactions wait
up to the server's limit and otherwise answer `202` with `meta.commandId`; `Prefer: respond-async`
asks for the `202` at once and `Prefer: wait=N` sets the wait."""


def document(app: web.Application) -> dict[str, Any]:
    """The app's document, built once (the route table is frozen once the app serves)."""
    if app not in _BUILT:
        _BUILT[app] = build(app)
    return _BUILT[app]


def build(app: web.Application) -> dict[str, Any]:
    builder = Builder()
    for route in app.router.routes():
        spec = declared(route.handler)
        if spec is not None and route.method != "HEAD":
            builder.add(route, spec)
    return builder.finish()


def routes(app: web.Application) -> Iterator[tuple[str, str]]:
    """Every (method, documented path) the app serves: what the document must hold, one per variant."""
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        for path, _ in variants(route.resource):
            yield route.method.lower(), path


def variants(resource: web.AbstractResource) -> list[tuple[str, str | None]]:
    """The route's document paths (``/api/v1`` dropped, parameters in camelCase), one per value of an
    enumerated parameter such as ``{operation:credit|debit|…}``, with that value."""
    info = resource.get_info()
    formatter = info.get("formatter") or info.get("path") or info.get("prefix", "")
    path = re.sub(r"\{(\w+)\}", lambda m: "{" + camel(m.group(1)) + "}", formatter.removeprefix(V1))
    pattern = info.get("pattern")
    for name, alternatives in enumerated(pattern.pattern if pattern is not None else ""):
        return [(path.replace("{" + camel(name) + "}", value), value) for value in alternatives]
    return [(path, None)]


def enumerated(pattern: str) -> Iterator[tuple[str, list[str]]]:
    for match in re.finditer(r"\(\?P<(\w+)>([\w|-]+)\)", pattern):
        yield match.group(1), match.group(2).split("|")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def code_status(code: str) -> int:
    return status_of(errors.from_dict({"code": code}))


class Builder:
    def __init__(self) -> None:
        self.names: dict[str, type[Schema]] = {}
        self.plugin = MarshmallowPlugin(schema_name_resolver=self.name)
        self.spec = APISpec(title="OFFER-HUB Orchestrator API", version=VERSION, openapi_version="3.1.0",
                            plugins=[self.plugin], info={"description": DESCRIPTION},
                            servers=[{"url": V1, "description": "this server"}])
        self.plugin.converter.add_attribute_function(_our_fields)  # type: ignore[union-attr]
        self.request_side: set[str] = set()
        self.operation_ids: set[str] = set()
        self.tags: dict[str, None] = {}
        self._components()

    # -- schema components ------------------------------------------------------------------------

    def name(self, schema: type[Schema] | Schema) -> str:
        cls = schema if isinstance(schema, type) else type(schema)
        base = cls.__name__.removesuffix("Out") or cls.__name__
        for candidate in (base, cls.__module__.rsplit(".", 1)[-1].capitalize() + base):
            if self.names.setdefault(candidate, cls) is cls:
                return candidate
        raise ValueError(f"two schemas named {base}")

    def ref(self, shape: Shape) -> dict[str, Any]:
        if isinstance(shape, dict):
            return shape
        name = self.name(shape)
        if name not in self.spec.components.schemas:
            self.spec.components.schema(name, schema=shape)
        return {"$ref": f"#/components/schemas/{name}"}

    def _components(self) -> None:
        self.spec.components.security_scheme("bearer", {
            "type": "http", "scheme": "bearer",
            "description": "The master key, an API key (`ohk_test_…`/`ohk_live_…`) or a token (`ohk_tok_…`). "
                           "The requirement lists the scope the operation needs (read, write, support, *)."})
        time = {"type": "string", "format": "date-time", "example": "2026-02-18T17:37:12.000Z"}
        meta = {"requestId": {"type": "string"}, "timestamp": time}
        self.spec.components.schema("Meta", {"type": "object", "required": list(meta), "properties": meta})
        pagination = {"type": "object", "required": ["limit", "hasMore", "nextCursor"], "properties": {
            "limit": {"type": "integer", "minimum": 1, "maximum": 100}, "hasMore": {"type": "boolean"},
            "nextCursor": {"type": ["string", "null"]}}}
        self.spec.components.schema("PageMeta", {"type": "object", "required": [*meta, "pagination"],
                                                 "properties": {**meta, "pagination": pagination}})
        self.spec.components.schema("AcceptedMeta", {
            "type": "object", "required": [*meta, "commandId", "pending"],
            "description": "Accepted, still executing (api.md §1.12): follow the events or read the resource.",
            "properties": {**meta, "commandId": {"type": "string", "pattern": "^cmd_"},
                           "pending": {"const": True}}})
        self.spec.components.schema("FieldError", {
            "type": "object", "required": ["field", "code", "message"],
            "description": "One failing field of a VALIDATION_ERROR (field codes: errors.md §3).",
            "properties": {"field": {"type": "string"}, "code": {"type": "string"},
                           "message": {"type": "string"}}})

    # -- operations -------------------------------------------------------------------------------

    def add(self, route: web.AbstractRoute, spec: Doc) -> None:
        assert route.resource is not None
        handler = route.handler
        scope = getattr(handler, "required_scope", None)
        public = getattr(handler, "public", False)
        method = route.method.upper()
        module = handler.__module__.rsplit(".", 1)[-1]
        tag = spec.tag or TAGS.get(module) or module.replace("_", " ").capitalize()
        self.tags[tag] = None
        for path, value in variants(route.resource):
            operation_id = camel(handler.__name__) + "".join(p.capitalize() for p in re.split("[-_]", value or ""))
            if operation_id in self.operation_ids:
                raise ValueError(f"two operations named {operation_id}")
            self.operation_ids.add(operation_id)
            operation: dict[str, Any] = {
                "operationId": operation_id, "summary": spec.summary + (f" ({value})" if value else ""),
                "tags": [tag], "parameters": self._parameters(route.resource, path, spec, method, public=public),
                "responses": self._responses(spec, method, path, public=public, scope=scope),
            }
            description = (handler.__doc__ or "").strip()
            access = "Public: no credential." if public else (
                f"Scope: `{scope}`." if scope else "Any valid credential (the handler checks further rules).")
            operation["description"] = f"{access}\n\n{description}".strip()
            operation["security"] = [] if public else [{"bearer": [scope] if scope else []}]
            operation["x-required-scope"] = "public" if public else (scope or "any")
            body = spec.body.get(value) if isinstance(spec.body, Mapping) and value else spec.body
            if body is not None:
                operation["requestBody"] = self._body(body, spec)  # type: ignore[arg-type]
            if not route.resource.canonical.startswith(V1):
                operation["servers"] = [{"url": "/", "description": "outside /api/v1"}]
            self.spec.path(path=path, operations={method.lower(): operation})

    def _parameters(self, resource: web.AbstractResource, path: str, spec: Doc, method: str, *,
                    public: bool) -> list[Any]:
        out: list[Any] = []
        for name in re.findall(r"\{(\w+)\}", (resource.get_info().get("formatter") or "")):
            if "{" + camel(name) + "}" not in path:
                continue  # an enumerated parameter, expanded into the path
            resource_name = PATH_RESOURCES.get(name, name.removesuffix("_id"))
            schema: dict[str, Any] = {"type": "string", "minLength": 1}
            if name.endswith("_id") and resource_name in ids.PREFIXES and spec.id_patterns:
                schema["pattern"] = f"^{ids.PREFIXES[resource_name]}[A-Za-z0-9_-]{{1,64}}$"
            out.append({"name": camel(name), "in": "path", "required": True, "schema": schema})
        if spec.query is not None:
            out.append({"in": "query", "schema": spec.query})
            self.request_side.add(self.name(spec.query))
        if method in ("POST", "DELETE") and not public:  # keys are scoped by credential: none here
            out.append({"name": "Idempotency-Key", "in": "header", "required": False,
                        "description": "UUID v4; a retry with the same key and body replays the first answer "
                                       "(api.md §1.10)", "schema": {"type": "string", "pattern": UUID4}})
        if spec.command:
            out.append({"name": "Prefer", "in": "header", "required": False,
                        "description": "`respond-async` (answer 202 at once) or `wait=N` (1-60 s); a server "
                                       "ignores preferences it does not know (RFC 7240)",
                        "schema": {"type": "string"}, "examples": {"async": {"value": "respond-async"},
                                                                   "wait": {"value": "wait=5"}}})
        for name, description in spec.headers.items():
            out.append({"name": name, "in": "header", "required": False, "description": description,
                        "schema": {"type": "string"}})
        return out

    def _body(self, body: Shape, spec: Doc) -> dict[str, Any]:
        ref = self.ref(body)
        required = bool(isinstance(body, type) and any(f.required for f in body().fields.values()))
        if "$ref" in ref:
            self.request_side.add(ref["$ref"].rsplit("/", 1)[-1])
        content: dict[str, Any] = {"schema": ref}
        if spec.example is not None:
            content["example"] = spec.example
        return {"required": required, "content": {"application/json": content}}

    def _responses(self, spec: Doc, method: str, path: str, *, public: bool, scope: str | None) -> dict[str, Any]:
        request_id = {"X-Request-ID": {"description": "the request's id (echoed or generated)", "required": True,
                                       "schema": {"type": "string"}}}
        streamed = spec.media_type == "text/event-stream"
        headers = {} if streamed else request_id
        responses: dict[str, Any] = {}
        for status in (spec.status, *spec.also):
            entry: dict[str, Any] = {"description": _reason(status), "headers": headers}
            if spec.response is not None or spec.envelope:
                others = {media: {"schema": self.ref(shape)} for media, shape in spec.alternatives.items()}
                entry["content"] = {spec.media_type: {"schema": self._success(spec)}, **others}
            if 300 <= status < 400:
                entry["headers"] = {**headers, "Location": {"description": "where the browser goes next",
                                                            "required": True, "schema": {"type": "string"}}}
            responses[str(status)] = entry
        if spec.command:
            shapes = [self._data(spec), *(self.ref(shape) for shape in spec.accepted), {"type": "null"}]
            responses["202"] = {"description": "Accepted; still executing (api.md §1.12): the resource as it "
                                               "stands, null for a create not run yet", "headers": headers,
                                "content": {"application/json": {"schema": {
                                    "type": "object", "required": ["data", "meta"],
                                    "properties": {"data": {"anyOf": shapes},
                                                   "meta": {"$ref": "#/components/schemas/AcceptedMeta"}}}}}}
        by_status: dict[int, list[str]] = {}
        for code in self._error_codes(spec, method, path, public=public):
            by_status.setdefault(code_status(code), []).append(code)
        for status, codes in sorted(by_status.items()):
            responses[str(status)] = {
                "description": f"{_reason(status)}: " + ", ".join(f"`{c}`" for c in codes),
                "headers": request_id,
                "content": {"application/json": {"schema": _error_schema(status, codes),
                                                 "examples": {c: {"value": _error_example(c, status, scope)}
                                                              for c in codes}}}}
        return responses

    def _error_codes(self, spec: Doc, method: str, path: str, *, public: bool) -> list[str]:
        codes = ["VALIDATION_ERROR", "RATE_LIMITED", "INTERNAL_ERROR", "SERVICE_UNAVAILABLE"]
        if "{" in path:
            codes.append("NOT_FOUND")  # an id that is no path segment (an encoded slash) finds no route
        if not public:
            codes += ["UNAUTHORIZED", "INVALID_API_KEY", "INSUFFICIENT_SCOPE"]
        if method in WRITES:
            codes += ["PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE"]
            if not public:
                codes += ["IDEMPOTENCY_KEY_REUSED", "IDEMPOTENCY_KEY_IN_PROGRESS"]
            if not MAINTENANCE_EXEMPT.fullmatch(path):
                codes.append("MAINTENANCE_MODE")
        if spec.provider:
            codes += PROVIDER_CODES
        return list(dict.fromkeys([*codes, *spec.errors]))

    def _data(self, spec: Doc) -> dict[str, Any]:
        if spec.response is None:
            return {"type": "null"}
        item = self.ref(spec.response)
        return {"type": "array", "items": item} if spec.many else item

    def _success(self, spec: Doc) -> dict[str, Any]:
        if not spec.envelope:
            return self.ref(spec.response) if spec.response is not None else {}
        meta = "PageMeta" if spec.paginated else "Meta"
        return {"type": "object", "required": ["data", "meta"],
                "properties": {"data": self._data(spec), "meta": {"$ref": f"#/components/schemas/{meta}"}}}

    # -- the finished document --------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        for name in sorted(self.tags):
            self.spec.tag({"name": name})
        document = self.spec.to_dict()
        schemas = document["components"]["schemas"]
        requests = _closure(schemas, self.request_side)
        for name in requests:
            aliases = getattr(self.names.get(name), "aliases", {})
            properties = schemas[name].get("properties", {})
            spellings: dict[str, list[str]] = {}
            for alias, target in aliases.items():
                properties[alias] = {**properties[target], "description": f"Alias of `{target}`."}
                spellings.setdefault(target, [target]).append(alias)
            required = schemas[name].get("required", [])
            for target in [t for t in spellings if t in required]:
                # a required field may come under either of its names
                required.remove(target)
                schemas[name].setdefault("allOf", []).append(
                    {"anyOf": [{"required": [spelling]} for spelling in spellings[target]]})
        for name, cls in self.names.items():
            if (name in schemas and name not in requests and "properties" in schemas[name]
                    and not getattr(cls, "optional", False)
                    and not any(f.required for f in cls().fields.values())):
                    # a response always holds every field, null when it has no value (api.md §1.2);
                    # a shape says otherwise with required fields of its own or ``optional = True``
                    schemas[name]["required"] = list(schemas[name]["properties"])
        return document


def _closure(schemas: dict[str, Any], roots: set[str]) -> set[str]:
    """The components reachable from ``roots`` through ``$ref``s."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        todo += re.findall(r"#/components/schemas/(\w+)", repr(schemas[name]))
    return seen


def _reason(status: int) -> str:
    return HTTPStatus(status).phrase


def _error_schema(status: int, codes: list[str]) -> dict[str, Any]:
    details: dict[str, Any] = {"type": "object"}
    if status == 400:
        details["properties"] = {"fields": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}}}
    return {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message", "statusCode", "details"],
        "properties": {"code": {"type": "string", "enum": codes}, "message": {"type": "string"},
                       "statusCode": {"const": status}, "details": details}}}}


_EXAMPLE_DETAILS: dict[str, dict[str, Any]] = {
    "VALIDATION_ERROR": {"fields": [{"field": "amount", "code": "INVALID_AMOUNT_FORMAT",
                                     "message": "must be a decimal string with exactly 2 decimals"}]},
    "INSUFFICIENT_FUNDS": {"available": "50.00", "requested": "100.00", "currency": "USD"},
    "INVALID_STATE_TRANSITION": {"resource": "Order", "id": "ord_VxaMOdTTsNKjDEhfagkI0",
                                 "currentState": "IN_PROGRESS", "attemptedAction": "cancel",
                                 "allowedStates": ["FUNDS_RESERVED", "ORDER_CREATED"]},
    "RATE_LIMITED": {"limit": 100, "windowSeconds": 60, "retryAfter": 12},
    "IDEMPOTENCY_KEY_REUSED": {"idempotencyKey": "550e8400-e29b-41d4-a716-446655440000"},
    "MAINTENANCE_MODE": {"message": "System maintenance in progress", "enabledAt": "2026-02-18T17:37:12.000Z"},
}


def _error_example(code: str, status: int, scope: str | None) -> dict[str, Any]:
    details = _EXAMPLE_DETAILS.get(code, {})
    if code == "INSUFFICIENT_SCOPE":
        details = {"requiredScope": scope or "support", "currentScopes": ["read"]}
    if code == "INTERNAL_ERROR":
        message = "An internal error occurred; report the X-Request-ID"
    else:
        message = code.replace("_", " ").capitalize()
    return {"error": {"code": code, "message": message, "statusCode": status, "details": details}}


# -- our field classes as JSON Schema ------------------------------------------------------------

def _text(field: Any) -> dict[str, Any]:
    out = {"type": "string", "minLength": max(field.min_length, 1 if field.required else 0)}
    return out if field.max_length is None else {**out, "maxLength": field.max_length}


_TIME = {"type": "string", "format": "date-time", "example": "2026-02-18T17:37:12.000Z"}
#: Most specific first: the first class a field is an instance of gives its JSON Schema.
_SHAPES: list[tuple[type[fields.Field], Any]] = [
    (ours.Email, lambda f: {"type": "string", "format": "email", "maxLength": 254}),
    (ours.Text, _text),
    (ours.Enum, lambda f: {"type": "string", "enum": list(f.allowed)}),
    (ours.Amount, lambda f: {"type": "string", "pattern": AMOUNT_PATTERN, "example": "100.00"}),
    (ours.Balance, lambda f: {"type": "string", "pattern": BALANCE_PATTERN, "example": "150.00"}),
    (LedgerAmount, lambda f: {"type": "string", "pattern": r"^[0-9]+\.[0-9]{7}$", "example": "150.0000000"}),
    (ours.Currency, lambda f: {"type": "string", "enum": ["USD"], "default": "USD"}),
    (ours.PrefixedId, lambda f: {"type": "string", "pattern": f"^{ids.PREFIXES[f.resource]}[A-Za-z0-9_-]{{1,64}}$"}),
    (ours.StrictInt, lambda f: {"type": "integer", "minimum": f.minimum, "maximum": f.maximum}),
    (ours.Scopes, lambda f: {"type": "array", "items": {"type": "string", "enum": list(f.allowed)}, "minItems": 1,
                             "uniqueItems": True}),
    (ours.JsonObject, lambda f: {"type": "object", "description": "any JSON object, at most 8 KiB serialized"}),
    (Time, lambda f: dict(_TIME)),
    (Evidence, lambda f: {"maxItems": 20}),
    (Milestones, lambda f: {"minItems": 1, "maxItems": 50}),
]


def _our_fields(self: Any, field: fields.Field, ret: dict[str, Any], **_: Any) -> dict[str, Any]:
    """JSON Schema for the field types of schemas/fields.py (apispec knows only marshmallow's own);
    Method and Raw fields say what they hold with ``metadata={"type": …}`` or ``{"openapi": "Schema"}``."""
    named = field.metadata.get("openapi")
    if isinstance(named, str):
        out = {**self.resolve_nested_schema(class_registry.get_class(named))}
    elif isinstance(named, dict):
        out = dict(named)
    elif isinstance(field, fields.Constant):
        return {"const": field.constant}
    else:
        shape = next((make for cls, make in _SHAPES if isinstance(field, cls)), None)
        if shape is None:
            return {}
        out = shape(field)
    if "$ref" in out and field.allow_none:
        return {"anyOf": [out, {"type": "null"}]}
    if field.allow_none and "type" in out and not isinstance(out["type"], list):
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out
