"""CSV for people's spreadsheets: export that re-imports, and cells that cannot run as formulas."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from idp_bridge.models import Member

# Columns an import understands; any other column is an attribute.
IMPORT_COLUMNS = ("identifier", "name", "role", "provider", "tenant_id", "hosted_domain", "notification_email")
# Columns an export adds for reading that an import skips rather than storing as attributes.
EXPORT_ONLY_COLUMNS = ("member_id", "status", "email", "created_at", "last_login_at")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """A cell value that spreadsheets show as text, never evaluate (OWASP CSV injection)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list) else str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def unescape_cell(text: str) -> str:
    """Undo safe_cell's quote, so an exported file re-imports to the same values."""
    if len(text) > 1 and text[0] == "'" and text[1:].startswith(FORMULA_PREFIXES):
        return text[1:]
    return text


def _line(row: Iterable[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([safe_cell(v) for v in row])
    return buf.getvalue()


def member_rows(members: Iterable[Member], attribute_keys: list[str]) -> Iterator[str]:
    """CSV text, a line at a time: header first, then one row per member."""
    yield _line([*("identifier", "name", "role", "provider"), *EXPORT_ONLY_COLUMNS, *attribute_keys])
    for m in members:
        attrs = m.attributes or {}
        yield _line([m.identifier, m.name, m.role, m.provider, m.id, m.status, m.email or "",
                     m.created_at.isoformat(), m.last_login_at.isoformat() if m.last_login_at else "",
                     *(attrs.get(k) for k in attribute_keys)])
