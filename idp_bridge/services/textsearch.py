"""The `q` filter of member and invite lists: identifiers and emails in canonical form, names as free text."""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_
from sqlalchemy.orm import InstrumentedAttribute

from idp_bridge.identifiers import search_forms
from idp_bridge.store.sql import AsciiLower


def matches(q: str, key: InstrumentedAttribute[str], shown: InstrumentedAttribute[str],
            name: InstrumentedAttribute[str], email: InstrumentedAttribute[str | None]) -> ColumnElement[bool]:
    """Rows whose canonical identifier, or identifier or email as shown with ASCII letters lower-cased,
    contains q; or whose name contains it."""
    text = q.strip()
    clauses: list[ColumnElement[bool]] = [name.ilike(f"%{text}%")]
    for form in search_forms(text):
        pattern = f"%{form}%"
        clauses += [key.like(pattern), AsciiLower(shown).like(pattern), AsciiLower(email).like(pattern)]
    return or_(*clauses)
