"""The one declaration that puts a route into the OpenAPI document: ``@doc(...)`` next to its handler.

``web/openapi.py`` walks the route table and reads these declarations together with the scope that
``@requires``/``@public`` already set, so a route's contract lives beside its code. A route without a
declaration is left out of the document, and ``tests/web/test_openapi.py`` fails until it has one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema

from web.auth import Handler

#: A marshmallow schema class, or a raw JSON Schema for shapes no schema class describes.
Shape = type[Schema] | dict[str, Any]


@dataclass(frozen=True)
class Doc:
    """What the document says about one route.

    ``body`` is the request schema (a mapping from the values of the route's one enumerated path
    parameter to a schema when they take different bodies); ``response`` is the ``data`` of the §1.6
    envelope (``many``: an array, ``paginated``: with ``meta.pagination``); ``status`` and ``also`` are
    the success statuses; ``command`` marks a write that may answer ``202`` (api.md §1.12);
    ``provider`` one that calls Stellar, Trustless Work or AirTM (their 502/503/504); ``errors`` the
    route's own codes from errors.md (the common ones of api.md §1.14 are added by the generator);
    ``headers`` the request headers it reads; ``alternatives`` other media types of the success answer
    (chosen with ``Accept``); ``id_patterns=False`` for a route that takes any string as its path id.
    ``accepted`` the shapes a 202's ``data`` may take besides the response's and null.
    ``response=None`` with ``envelope=False`` is an answer without a body.
    """

    summary: str
    body: Shape | Mapping[str, Shape] | None = None
    query: type[Schema] | None = None
    response: Shape | None = None
    many: bool = False
    paginated: bool = False
    status: int = 200
    also: tuple[int, ...] = ()
    command: bool = False
    provider: bool = False
    errors: tuple[str, ...] = ()
    example: Mapping[str, Any] | None = None
    media_type: str = "application/json"
    envelope: bool = True
    tag: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    alternatives: Mapping[str, Shape] = field(default_factory=dict)
    id_patterns: bool = True
    accepted: tuple[Shape, ...] = ()


def doc(summary: str, **details: Any) -> Callable[[Handler], Handler]:
    """Declare a route's contract (see ``Doc``)."""
    def mark(handler: Handler) -> Handler:
        handler.openapi = Doc(summary, **details)  # type: ignore[attr-defined]
        return handler
    return mark


def declared(handler: Any) -> Doc | None:
    return getattr(handler, "openapi", None)
