"""Languages: BCP 47 tags, the shipped translations, and dates as a reader in a given language and zone sees them.

Framework-free: the web faces pick the language per request (Flask-Babel), the worker per message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, tzinfo
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import dates
from babel.support import NullTranslations, Translations

from idp_bridge.errors import Message, lazy_gettext

# Languages with a complete catalog; the first is the fallback for every other tag.
SHIPPED = ("en", "de")
DEFAULT = SHIPPED[0]
TRANSLATIONS_DIR = Path(__file__).parent / "translations"
DOMAIN = "messages"
MAX_TAG_LENGTH = 35

# RFC 5646 langtag (language, script, region, variants, extensions, private use), or a private-use-only tag.
_LANGTAG = re.compile(
    r"^(?:(?:[a-z]{2,3}(?:-[a-z]{3}){0,3}|[a-z]{4}|[a-z]{5,8})"
    r"(?:-[a-z]{4})?"
    r"(?:-(?:[a-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*"
    r"(?:-[0-9a-wyz](?:-[a-z0-9]{2,8})+)*"
    r"(?:-x(?:-[a-z0-9]{1,8})+)?"
    r"|x(?:-[a-z0-9]{1,8})+)$")


def normalize_tag(tag: str) -> str:
    """A well-formed BCP 47 language tag in its conventional case (`de-AT`, `zh-Hant-TW`); ValueError otherwise."""
    value = tag.strip()
    lowered = value.lower()
    if not value or len(value) > MAX_TAG_LENGTH or not _LANGTAG.match(lowered):
        raise ValueError(lazy_gettext("must be a BCP 47 language tag like en, de or de-AT"))
    parts = lowered.split("-")
    out = [parts[0]]
    singleton = parts[0] == "x"
    for part in parts[1:]:
        if singleton or len(part) == 1:
            singleton = True
            out.append(part)
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())
        elif len(part) == 2 or (len(part) == 3 and part.isdigit()):
            out.append(part.upper())
        else:
            out.append(part)
    return "-".join(out)


def shipped_for(tag: str | None) -> str | None:
    """The shipped language a tag is written in (`de-AT` → `de`), or None when none is."""
    if not tag:
        return None
    primary = tag.replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in SHIPPED else None


def language_of(tag: str | None) -> str:
    """The shipped language to render a tag in: its own, else the default (`fr` → `en`)."""
    return shipped_for(tag) or DEFAULT


@cache
def translations(language: str) -> NullTranslations:
    """The compiled catalog of a shipped language (English is the source text: no catalog)."""
    if language == DEFAULT or language not in SHIPPED:
        return NullTranslations()
    return Translations.load(str(TRANSLATIONS_DIR), [language], DOMAIN)


# The language of the text being written now, for words that adapters (the providers) contribute to a page or mail.
_speaking: ContextVar[str] = ContextVar("idp_bridge_language", default=DEFAULT)


@contextmanager
def speaking(language: str) -> Iterator[None]:
    """Write in `language` (a shipped one) inside the block: `gettext` below translates into it."""
    token = _speaking.set(language)
    try:
        yield
    finally:
        _speaking.reset(token)


def gettext(message: str, **values: Any) -> str:
    """`message` in the language being written (`speaking`; English outside one), with `values` put in."""
    text = translations(_speaking.get()).gettext(message)
    return text % values if values else text


def in_language(text: str, language: str) -> str:
    """A refusal's text (a `Message`) in a shipped language; text that is no message stays as it is."""
    return text.translated(translations(language)) if isinstance(text, Message) else text


def zone(name: str | None) -> tzinfo:
    """The time zone an IANA name gives (`Europe/Berlin`), or UTC for a missing or unknown one."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name or "\\" in name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return UTC


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def long_when(moment: datetime, language: str, where: tzinfo = UTC) -> str:
    """A date and time for a sentence: `January 15, 2030, 13:00 CET`, `15. Januar 2030, 13:00 MEZ`."""
    local = _aware(moment).astimezone(where)
    return (f"{dates.format_date(local.date(), 'long', locale=language)}, "
            f"{dates.format_time(local, 'HH:mm zzz', tzinfo=where, locale=language)}")


def short_when(moment: datetime, language: str, where: tzinfo = UTC, *, seconds: bool = False) -> str:
    """A date and time for a table cell: `2030-01-15 13:00 CET`."""
    pattern = "yyyy-MM-dd HH:mm:ss zzz" if seconds else "yyyy-MM-dd HH:mm zzz"
    return dates.format_datetime(_aware(moment), pattern, tzinfo=where, locale=language)
