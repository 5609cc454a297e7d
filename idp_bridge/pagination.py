"""Keyset pagination: opaque cursors over (sort column, id), stable under inserts."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from idp_bridge import jsontext
from idp_bridge.errors import ValidationFailed, lazy_gettext

T = TypeVar("T")
MAX_LIMIT = 200
DEFAULT_LIMIT = 50


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True)
class Sort:
    """A parsed `sort` parameter: a whitelisted column and a direction."""

    name: str
    column: InstrumentedAttribute[Any]
    descending: bool


def parse_sort(raw: str | None, allowed: Mapping[str, InstrumentedAttribute[Any]], default: str) -> Sort:
    """`name` ascending, `-name` descending; only whitelisted names."""
    # Exactly the documented values: a present but empty or decorated sort is a mistake, not the default.
    value = default if raw is None else raw
    descending = value.startswith("-")
    name = value[1:] if descending else value
    if name not in allowed:
        choices = ", ".join(sorted(allowed))
        raise ValidationFailed({"sort": [lazy_gettext("must be one of %(choices)s (prefix - for descending)",
                                                    choices=choices)]})
    return Sort(name, allowed[name], descending)


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise ValidationFailed({"limit": [lazy_gettext("must be an integer")]}) from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed({"limit": [lazy_gettext("must be between 1 and %(most)s", most=MAX_LIMIT)]})
    return limit


def _encode(sort: Sort, value: Any, id_: str) -> str:
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    raw = json.dumps([sort.name, sort.descending, value, id_], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(sort: Sort, cursor: str) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        name, descending, value, id_ = jsontext.loads(base64.urlsafe_b64decode(padded), max_depth=2)
        if isinstance(value, dict):
            value = datetime.fromisoformat(value["t"])
        if (name, descending) != (sort.name, sort.descending) or not isinstance(id_, str):
            raise ValueError
    except (ValueError, TypeError, KeyError, json.JSONDecodeError, UnicodeDecodeError):
        raise ValidationFailed({"cursor": [lazy_gettext("is not a cursor from this listing and sort order")]}) from None
    return value, id_


def paginate(session: Session, stmt: Select[T], *, sort: Sort, id_column: InstrumentedAttribute[str],
             limit: int, cursor: str | None) -> Page[T]:
    """One page of stmt's rows after the cursor, and the cursor for the next page."""
    if cursor:
        value, last_id = _decode(sort, cursor)
        key = tuple_(sort.column, id_column)
        stmt = stmt.where(key < tuple_(value, last_id) if sort.descending else key > tuple_(value, last_id))
    order = (sort.column.desc(), id_column.desc()) if sort.descending else (sort.column.asc(), id_column.asc())
    rows: Sequence[T] = session.scalars(stmt.order_by(*order).limit(limit + 1)).unique().all()
    items = list(rows[:limit])
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = _encode(sort, getattr(last, sort.column.key), getattr(last, id_column.key))
    return Page(items, next_cursor)
