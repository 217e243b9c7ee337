"""``GET /openapi.json`` (OpenAPI 3.1, generated from the routers' declarations and the pydantic models) and
``GET /docs`` (Swagger UI, vendored under ``streams/runtime/web/vendor/swagger_ui``: no CDN, works offline)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from faust.web import Request
from pydantic import TypeAdapter

from salepulse.streams.runtime.api import models
from salepulse.streams.runtime.api.dashboard import WEB_DIR, static_file
from salepulse.streams.runtime.api.routing import Endpoint, Query, Router, Text

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

router = Router("docs")
SWAGGER_DIR = WEB_DIR / "vendor" / "swagger_ui"
REF = "#/components/schemas/{model}"
STATUS_TEXT = {400: "Bad request", 401: "Missing or wrong bearer token", 404: "Not found", 405: "Method not allowed",
               413: "Body too large", 415: "Not a JSON content type", 422: "Invalid items; none applied",
               500: "Internal error", 503: "Not ready yet (joining the group, loading), or the broker did not "
                                          "acknowledge a write (retry)"}
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>salepulse API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""


class Schemas:
    """JSON Schemas of types, gathered under ``components.schemas`` and referenced from the operations."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, annotation: Any) -> dict[str, Any]:
        schema = TypeAdapter(annotation).json_schema(ref_template=REF, mode="serialization")
        self.components.update(schema.pop("$defs", {}))
        title = schema.get("title")
        if schema.get("type") == "object" and title and isinstance(annotation, type):
            self.components[title] = schema
            return {"$ref": REF.format(model=title)}
        return schema


def _parameter(param: Query | Text) -> dict[str, Any]:
    if isinstance(param, Query):
        schema: dict[str, Any] = {"type": "integer", "minimum": param.low, "maximum": param.high}
        if param.default is not None:
            schema["default"] = param.default
        return {"name": param.name, "in": "query", "required": param.default is None, "schema": schema,
                "description": param.description}
    return {"name": param.name, "in": "query", "required": True, "schema": {"type": "string"},
            "description": param.description}


def _operation(endpoint: Endpoint, schemas: Schemas) -> dict[str, Any]:
    op: dict[str, Any] = {"tags": [endpoint.tag], "summary": endpoint.summary, "description": endpoint.description,
                          "operationId": endpoint.handler.__name__}
    params = [{"name": name.strip("{}"), "in": "path", "required": True, "schema": {"type": "string"}}
              for name in endpoint.path.split("/") if name.startswith("{")]
    params += [_parameter(param) for param in endpoint.query]
    if params:
        op["parameters"] = params
    if endpoint.body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": schemas.ref(endpoint.body)}}}
    if endpoint.response is not None:
        content = {"application/json": {"schema": schemas.ref(endpoint.response)}}
    else:
        content = {endpoint.media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(endpoint.status): {"description": endpoint.summary, "content": content}}
    problem = {"application/json": {"schema": schemas.ref(models.Problem)}}
    for status in sorted({*endpoint.errors, *((401,) if endpoint.auth else ()), 405, 500}):
        responses[str(status)] = {"description": STATUS_TEXT.get(status, "Error"), "content": problem}
    for status, model in endpoint.responses.items():
        responses[str(status)] = {"description": (model.__doc__ or STATUS_TEXT.get(status, "Error")).strip(),
                                  "content": {"application/json": {"schema": schemas.ref(model)}}}
    op["responses"] = dict(sorted(responses.items()))
    if endpoint.auth:
        op["security"] = [{"bearer": []}]
        op["description"] += (" Needs the write token (SALEPULSE_API_TOKEN) when one is set." if endpoint.auth ==
                              "write" else " Needs the read or the write token when either is set.")
    return op


def openapi(endpoints: list[Endpoint], auth_required: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints``."""
    schemas = Schemas()
    paths: dict[str, Any] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "salepulse worker API", "version": "1",
                 "description": "Live sales, member rankings, the event collector and expert forecasts. "
                                "Errors are always JSON: {\"error\": …, \"problems\"?: […]}."
                                + ("" if auth_required else " This worker has no SALEPULSE_API_TOKEN: writes are "
                                                            "open.")},
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.components.items())),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "SALEPULSE_API_TOKEN"}}},
    }


@router.get("/openapi.json", "This API's OpenAPI 3.1 description", response=dict[str, Any], needs_state=False)
async def openapi_json(worker: Worker, request: Request) -> dict[str, Any]:
    """Every endpoint with its parameters, request and response models, and error answers."""
    document = worker.extensions.get("openapi")
    if document is None:
        document = worker.extensions["openapi"] = openapi(worker.extensions["endpoints"],
                                                          bool(worker.settings.api_token))
    return document


@router.get("/docs", "Interactive API documentation", media_type="text/html", needs_state=False)
async def docs_page(worker: Worker, request: Request) -> web.Response:
    """Swagger UI over ``/openapi.json``, from vendored files."""
    return web.Response(text=DOCS_PAGE, content_type="text/html")


@router.get("/docs/static/{name}", "Swagger UI's files", media_type="application/octet-stream", needs_state=False,
            errors=(404,))
async def docs_static(worker: Worker, request: Request, name: str) -> web.Response:
    """The vendored Swagger UI script and stylesheet."""
    return static_file((SWAGGER_DIR,), name)
