"""The OpenAPI 3.1 document, generated from the registered operations and their pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from idp_bridge.web.api import OPERATIONS, PROBLEM_JSON, Operation

REF = "#/components/schemas/{model}"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "request_id": {"type": "string", "description": "The request's X-Request-ID, as its log lines carry it."},
        "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    },
    "additionalProperties": True,
}

ERROR_TEXT = {400: "Malformed request", 401: "Missing or invalid API key", 403: "Not allowed for this key",
              404: "Not found", 409: "Conflicts with the current state", 413: "Too large",
              415: "Unsupported media type", 422: "Invalid input",
              429: "Too many failed authentications from this address", 502: "Identity provider error"}


def _models() -> list[tuple[type[BaseModel], str]]:
    seen: dict[type[BaseModel], set[str]] = {}
    for op in OPERATIONS:
        if op.body is not None:
            seen.setdefault(op.body, set()).add("validation")
        if op.response is not None:
            seen.setdefault(op.response, set()).add("serialization")
    return [(model, mode) for model, modes in seen.items() for mode in sorted(modes)]


def _problem(status: int) -> dict[str, Any]:
    return {"description": ERROR_TEXT.get(status, "Error"),
            "content": {PROBLEM_JSON: {"schema": {"$ref": REF.format(model="Problem")}}}}


def _operation(op: Operation, refs: dict[tuple[type[BaseModel], str], dict[str, Any]]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in re.findall(r"\{(\w+)\}", op.rule)
    ]
    params += [{"name": q.name, "in": "query", "required": False, "schema": q.schema,
                "description": q.description} for q in op.query]
    responses: dict[str, Any] = {}
    if op.status == 204 or op.response is None:
        responses[str(op.status)] = {"description": "Done"}
    else:
        content: dict[str, Any] = {"application/json": {"schema": refs[(op.response, "serialization")]}}
        content.update(op.extra_responses)
        responses[str(op.status)] = {"description": "OK", "content": content}
    for status in sorted({401, 403, 429, *op.errors, *((404,) if "{" in op.rule else ()),
                          *((400, 415, 422) if op.body is not None else ()),
                          # A bad cursor, filter or date in the query is answered with a 422 problem.
                          *((422,) if op.query else ())}):
        responses[str(status)] = _problem(status)
    out: dict[str, Any] = {"operationId": op.endpoint, "summary": op.summary, "tags": [op.tag],
                           "parameters": params, "responses": responses,
                           "security": [{"apiKey": []}]}
    if op.body is not None:
        body_content: dict[str, Any] = {"application/json": {"schema": refs[(op.body, "validation")]}}
        body_content.update({k: v for k, v in op.request_content.items() if k != "application/json"})
        out["requestBody"] = {"required": op.body_required, "content": body_content}
    return out


def document(title: str = "idp-bridge", version: str = "0.1.0", server_url: str = "/") -> dict[str, Any]:
    """The OpenAPI 3.1 document for every registered operation."""
    models = _models()
    refs, defs = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Problem"] = PROBLEM_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault("/api/v1" + op.rule, {})[op.method.lower()] = _operation(op, refs)  # type: ignore[arg-type]
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Organization invitations on real identity providers. Errors are RFC 9457 "
                                "problem documents (application/problem+json)."},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                                      "description": "An idp-bridge API key, ibk_…"}}},
    }
