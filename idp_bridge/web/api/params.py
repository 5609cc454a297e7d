"""Query parameters shared by list operations."""

from __future__ import annotations

from flask import request

from idp_bridge.pagination import MAX_LIMIT, parse_limit
from idp_bridge.web.api import Query

LIMIT = Query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50}, "Page size.")
CURSOR = Query("cursor", {"type": "string"}, "The next_cursor of the previous page.")
Q = Query("q", {"type": "string"}, "Case-insensitive substring of identifier, name or email.")
PROVIDER = Query("provider", {"type": "string"}, "Provider name, or `any`.")


def sort_param(names: list[str], default: str) -> Query:
    values = sorted(names) + sorted(f"-{n}" for n in names)
    return Query("sort", {"type": "string", "enum": values, "default": default},
                 "Sort key; prefix - for descending.")


def status_param(values: list[str]) -> Query:
    return Query("status", {"type": "string", "enum": values}, "Filter by status.")


def page_args() -> dict[str, object]:
    return {"limit": parse_limit(request.args.get("limit")), "cursor": request.args.get("cursor") or None}
