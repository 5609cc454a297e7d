"""The `q` filter of member and invite lists: identifiers and emails in canonical form, names as free text."""

from __future__ import annotations

import string
from typing import Any

from sqlalchemy import ColumnElement, String, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from idp_bridge.identifiers import search_forms


class AsciiLower(FunctionElement[str]):
    """SQL that lower-cases ASCII letters only, as identifiers.ascii_lower does."""

    type = String()
    inherit_cache = True
    name = "ascii_lower"


@compiles(AsciiLower)
def _ascii_lower_sqlite(element: AsciiLower, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite's built-in lower() changes ASCII letters only (without the ICU extension, which we never load).
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(AsciiLower, "postgresql")
def _ascii_lower_postgresql(element: AsciiLower, compiler: SQLCompiler, **kw: Any) -> str:
    # PostgreSQL's lower() follows the locale (it maps the Kelvin sign to k); translate() maps exactly A-Z.
    return (f"translate({compiler.process(element.clauses, **kw)}, "
            f"'{string.ascii_uppercase}', '{string.ascii_lowercase}')")


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
