"""CSV for people's spreadsheets: export that re-imports, and cells that cannot run as formulas."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from idp_bridge import jsontext
from idp_bridge.errors import BadRequest, PayloadTooLarge, ValidationFailed, lazy_gettext
from idp_bridge.models import Member

# Columns an import understands; any other column is an attribute.
IMPORT_COLUMNS = ("identifier", "name", "role", "provider", "tenant_id", "hosted_domain", "notification_email",
                  "locale")
# Columns an export adds for reading that an import skips rather than storing as attributes.
EXPORT_ONLY_COLUMNS = ("member_id", "status", "email", "created_at", "last_login_at")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# Marks an attribute whose name is also a column an import reads (e.g. an attribute called `status`).
ATTRIBUTE_PREFIX = "attributes."


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


def attribute_column(key: str) -> str:
    """The export column of an attribute; names an import reads otherwise get the `attributes.` prefix."""
    reserved = (*IMPORT_COLUMNS, *EXPORT_ONLY_COLUMNS, ERRORS_COLUMN)
    if key.strip().lower() in reserved or key.startswith(ATTRIBUTE_PREFIX):
        return ATTRIBUTE_PREFIX + key
    return key


def member_rows(members: Iterable[Member], attribute_keys: list[str]) -> Iterator[str]:
    """CSV text, a line at a time: header first, then one row per member."""
    yield _line([*("identifier", "name", "role", "provider"), *EXPORT_ONLY_COLUMNS,
                 *(attribute_column(k) for k in attribute_keys)])
    for m in members:
        attrs = m.attributes or {}
        yield _line([m.identifier, m.name, m.role, m.provider, m.id, m.status, m.email or "",
                     m.created_at.isoformat(), m.last_login_at.isoformat() if m.last_login_at else "",
                     *(attrs.get(k) for k in attribute_keys)])


# Written by `invite import --errors-out` beside the failed rows; an import skips it, so the fixed file re-imports.
ERRORS_COLUMN = "import_errors"
ID_COLUMNS = ("identifier", "email")
DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True)
class CsvRow:
    """One data record: its spreadsheet row number (the header is row 1) and its unescaped cells."""

    row: int
    cells: list[str]


@dataclass(frozen=True)
class CsvHeader:
    """The header of an import file and what each column means."""

    columns: list[str]
    id_column: str

    def fields(self, row: CsvRow) -> dict[str, Any]:
        """An InviteInput-shaped dict of the row: known columns by name, any other column an attribute."""
        out: dict[str, Any] = {}
        attributes: dict[str, Any] = {}
        for name, cell in zip(self.columns, row.cells, strict=False):
            if not cell or not name or (name in EXPORT_ONLY_COLUMNS and name != self.id_column):
                continue
            if name == self.id_column:
                out["identifier"] = cell
            elif name in IMPORT_COLUMNS:
                out[name] = cell
            elif name.startswith(ATTRIBUTE_PREFIX):
                attributes[name[len(ATTRIBUTE_PREFIX):]] = _attribute(cell)
            elif name != ERRORS_COLUMN:
                attributes[name] = _attribute(cell)
        if attributes:
            out["attributes"] = attributes
        return out

    def problems(self, row: CsvRow) -> dict[str, list[str]]:
        """What is wrong with the row's shape, before its values are checked."""
        extra = row.cells[len(self.columns):]
        if any(extra):
            return {"row": [lazy_gettext("has %(cells)s cells but the header names %(columns)s columns",
                                         cells=len(row.cells), columns=len(self.columns))]}
        return {}

    def column_of(self, field: str) -> str:
        """The column a validation error on field points at."""
        if field == "identifier":
            return self.id_column
        if field.startswith("attributes"):
            return "attributes"
        return field


def _attribute(cell: str) -> Any:
    """Objects and lists come back from their JSON export form; other values stay text."""
    if cell[:1] in ("{", "["):
        try:
            return jsontext.loads(cell)
        except ValueError:
            return cell
    return cell


def decode(data: bytes) -> str:
    """The file's text; a leading BOM is dropped and anything but UTF-8 is refused with a clear reason."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(lazy_gettext("the CSV is not UTF-8 text (byte 0x%(byte)02x at offset %(offset)s); save it as "
                                      "'CSV UTF-8' and send it again", byte=data[exc.start], offset=exc.start),
                         encoding="utf-8") from None


def sniff_delimiter(text: str) -> str:
    """The separator of the header line: spreadsheets in many locales write `;` instead of `,`."""
    first = text.split("\n", 1)[0]
    counts = {d: first.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _header(cells: list[str]) -> CsvHeader:
    columns: list[str] = []
    for cell in cells:
        name = cell.strip()
        known = name.lower()
        columns.append(known if known in (*IMPORT_COLUMNS, *EXPORT_ONLY_COLUMNS, ERRORS_COLUMN) else name)
    named = [c for c in columns if c]
    repeated = sorted({c for c in named if named.count(c) > 1})
    errors: dict[str, list[str]] = {}
    if repeated:
        errors["header"] = [lazy_gettext("column %(column)r appears more than once", column=c) for c in repeated]
    id_column = next((c for c in ID_COLUMNS if c in columns), "")
    if not id_column:
        errors["identifier"] = [lazy_gettext("the header row needs an identifier or an email column")]
    if errors:
        raise ValidationFailed(errors)
    return CsvHeader(columns, id_column)


def read(text: str, *, max_rows: int) -> tuple[CsvHeader, Iterator[CsvRow]]:
    """Parse an import file lazily: the header now, data rows as they are consumed; blank rows are skipped."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(text), strict=True)
    try:
        first = next(reader, None)
    except csv.Error as exc:
        raise BadRequest(lazy_gettext("the CSV header cannot be read: %(problem)s", problem=str(exc))) from None
    if first is None or not any(c.strip() for c in first):
        raise ValidationFailed({"header": [lazy_gettext("the file is empty; the first row must name the columns")]})
    header = _header(first)

    def rows() -> Iterator[CsvRow]:
        number = 1
        count = 0
        while True:
            try:
                cells = next(reader, None)
            except csv.Error as exc:
                raise BadRequest(lazy_gettext("row %(row)s: the CSV cannot be read: %(problem)s", row=number + 1,
                                              problem=str(exc))) from None
            if cells is None:
                return
            number += 1
            if not any(c.strip() for c in cells):
                continue
            count += 1
            if count > max_rows:
                raise PayloadTooLarge(lazy_gettext("the file has more than %(most)s rows; split it into several "
                                                   "imports", most=max_rows),
                                      max_rows=max_rows)
            yield CsvRow(number, [unescape_cell(c.strip()) for c in cells])

    return header, rows()


def error_rows(header: CsvHeader, failed: Iterable[tuple[CsvRow, str]], *,
               errors_column: str = ERRORS_COLUMN) -> Iterator[str]:
    """Failed rows as CSV with their reasons in one more column, ready to fix and import again."""
    columns = [c for c in header.columns if c not in (ERRORS_COLUMN, errors_column)]
    keep = [i for i, c in enumerate(header.columns) if c not in (ERRORS_COLUMN, errors_column)]
    yield _line([*columns, errors_column])
    for row, reason in failed:
        cells = [row.cells[i] if i < len(row.cells) else "" for i in keep]
        yield _line([*cells, reason])
