"""``GET /openapi.json``: the HTTP API of SPEC §3 as an OpenAPI 3.1 document."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from asyncgw import __version__
from asyncgw.gateway.context import APIS, json_response

_ERROR = {"$ref": "#/components/schemas/Error"}
_RECORD = {"$ref": "#/components/schemas/Record"}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema is not None:
        answer["content"] = {"application/json": {"schema": schema}}
    return answer


def _errors(*codes: int) -> dict[str, Any]:
    names = {
        400: "bad header",
        404: "unknown API or id",
        409: "not in a state that allows this",
        413: "payload too large",
        416: "range not satisfiable",
        429: "queue full",
        503: "queue or store unavailable",
    }
    return {str(code): _answer(names[code], _ERROR) for code in codes}


def _links() -> dict[str, Any]:
    """What a client can do next with the id a submit returned."""
    parameters = {"api": "$request.path.api", "id": "$response.body#/id"}
    return {
        "GetRecord": {"operationId": "status", "parameters": parameters},
        "Cancel": {"operationId": "cancel", "parameters": parameters},
        "GetResult": {"operationId": "result", "parameters": parameters},
    }


def document(endpoints: list[str]) -> dict[str, Any]:
    """The OpenAPI document for the APIs served at ``endpoints``."""
    api_param = {
        "name": "api",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": endpoints or ["none"]},
    }
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    accepted = {
        "type": "object",
        "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": {"type": "string"}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "asyncgw", "version": __version__},
        "paths": {
            "/healthz": {"get": {"responses": {"200": {"description": "alive"}}}},
            "/readyz": {
                "get": {"responses": {"200": _answer("ready"), **_errors(503)}},
            },
            "/metrics": {"get": {"responses": {"200": {"description": "Prometheus metrics"}}}},
            "/{api}": {
                "parameters": [api_param],
                "post": {
                    "operationId": "submit",
                    "summary": "Submit a request; the body is the payload",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        },
                        {
                            "name": "X-Webhook-Url",
                            "in": "header",
                            "description": "http(s) URL of a public host",
                            "schema": {"type": "string", "pattern": "^https?://[^/]+"},
                        },
                        {
                            "name": "Prefer",
                            "in": "header",
                            "schema": {"type": "string", "examples": ["wait=10"]},
                        },
                    ],
                    "requestBody": {
                        "content": {"*/*": {"schema": {}}},
                        "required": False,
                    },
                    "responses": {
                        "202": {**_answer("accepted", accepted), "links": _links()},
                        "200": _answer(
                            "known idempotency key, or ended within Prefer: wait", _RECORD
                        ),
                        **_errors(400, 404, 413, 429, 503),
                    },
                },
                "get": {
                    "summary": "API summary",
                    "responses": {
                        "200": _answer("summary", {"type": "object"}),
                        **_errors(404, 503),
                    },
                },
            },
            "/{api}/{id}": {
                "parameters": [api_param, id_param],
                "get": {
                    "operationId": "status",
                    "summary": "The request's record",
                    "responses": {"200": _answer("record", _RECORD), **_errors(404, 503)},
                },
                "delete": {
                    "operationId": "cancel",
                    "summary": "Cancel",
                    "responses": {"200": _answer("canceled", _RECORD), **_errors(404, 409, 503)},
                },
            },
            "/{api}/{id}/result": {
                "parameters": [api_param, id_param],
                "get": {
                    "operationId": "result",
                    "summary": "The result bytes",
                    "responses": {
                        "200": {"description": "result", "content": {"*/*": {"schema": {}}}},
                        "206": {"description": "a range of the result"},
                        **_errors(404, 409, 416, 503),
                    },
                },
            },
            "/{api}/{id}/webhook": {
                "parameters": [api_param, id_param],
                "post": {
                    "summary": "Deliver the webhook again",
                    "responses": {"202": _answer("scheduled"), **_errors(404, 409, 503)},
                },
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "Record": {
                    "type": "object",
                    "required": ["id", "api", "status", "created_at", "attempts"],
                    "properties": {
                        "id": {"type": "string"},
                        "api": {"type": "string"},
                        "status": {
                            "enum": ["in_queue", "in_progress", "completed", "failed", "canceled"]
                        },
                        "created_at": {"type": "string"},
                        "started_at": {"type": ["string", "null"]},
                        "completed_at": {"type": ["string", "null"]},
                        "timestamp": {"type": ["string", "null"]},
                        "attempts": {"type": "integer"},
                        "result": {},
                        "result_url": {"type": "string"},
                        "error": {"type": "object"},
                        "webhook": {"type": "object"},
                    },
                },
            }
        },
    }


async def openapi_handler(request: web.Request) -> web.Response:
    """``GET /openapi.json``."""
    apis = request.app[APIS]
    return json_response(document(sorted(apis.keys())))
